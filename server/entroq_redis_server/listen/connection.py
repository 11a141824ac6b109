"""One accepted connection under the listener's rules: Hypercorn's TCP server with idle and
header timeouts, HTTP/2 without TLS (h2c) only when asked, and a cap on connections per client
address.

Hypercorn has no header timeout: its idle timer runs until the next complete header, so a
client trickling a header byte by byte holds the connection for the whole keep-alive time (and
with Quart on trio that timer does not run at all after the first request, see
``ConnectionClock``); its optional ``read_timeout`` would cut waiting long-poll claims (they
send nothing for minutes). Hypercorn also switches any plaintext connection to HTTP/2 on the
prior-knowledge preface or an ``Upgrade: h2c``, and has no per-address limit. The classes here
add those rules around Hypercorn's own protocol code (``TCPServer``, ``ProtocolWrapper``,
``H11Protocol``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState
from hypercorn.utils import parse_socket_addr

log = logging.getLogger(__name__)

Send = Callable[[Event], Awaitable[None]]


class ConnectionClock:
    """Ends a connection that stays idle too long or whose request header does not arrive in time.

    One deadline, in the state the connection is in: from its start, the first request's header
    (``header_timeout_s``); while a request is in progress, none (a long-poll claim waits as
    long as its caller allows); once idle again, ``idle_timeout_s``; from the first byte of the
    next request, ``header_timeout_s`` for its header. Hypercorn reports "request in progress"
    and "idle again" as ``Updated`` events, per connection (HTTP/1.1) or once no stream is open
    (HTTP/2).

    This clock replaces Hypercorn's own idle timer. That timer is restarted from the task that
    ends each response, and with Quart on trio that task is already cancelled by then, so it never
    ran after a connection's first request and idle keep-alive connections stayed open for good;
    made to run, it would start a task per request (about a tenth of the service's CPU on a no-op
    route). The clock's deadline costs nothing per request, and is enforced by the task that
    reads the connection. When the server shuts down (``terminate``), an idle connection is
    closed at once and a busy one as soon as its request is answered, as Hypercorn's timer did.

    With ``long_lived`` (the gRPC listener), bytes arriving while no request is in progress
    (the HTTP/2 preface, SETTINGS, PINGs) restart the idle deadline instead of starting the
    header timer: a gRPC client keeps its connection open for hours and pings it, and its
    requests' headers come in single HEADERS frames.
    """

    def __init__(self, header_timeout_s: float, idle_timeout_s: float, *, long_lived: bool = False) -> None:
        self.header_timeout_s = header_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.long_lived = long_lived
        self.scope = trio.CancelScope(deadline=trio.current_time() + header_timeout_s)
        self.state = "header"
        self.terminated = False

    def data_received(self) -> None:
        if self.long_lived:
            if self.state != "request" and not self.terminated:
                self.state = "idle"
                self.scope.deadline = trio.current_time() + self.idle_timeout_s
            return
        if self.state == "idle" and not self.terminated:
            self.state = "header"
            self.scope.deadline = trio.current_time() + self.header_timeout_s

    def updated(self, idle: bool) -> None:
        if idle:
            self.state = "idle"
            self.scope.deadline = trio.current_time() + (0 if self.terminated else self.idle_timeout_s)
        else:
            self.state = "request"
            self.scope.deadline = math.inf

    def terminate(self) -> None:
        """The server is shutting down: no connection waits for another request."""
        self.terminated = True
        if self.state != "request":
            self.scope.deadline = trio.current_time()


class _RefusedProtocol(Exception):
    """The client asked for a protocol this listener does not serve; the connection closes."""


class _H11WithoutH2C(H11Protocol):
    """HTTP/1.1 that never turns into HTTP/2 on a plaintext connection.

    An ``Upgrade: h2c`` is ignored (HTTP/1.1 lets a server decline an upgrade by answering in
    1.1); the HTTP/2 prior-knowledge preface gets 505 and the connection closes.
    """

    async def _check_protocol(self, event: Any) -> None:
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            await self._send_error_response(505)
            raise _RefusedProtocol


class GuardedProtocol(ProtocolWrapper):
    """Hypercorn's protocol choice, reporting to the connection clock and refusing h2c unless
    allowed; HTTP/2 is served by ``h2_protocol`` (the gRPC listener's scales to thousands of
    streams, see ``grpc.streams``)."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        state: ConnectionState,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        *,
        clock: ConnectionClock,
        h2c: bool,
        send: Send,
        alpn_protocol: str,
        h2_protocol: type[H2Protocol] = H2Protocol,
    ) -> None:
        self._clock = clock
        self._h2_protocol = h2_protocol
        self._connection_send = send
        args = (app, config, context, task_group, state, ssl, client, server)
        self._args = args
        super().__init__(*args, self._observe, alpn_protocol)
        if not h2c and isinstance(self.protocol, H11Protocol):
            self.protocol = _H11WithoutH2C(*args, self._observe)
        elif isinstance(self.protocol, H2Protocol) and h2_protocol is not H2Protocol:
            self.protocol = h2_protocol(*args, self._observe)

    async def _observe(self, event: Event) -> None:
        if isinstance(event, Updated):
            # The clock is the connection's only idle timer (see ConnectionClock).
            self._clock.updated(event.idle)
        elif isinstance(event, Closed):
            # This comes from the task that ends the response, and Quart on trio cancels that
            # task as soon as Hypercorn reports the response sent: unshielded, "close the
            # connection" (after a 408, a 413, a Connection: close) was cut off halfway and
            # never happened. It is quick (the TLS stream is https-compatible: closing it sends
            # no close_notify to wait on).
            with trio.CancelScope(shield=True):
                await self._connection_send(event)
        else:
            await self._connection_send(event)

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData) and event.data:
            self._clock.data_received()
        # ProtocolWrapper.handle (0.18), switching to ``h2_protocol`` rather than H2Protocol.
        try:
            await self.protocol.handle(event)
        except _RefusedProtocol:
            await self._connection_send(Closed())
        except H2ProtocolAssumedError as error:
            self.protocol = self._h2_protocol(*self._args, self._observe)
            await self.protocol.initiate()
            if error.data != b"":
                await self.protocol.handle(RawData(data=error.data))
        except H2CProtocolRequiredError as error:
            self.protocol = self._h2_protocol(*self._args, self._observe)
            await self.protocol.initiate(error.headers, error.settings)
            if error.data != b"":
                await self.protocol.handle(RawData(data=error.data))


