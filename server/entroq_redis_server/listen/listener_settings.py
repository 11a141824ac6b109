"""How the service's listeners accept connections: TLS, timeouts, a per-address cap, h2c and
the metrics listener (the ``serve`` command's listener flags, declared on the fields: see
``options``)."""

from __future__ import annotations

import dataclasses

from ..options import Option, setting

# A load balancer's idle timeout is typically 60 s, and a server that closes an idle connection
# first races the balancer's next request on it; 75 s outlasts the common 60 s.
DEFAULT_IDLE_TIMEOUT_S = 75.0
# A request header is at most 16 KiB (Hypercorn's h11_max_incomplete_size): 10 s is ample on
# any link, and short enough that a client trickling headers cannot hold a connection long.
DEFAULT_HEADER_TIMEOUT_S = 10.0
# Request bodies are small (a modify of a few MiB at most); Quart's own default.
DEFAULT_BODY_TIMEOUT_S = 60.0
# Long-poll claims hold one connection each, and behind a proxy every client shares the
# proxy's address: the cap must stay above a large worker fleet's waiting claims while
# still stopping one address from taking every descriptor of the process.
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerSettings:
    """How the HTTP listeners (the API's, and the metrics listener when asked) accept connections.

    Attributes:
        metrics_host: Address of the metrics listener (None: the API's host).
        metrics_port: Serve ``/metrics`` on its own listener on this port (0: any free port),
            and not on the API's; None: ``/metrics`` on the API's listener.
        tls_cert: PEM certificate chain; with ``tls_key``, every listener speaks TLS only.
        tls_key: PEM private key of ``tls_cert``.
        tls_client_ca: PEM CA bundle; when given, clients must present a certificate it signed.
        idle_timeout_s: A connection with no request in progress is closed after this long.
        header_timeout_s: A request's header must be complete this long after the connection
            opened (its first request; TLS handshake included) or after the request's first
            byte (later requests); otherwise the connection is closed.
        body_timeout_s: A request body must be complete this long after its header (408).
        max_connections_per_address: Open connections one client address may hold on one
            listener of one service process; more are closed at once (0: no cap).
        h2c: Serve HTTP/2 without TLS (prior knowledge or ``Upgrade: h2c``); with TLS,
            HTTP/2 is negotiated by ALPN whatever this says.
    """

    metrics_host: str | None = setting(
        None, Option("--metrics-host", "address of the metrics listener (default: --host)", metavar="HOST")
    )
    metrics_port: int | None = setting(
        None,
        Option(
            "--metrics-port",
            "serve /metrics on its own listener on this port (0 = any free port), and then NOT on "
            "the API port (default: /metrics on the API port)",
            metavar="PORT",
            type=int,
        ),
    )
    tls_cert: str | None = setting(
        None,
        Option(
            "--tls-cert", "PEM certificate chain; with --tls-key, TLS only on every listener", metavar="FILE"
        ),
    )
    tls_key: str | None = setting(None, Option("--tls-key", "PEM private key of --tls-cert", metavar="FILE"))
    tls_client_ca: str | None = setting(
        None,
        Option(
            "--tls-client-ca",
            "PEM CA bundle: clients must present a certificate it signed (mutual TLS)",
            metavar="FILE",
        ),
    )
    idle_timeout_s: float = setting(
        DEFAULT_IDLE_TIMEOUT_S,
        Option(
            "--idle-timeout",
            "close a keep-alive connection idle this long (default %(default)s)",
            metavar="SECONDS",
        ),
    )
    header_timeout_s: float = setting(
        DEFAULT_HEADER_TIMEOUT_S,
        Option(
            "--header-timeout",
            "close a connection whose request header is not complete this long after the "
            "connection opened (TLS handshake included) or after the request's first byte "
            "(default %(default)s)",
            metavar="SECONDS",
        ),
    )
    body_timeout_s: float = setting(
        DEFAULT_BODY_TIMEOUT_S,
        Option(
            "--body-timeout",
            "answer 408 and close when a request body is not complete this long after its "
            "header (default %(default)s)",
            metavar="SECONDS",
        ),
    )
    max_connections_per_address: int = setting(
        DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        Option(
            "--max-connections-per-address",
            "open connections one client address may hold; more are closed at once. Each "
            "waiting claim holds one, and behind a proxy all clients share its address "
            "(default %(default)s; 0 = no cap)",
            metavar="N",
        ),
    )
    h2c: bool = setting(
        False,
        Option(
            "--h2c",
            "serve HTTP/2 without TLS (prior knowledge or Upgrade: h2c); EntroQ's HTTP clients "
            "speak HTTP/1.1, so it is off by default; with TLS, HTTP/2 is negotiated by ALPN",
            kind="toggle",
        ),
    )

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def check_listener_settings(settings: ListenerSettings) -> None:
    """Raises ValueError, naming the flag, for settings that cannot work."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together (both or neither)")
    if settings.tls_client_ca is not None and not settings.tls:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    if settings.h2c and settings.tls:
        raise ValueError("--h2c is for plaintext listeners; with TLS, HTTP/2 is negotiated by ALPN")
    for flag, value in (
        ("--idle-timeout", settings.idle_timeout_s),
        ("--header-timeout", settings.header_timeout_s),
        ("--body-timeout", settings.body_timeout_s),
    ):
        if not value > 0:
            raise ValueError(f"{flag} must be a positive number of seconds")
    if settings.max_connections_per_address < 0:
        raise ValueError("--max-connections-per-address must be 0 (no cap) or more")
    if settings.metrics_port is not None and not 0 <= settings.metrics_port <= 65535:
        raise ValueError("--metrics-port must be a port number (0: any free port)")
