"""``entroq-redis serve``'s listener flags: the metrics listener, TLS, connection timeouts, the
per-address connection cap and h2c.

The defaults repeat ``entroq_redis_server.ListenerSettings``' (the server package is imported
only when ``serve`` runs); a test keeps the two in step.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_IDLE_TIMEOUT_S = 75.0
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 4096


def add_listener_options(parser: argparse.ArgumentParser) -> None:
    metrics = parser.add_argument_group("metrics listener")
    metrics.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on its own listener on this port (0 = any free port), and then NOT on "
        "the API port (default: /metrics on the API port)",
    )
    metrics.add_argument(
        "--metrics-host", metavar="HOST", help="address of the metrics listener (default: --host)"
    )
    tls = parser.add_argument_group("TLS (every listener: HTTP, metrics and gRPC)")
    tls.add_argument(
        "--tls-cert", metavar="FILE", help="PEM certificate chain; with --tls-key, TLS only on every listener"
    )
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="PEM CA bundle: clients must present a certificate it signed (mutual TLS)",
    )
    hygiene = parser.add_argument_group("connections (each HTTP listener, per service process)")
    hygiene.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="SECONDS",
        help="close a keep-alive connection idle this long (default %(default)s)",
    )
    hygiene.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        metavar="SECONDS",
        help="close a connection whose request header is not complete this long after the "
        "connection opened (TLS handshake included) or after the request's first byte "
        "(default %(default)s)",
    )
    hygiene.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT_S,
        metavar="SECONDS",
        help="answer 408 and close when a request body is not complete this long after its "
        "header (default %(default)s)",
    )
    hygiene.add_argument(
        "--max-connections-per-address",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        metavar="N",
        help="open connections one client address may hold; more are closed at once. Each "
        "waiting claim holds one, and behind a proxy all clients share its address "
        "(default %(default)s; 0 = no cap)",
    )
    hygiene.add_argument(
        "--h2c",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="serve HTTP/2 without TLS (prior knowledge or Upgrade: h2c); EntroQ's HTTP clients "
        "speak HTTP/1.1, so it is off by default; with TLS, HTTP/2 is negotiated by ALPN",
    )


class ListenerSetupError(Exception):
    """The listener flags cannot work. ``status`` is the exit code (2: usage; 1: a TLS file
    that does not load, an address that cannot be bound)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def listener_settings(args: argparse.Namespace) -> Any:
    """The service's ListenerSettings from the flags, checked (TLS files are loaded now).

    Raises:
        ListenerSetupError: with a message for the operator.
    """
    from entroq_redis_server import ListenerSettings, check_listener_settings, tls_context

    settings = ListenerSettings(
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        idle_timeout_s=args.idle_timeout,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        max_connections_per_address=args.max_connections_per_address,
        h2c=args.h2c,
    )
    try:
        check_listener_settings(settings)
    except ValueError as exc:
        raise ListenerSetupError(str(exc), 2) from None
    try:
        tls_context(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ListenerSetupError(f"TLS (--tls-cert/--tls-key/--tls-client-ca): {exc}", 1) from None
    return settings


def bind_listeners(host: str, port: int, listeners: Any, grpc: Any = None) -> Any:
    """Binds the service's listening sockets (before any store starts): BoundListeners
    (``grpc``: the gRPC listener's GrpcSettings, None: none).

    Raises:
        ListenerSetupError: an address is in use or cannot be bound (status 1).
    """
    from entroq_redis_server import ListenError, ServiceSettings
    from entroq_redis_server import bind_listeners as bind

    try:
        return bind(ServiceSettings(store_url="", host=host, port=port, listeners=listeners, grpc=grpc))
    except ListenError as exc:
        raise ListenerSetupError(str(exc), 1) from None