class GuardedConnection(TCPServer):
    """Hypercorn's TCP server for one connection, with the connection clock and the h2c choice.

    ``run`` is Hypercorn's own (0.18) with three changes: the clock's deadline covers the TLS
    handshake, every request header and every idle time; the protocol is ``GuardedProtocol``;
    and the stream is closed on every path (Hypercorn returns without closing it when a TLS
    handshake fails).
    """

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: ConnectionState,
        stream: Any,
        *,
        header_timeout_s: float,
        idle_timeout_s: float,
        h2c: bool,
        long_lived: bool = False,
        h2_protocol: type[H2Protocol] = H2Protocol,
    ) -> None:
        super().__init__(app, config, context, state, stream)
        self.h2_protocol = h2_protocol
        self.header_timeout_s = header_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.h2c = h2c
        self.long_lived = long_lived

    async def run(self) -> None:
        clock = ConnectionClock(self.header_timeout_s, self.idle_timeout_s, long_lived=self.long_lived)
        served = False
        try:
            with clock.scope:
                served = await self._serve(clock)
        except Exception:
            # An error Hypercorn's protocol code lets out (its HTTP/2 code raises on some
            # client behaviour) ends this connection, never the listener and its others.
            log.exception("closed a connection after an error in its protocol handling")
            served = False
        finally:
            if served:
                await self._close()
            else:
                # A failed handshake, a header that never came, an idle connection's time is up.
                await trio.aclose_forcefully(self.stream)
        if clock.scope.cancelled_caught:
            log.debug("closed a connection: %s timeout", clock.state)

    async def _serve(self, clock: ConnectionClock) -> bool:
        """Serves the connection; False if its TLS handshake failed."""
        try:
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                return False
            alpn_protocol = self.stream.selected_alpn_protocol() or "http/1.1"
            sock = self.stream.transport_stream.socket
            ssl = True
        except AttributeError:  # not TLS
            alpn_protocol = "http/1.1"
            sock = self.stream.socket
            ssl = False
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = GuardedProtocol(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    ssl,
                    client,
                    server,
                    clock=clock,
                    h2c=self.h2c,
                    send=self.protocol_send,
                    alpn_protocol=alpn_protocol,
                    h2_protocol=self.h2_protocol,
                )
                await self.protocol.initiate()
                async with trio.open_nursery() as watching:
                    watching.start_soon(self._terminate_on_shutdown, clock)
                    await self._read_data()
                    # The client is gone: the watcher must not keep this task (and the
                    # connection's place under the per-address cap) until shutdown.
                    watching.cancel_scope.cancel()
        except OSError:
            pass
        return True

    async def _terminate_on_shutdown(self, clock: ConnectionClock) -> None:
        await self.context.terminated.wait()
        clock.terminate()


class AddressLimiter:
    """Counts open connections per client address; refuses one over the cap (0: no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}
        self._last_warning = -math.inf

    @contextlib.contextmanager
    def admit(self, address: str) -> Iterator[bool]:
        """Yields whether the connection may proceed; counts it while the block runs."""
        held = self._open.get(address, 0)
        if self.cap and held >= self.cap:
            self._warn(address)
            yield False
            return
        self._open[address] = held + 1
        try:
            yield True
        finally:
            left = self._open[address] - 1
            if left:
                self._open[address] = left
            else:
                del self._open[address]

    def _warn(self, address: str) -> None:
        # One line per minute at most: a client hammering the cap must not flood the log.
        now = trio.current_time()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning(
                "refused a connection from %s: it holds %d already (--max-connections-per-address)",
                address,
                self.cap,
            )


def peer_address(stream: Any) -> str:
    """The client's IP address of an accepted (TLS or plain) trio stream."""
    transport = getattr(stream, "transport_stream", stream)
    try:
        return str(transport.socket.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return ""  # a unix socket or a peer already gone: one shared bucket
