"""``entroq-redis serve``'s gRPC flags: the port (37706 by default, ``0`` off, ``free`` any free
port), the value schema and the listener's limits, each declared on its ``GrpcSettings`` field.
"""

from __future__ import annotations

import argparse

from entroq_redis_server.grpc.settings import FREE, GrpcSettings, check_grpc_settings

from ._serve_options import add_setting_options, settings_from_args


def add_grpc_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "gRPC (EntroQ's native API: HTTP/2 with prior knowledge (h2c), or HTTP/2 over TLS with --tls-*)"
    )
    add_setting_options(
        group, GrpcSettings, "port", "values", "max_message_bytes", "max_concurrent_streams", "idle_timeout_s"
    )


class GrpcSetupError(Exception):
    """The gRPC flags cannot work (a usage error: exit status 2)."""


def grpc_settings(args: argparse.Namespace) -> GrpcSettings | None:
    """The service's GrpcSettings from the flags (None: gRPC off), checked.

    Raises:
        GrpcSetupError: with a message for the operator.
    """

    if args.grpc_port == 0:
        return None
    settings = settings_from_args(GrpcSettings, args, port=0 if args.grpc_port == FREE else args.grpc_port)
    try:
        check_grpc_settings(settings)
    except ValueError as exc:
        raise GrpcSetupError(str(exc)) from None
    return settings
