"""``entroq-redis serve``'s gRPC flags: the port (37706 by default, ``0`` off, ``free`` any free
port), the value schema and the listener's limits.

The defaults repeat ``entroq_redis_server.grpc.settings``' (the server package is imported only
when ``serve`` runs).
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_GRPC_PORT = 37706
GRPC_PORT_ENV = "ENTROQ_REDIS_GRPC_PORT"
# --grpc-port free: any free port (the tests' choice); the service prints the one it got.
FREE = "free"


def grpc_port(text: str) -> int | str:
    """A --grpc-port value: a port number (0: off) or ``free``."""
    if text.strip().lower() == FREE:
        return FREE
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number, 0 (off) or free") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535; 0 turns gRPC off)")
    return port


def add_grpc_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "gRPC (EntroQ's native API: HTTP/2 with prior knowledge (h2c), or HTTP/2 over TLS with --tls-*)"
    )
    group.add_argument(
        "--grpc-port",
        type=grpc_port,
        # $ENTROQ_REDIS_GRPC_PORT, like every serve option's variable, is read by _serve_config.
        default=DEFAULT_GRPC_PORT,
        metavar="PORT",
        help=f"serve gRPC (api.EntroQ, grpc.health.v1) on this port of --host; 0 turns gRPC off, "
        f"free takes any free port (printed); default {DEFAULT_GRPC_PORT}. "
        "With --tls-cert/--tls-key (and --tls-client-ca) it takes TLS like every listener",
    )
    group.add_argument(
        "--grpc-values",
        choices=["value", "bytes"],
        default="value",
        help="the gRPC schema: value (EntroQ v1 and later: google.protobuf.Value task values, stored "
        "as their JSON text) or bytes (the v0.9-era schema: raw bytes values); default value",
    )
    group.add_argument(
        "--grpc-max-message-mb",
        type=float,
        default=10,
        metavar="MIB",
        help="largest gRPC request message in MiB; larger ones get RESOURCE_EXHAUSTED (default 10)",
    )
    group.add_argument(
        "--grpc-max-streams",
        type=int,
        default=10_000,
        metavar="N",
        help="concurrent calls (HTTP/2 streams) one gRPC connection may have open, e.g. blocking "
        "claims of one worker process (default 10000)",
    )
    group.add_argument(
        "--grpc-idle-timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="close a gRPC connection with no call open and no frame received for this long (default 3600)",
    )


class GrpcSetupError(Exception):
    """The gRPC flags cannot work (a usage error: exit status 2)."""


def grpc_settings(args: argparse.Namespace) -> Any:
    """The service's GrpcSettings from the flags (None: gRPC off), checked.

    Raises:
        GrpcSetupError: with a message for the operator.
    """
    from entroq_redis_server import GrpcSettings, check_grpc_settings

    if args.grpc_port == 0:
        return None
    settings = GrpcSettings(
        port=0 if args.grpc_port == FREE else args.grpc_port,
        values=args.grpc_values,
        max_message_bytes=int(args.grpc_max_message_mb * 1024 * 1024),
        max_concurrent_streams=args.grpc_max_streams,
        idle_timeout_s=args.grpc_idle_timeout,
    )
    try:
        check_grpc_settings(settings)
    except ValueError as exc:
        raise GrpcSetupError(str(exc)) from None
    return settings
