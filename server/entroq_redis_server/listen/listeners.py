"""The service's listening sockets and the loop that serves them.

Sockets are bound by ``bind_listeners`` before anything else starts (the CLI binds before it
starts the embedded store), so a port in use is one clear error and leaves nothing running.
``run_listeners`` is Hypercorn's trio ``worker_serve`` (0.18) reshaped for two applications
(the API, and ``/metrics`` on its own port when asked) and for per-connection rules it has no
hook for (``listen.connection``): idle and header timeouts, the h2c choice and the per-address cap.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

from ..grpc.streams import ScalableH2Protocol
from ..settings import ServiceSettings
from .connection import AddressLimiter, GuardedConnection, peer_address
from .h2_requests import StreamErrorH2Protocol
from .listener_settings import ListenerSettings

# Hypercorn's default accept backlog is 100. Long-poll claims hold thousands of connections,
# and waiters reconnecting at once (after a restart, a deploy) arrive in bursts; with a full
# accept queue and SYN cookies on, Linux answers their first data with a reset. The kernel caps
# this at net.core.somaxconn.
BACKLOG = 4096

ShutdownTrigger = Callable[[], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GrpcListener:
    """What the gRPC listener serves: its app, its Hypercorn config (``grpc.listener``) and
    its connections' idle timeout."""

    app: AppWrapper
    config: Config
    idle_timeout_s: float


class ListenError(Exception):
    """A listening socket cannot be bound; the message names the address and the reason."""


@dataclasses.dataclass
class BoundListeners:
    """Bound, listening sockets: the API's, the metrics listener's and the gRPC listener's
    (empty: none)."""

    api: list[socket.socket]
    metrics: list[socket.socket]
    grpc: list[socket.socket] = dataclasses.field(default_factory=list)

    def close(self) -> None:
        for sock in self.api + self.metrics + self.grpc:
            sock.close()

    def grpc_urls(self, tls: bool = False) -> list[str]:
        return [_url("grpcs" if tls else "grpc", sock) for sock in self.grpc]

    def urls(self, scheme: str) -> list[str]:
        return [_url(scheme, sock) for sock in self.api]

    def metrics_urls(self, scheme: str) -> list[str]:
        return [_url(scheme, sock) + "/metrics" for sock in self.metrics]


def bind_listeners(settings: ServiceSettings) -> BoundListeners:
    """Binds and listens on the API's address and the metrics listener's, if any (and first
    raises the process's open-file limit, see ``raise_open_file_limit``).

    Raises:
        ListenError: an address is in use, not local, or not allowed.
    """
    limit = raise_open_file_limit()
    cap = settings.listeners.max_connections_per_address
    if cap and limit < cap:
        log.warning(
            "this process may open %d files, fewer than --max-connections-per-address %d: one "
            "client can use up the service's descriptors before the cap stops it",
            limit,
            cap,
        )
    bound = BoundListeners(_bind(settings.bind), [])
    try:
        metrics_bind = settings.metrics_bind
        bound.metrics = _bind(metrics_bind) if metrics_bind is not None else []
        grpc_bind = settings.grpc_bind
        bound.grpc = _bind(grpc_bind) if grpc_bind is not None else []
    except ListenError:
        bound.close()
        raise
    return bound


