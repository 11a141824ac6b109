"""The gRPC listener's settings (the ``serve`` command's ``--grpc-*`` flags, declared on the
fields: see ``options``)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal, get_args

from ..options import MIB, Option, setting

# EntroQ's port: its Go client, eqc, eqlink and eqjournal dial host:37706.
DEFAULT_GRPC_PORT = 37706
# The Go client's default maximum message size (docs/reference/entroq-v1-grpc-and-docs.md 3).
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# A Go client runs every blocking claim of a process on one HTTP/2 connection, one stream each;
# Hypercorn's default of 100 would make the 101st wait. Each open stream costs a trio task.
DEFAULT_MAX_CONCURRENT_STREAMS = 10_000
# A gRPC client keeps its connection for hours (grpc-go closes an idle channel's connections
# after 30 minutes itself); an hour without any stream or frame ends it.
DEFAULT_IDLE_TIMEOUT_S = 3600.0

GrpcValues = Literal["value", "bytes"]
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


@dataclasses.dataclass(frozen=True, slots=True)
class GrpcSettings:
    """How the gRPC listener serves.

    Attributes:
        port: Port to listen on (0: any free port) on the service's host.
        values: The schema: "value" (EntroQ v1, ``google.protobuf.Value`` task values, stored as
            their JSON text) or "bytes" (the seed's raw bytes values, v0.9-era clients).
        max_message_bytes: Larger request messages get RESOURCE_EXHAUSTED.
        max_concurrent_streams: HTTP/2 streams (calls) one connection may have open at once.
        idle_timeout_s: A connection with no stream open and no frame received this long closes.
    """

    port: int = setting(
        DEFAULT_GRPC_PORT,
        Option(
            "--grpc-port",
            "serve gRPC (api.EntroQ, grpc.health.v1) on this port of --host; 0 turns gRPC off, "
            "free takes any free port (printed); default %(default)s. "
            "With --tls-cert/--tls-key (and --tls-client-ca) it takes TLS like every listener",
            metavar="PORT",
            type=grpc_port,
            # EntroQ's clients and deploy files know this name (not ENTROQ_GRPC_PORT).
            env="ENTROQ_REDIS_GRPC_PORT",
        ),
    )
    values: GrpcValues = setting(
        "value",
        Option(
            "--grpc-values",
            "the gRPC schema: value (EntroQ v1 and later: google.protobuf.Value task values, stored "
            "as their JSON text) or bytes (the v0.9-era schema: raw bytes values); default %(default)s",
            choices=get_args(GrpcValues),
        ),
    )
    max_message_bytes: int = setting(
        DEFAULT_MAX_MESSAGE_BYTES,
        Option(
            "--grpc-max-message-mb",
            "largest gRPC request message in MiB; larger ones get RESOURCE_EXHAUSTED (default %(default)s)",
            metavar="MIB",
            type=float,
            scale=MIB,
        ),
    )
    max_concurrent_streams: int = setting(
        DEFAULT_MAX_CONCURRENT_STREAMS,
        Option(
            "--grpc-max-streams",
            "concurrent calls (HTTP/2 streams) one gRPC connection may have open, e.g. blocking "
            "claims of one worker process (default %(default)s)",
            metavar="N",
        ),
    )
    idle_timeout_s: float = setting(
        DEFAULT_IDLE_TIMEOUT_S,
        Option(
            "--grpc-idle-timeout",
            "close a gRPC connection with no call open and no frame received for this long "
            "(default %(default)s)",
            metavar="SECONDS",
        ),
    )


def check_grpc_settings(settings: GrpcSettings) -> None:
    """Raises ValueError, naming the flag, for settings that cannot work."""
    if not 0 <= settings.port <= 65535:
        raise ValueError("--grpc-port must be a port number (0: off; free: any free port)")
    if settings.values not in ("value", "bytes"):
        raise ValueError("--grpc-values must be value or bytes")
    if settings.max_message_bytes < 1:
        raise ValueError("--grpc-max-message-mb must be positive")
    if not 1 <= settings.max_concurrent_streams <= 2**31 - 1:
        raise ValueError("--grpc-max-streams must be between 1 and 2147483647")
    if not settings.idle_timeout_s > 0:
        raise ValueError("--grpc-idle-timeout must be a positive number of seconds")
