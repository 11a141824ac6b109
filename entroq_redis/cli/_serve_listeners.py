"""``entroq-redis serve``'s listener flags: the metrics listener, TLS, connection timeouts, the
per-address connection cap and h2c, each declared on its ``ListenerSettings`` field.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from entroq_redis_server.grpc.settings import GrpcSettings
from entroq_redis_server.listen.listener_settings import ListenerSettings, check_listener_settings
from entroq_redis_server.settings import ServiceSettings

if TYPE_CHECKING:
    from entroq_redis_server.listen.listeners import BoundListeners

from ._serve_options import add_setting_options, settings_from_args


def add_listener_options(parser: argparse.ArgumentParser) -> None:
    metrics = parser.add_argument_group("metrics listener")
    add_setting_options(metrics, ListenerSettings, "metrics_port", "metrics_host")
    tls = parser.add_argument_group("TLS (every listener: HTTP, metrics and gRPC)")
    add_setting_options(tls, ListenerSettings, "tls_cert", "tls_key", "tls_client_ca")
    hygiene = parser.add_argument_group("connections (each HTTP listener, per service process)")
    add_setting_options(
        hygiene,
        ListenerSettings,
        "idle_timeout_s",
        "header_timeout_s",
        "body_timeout_s",
        "max_connections_per_address",
        "h2c",
    )


class ListenerSetupError(Exception):
    """The listener flags cannot work. ``status`` is the exit code (2: usage; 1: a TLS file
    that does not load, an address that cannot be bound)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def listener_settings(args: argparse.Namespace) -> ListenerSettings:
    """The service's ListenerSettings from the flags, checked (TLS files are loaded now).

    Raises:
        ListenerSetupError: with a message for the operator.
    """
    from entroq_redis_server import tls_context

    settings = settings_from_args(ListenerSettings, args)
    try:
        check_listener_settings(settings)
    except ValueError as exc:
        raise ListenerSetupError(str(exc), 2) from None
    try:
        tls_context(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ListenerSetupError(f"TLS (--tls-cert/--tls-key/--tls-client-ca): {exc}", 1) from None
    return settings


def bind_listeners(
    host: str, port: int, listeners: ListenerSettings, grpc: GrpcSettings | None = None
) -> BoundListeners:
    """Binds the service's listening sockets (before any store starts): BoundListeners
    (``grpc``: the gRPC listener's GrpcSettings, None: none).

    Raises:
        ListenerSetupError: an address is in use or cannot be bound (status 1).
    """
    from entroq_redis_server import ListenError
    from entroq_redis_server import bind_listeners as bind

    try:
        return bind(ServiceSettings(store_url="", host=host, port=port, listeners=listeners, grpc=grpc))
    except ListenError as exc:
        raise ListenerSetupError(str(exc), 1) from None