def raise_open_file_limit() -> int:
    """Raises this process's soft limit on open files to its hard limit; returns the limit.

    Every connection is a descriptor, and each waiting claim holds a connection. Many systems
    start processes at a soft limit of 1,024 (the hard limit is what the operator allows), far
    below what a queue service holding long polls needs, and below the per-address cap. Worker
    processes inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError) as exc:  # a hard limit above the kernel's nr_open
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def _bind(bind: str) -> list[socket.socket]:
    config = Config()
    config.bind = [bind]
    # One process binds; worker processes inherit the socket. (Hypercorn sets SO_REUSEPORT when
    # config.workers > 1, which would let a second service bind the same port unnoticed.)
    config.workers = 1
    try:
        sockets = config.create_sockets().insecure_sockets
        for sock in sockets:
            sock.listen(BACKLOG)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {bind}: {reason[:1].lower()}{reason[1:]}") from None
    return sockets


def tls_context(settings: ListenerSettings, *, http2_only: bool = False) -> ssl.SSLContext | None:
    """The listeners' server TLS context (None without TLS): Hypercorn's (TLS >= 1.2, ALPN h2 and
    http/1.1, or h2 alone for the gRPC listener: gRPC is HTTP/2 only), with client certificates
    required when a client CA is given.

    Raises:
        OSError, ssl.SSLError: a file cannot be read or does not hold what it should.
    """
    if not settings.tls:
        return None
    config = Config()
    config.certfile = settings.tls_cert
    config.keyfile = settings.tls_key
    if settings.tls_client_ca is not None:
        config.ca_certs = settings.tls_client_ca
        config.verify_mode = ssl.CERT_REQUIRED
    if http2_only:
        config.alpn_protocols = ["h2"]
    return config.create_ssl_context()


async def run_listeners(
    config: Config,
    settings: ListenerSettings,
    bound: BoundListeners,
    api_app: AppWrapper,
    metrics_app: AppWrapper | None,
    shutdown_trigger: ShutdownTrigger,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    grpc: GrpcListener | None = None,
) -> None:
    """Serves the API (and the metrics app, and gRPC, on their own sockets) until the trigger
    returns.

    Shutdown as Hypercorn's: the listeners stop, connections get ``config.graceful_timeout``
    to finish, then the API app's lifespan ends.
    """
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(api_app, config, lifespan_state)
    context = WorkerContext(None)
    tls = tls_context(settings)
    grpc_tls = tls_context(settings, http2_only=True)

    def listeners(sockets: list[socket.socket], context: ssl.SSLContext | None) -> list[Any]:
        found: list[Any] = []
        for sock in sockets:
            listener: Any = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            if context is not None:
                listener = trio.SSLListener(listener, context, https_compatible=True)
            found.append(listener)
        return found

    def handler(
        app: AppWrapper, state: LifespanState, grpc: GrpcListener | None = None
    ) -> Callable[[Any], Awaitable[None]]:
        # One count per listener: API long polls never lock a scraper out of the metrics port.
        limiter = AddressLimiter(settings.max_connections_per_address)

        async def handle(stream: Any) -> None:
            with limiter.admit(peer_address(stream)) as admitted:
                if not admitted:
                    await trio.aclose_forcefully(stream)
                    return
                connection = GuardedConnection(
                    app,
                    grpc.config if grpc else config,
                    context,
                    ConnectionState(state.copy()),
                    stream,
                    header_timeout_s=settings.header_timeout_s,
                    idle_timeout_s=grpc.idle_timeout_s if grpc else settings.idle_timeout_s,
                    # gRPC is HTTP/2 with prior knowledge, on connections that live for hours.
                    h2c=settings.h2c or grpc is not None,
                    long_lived=grpc is not None,
                    h2_protocol=ScalableH2Protocol if grpc else StreamErrorH2Protocol,
                )
                await connection.run()

        return handle

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            task_status.started(bound.urls(settings.scheme))
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    serve = partial(trio.serve_listeners, handler_nursery=server_nursery)
                    nursery.start_soon(serve, handler(api_app, lifespan_state), listeners(bound.api, tls))
                    if metrics_app is not None and bound.metrics:
                        nursery.start_soon(serve, handler(metrics_app, {}), listeners(bound.metrics, tls))
                    if grpc is not None and bound.grpc:
                        # TLS on every listener when it is on: bearer tokens in gRPC metadata must
                        # never cross the network in the clear beside an HTTPS API.
                        grpc_sockets = listeners(bound.grpc, grpc_tls)
                        nursery.start_soon(serve, handler(grpc.app, {}, grpc), grpc_sockets)
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


def _url(scheme: str, sock: socket.socket) -> str:
    return f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}"
