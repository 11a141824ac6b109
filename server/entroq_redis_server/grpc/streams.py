"""HTTP/2 for thousands of concurrent calls on one connection: Hypercorn's H2 protocol with a
round-robin stream scheduler in place of its priority tree.

Hypercorn picks the next stream to send data for from a ``priority.PriorityTree``. That tree
refuses a 1,001st open stream (an exception that ends the connection), and each pick walks
past every blocked stream; and Hypercorn wakes every open stream on each connection-wide window
or settings change from the client (grpcio sends them as it probes bandwidth). With thousands
of blocking claims open on one connection (each a blocked stream: nothing to send until a task
arrives) the cost grew with the square of their number: measured with grpcio on one
connection, 2,000 claims took 32 s to be accepted (250: 0.6 s); with this module, 3.0 s (250:
0.3 s). Stream priorities are deprecated in HTTP/2 (RFC 9113, 5.3) and gRPC clients do not
send them: streams with data to send take turns here, each pick O(1).

The scheduler holds at most the connection's maximum of concurrent streams (--grpc-max-streams):
PRIORITY frames for unopened streams never reach it (``listen.h2_requests``), streams the client
resets leave it at once, and a new call that would overfill it is refused with UNAVAILABLE on
its own stream (h2 enforces the same limit on open streams, so this is a backstop that raises
nothing into the connection). Malformed calls are answered as gRPC errors on their stream.
"""

from __future__ import annotations

from typing import Any

from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError, TooManyStreamsError

from ..core.errors import ApiError, unavailable
from ..listen.h2_requests import StreamErrorH2Protocol
from .status import error_trailers


class RoundRobinStreams:
    """The subset of ``priority.PriorityTree`` Hypercorn's H2Protocol uses, without priorities:
    ``next()`` gives the unblocked streams in turn and raises DeadlockError when none is; at
    most ``max_streams`` streams are held (TooManyStreamsError, as the tree's own cap)."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._streams: set[int] = set()
        # Unblocked streams in turn order (a dict keeps insertion order; a pick moves to the end).
        self._ready: dict[int, None] = {}

    def _known(self, stream_id: int) -> None:
        if stream_id not in self._streams:
            raise MissingStreamError(f"stream {stream_id} is not open")

    def insert_stream(
        self, stream_id: int, depends_on: Any = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        if stream_id in self._streams:
            raise DuplicateStreamError(f"stream {stream_id} is open already")
        if len(self._streams) >= self.max_streams:
            raise TooManyStreamsError(f"{self.max_streams} streams are open already")
        self._streams.add(stream_id)
        self._ready[stream_id] = None

    def reprioritize(
        self, stream_id: int, depends_on: Any = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        self._known(stream_id)  # priorities are ignored

    def remove_stream(self, stream_id: int) -> None:
        self._known(stream_id)
        self._streams.discard(stream_id)
        self._ready.pop(stream_id, None)

    def block(self, stream_id: int) -> None:
        self._known(stream_id)
        self._ready.pop(stream_id, None)

    def unblock(self, stream_id: int) -> None:
        self._known(stream_id)
        self._ready[stream_id] = None

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> RoundRobinStreams:
        return self

    def __next__(self) -> int:
        if not self._ready:
            raise DeadlockError("no stream has data to send")
        stream_id = next(iter(self._ready))
        del self._ready[stream_id]
        self._ready[stream_id] = None
        return stream_id


class ScalableH2Protocol(StreamErrorH2Protocol):
    """Hypercorn's HTTP/2 protocol (0.18) with ``RoundRobinStreams`` as its scheduler, window
    updates that wake only the streams with bytes to send, and a malformed or refused call
    answered as a gRPC error on its own stream."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.scheduler = RoundRobinStreams(self.config.h2_max_concurrent_streams)
        self.priority = self.scheduler  # type: ignore[assignment]
        self._sending: int | None = None

    def refuse_new_stream(self, pending: int) -> ApiError | None:
        if len(self.scheduler) + pending < self.scheduler.max_streams:
            return None
        return unavailable(f"this connection has {self.scheduler.max_streams} calls open already")

    def refuse_request(self, stream_id: int, problem: ApiError) -> None:
        # Headers, then the status in trailers, as every other gRPC answer of this service:
        # never a trailers-only response (docs/reference/entroq-v1-grpc-and-docs.md 3: grpcio
        # misreads those that an HTTP server turns into headers plus an empty DATA frame).
        headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        self.connection.send_headers(stream_id, headers)
        self.connection.send_headers(stream_id, error_trailers(problem), end_stream=True)

    async def _window_updated(self, stream_id: int | None) -> None:
        # Hypercorn wakes every open stream on a connection-wide window change; each then finds
        # nothing to send and blocks again (2,000 waiting claims: 2,000 wake-ups per change). Only
        # a stream holding buffered bytes waits for window; the others are woken by their data.
        if stream_id is None or stream_id == 0:
            for other, buffer in list(self.stream_buffers.items()):
                if buffer.buffer:
                    self.priority.unblock(other)
        elif stream_id in self.stream_buffers:
            if self._closed_in_h2(stream_id) and stream_id != self._sending:
                # Reset by the client: Hypercorn leaves its buffer to the sending task, which may
                # not run before the next read, so the stream would still count against the
                # scheduler's cap. Cleaned up as that task would (waking a blocked writer).
                await self.stream_buffers.pop(stream_id).close()
                self.scheduler.remove_stream(stream_id)
            else:
                self.priority.unblock(stream_id)
        await self.has_data.set()

    def _closed_in_h2(self, stream_id: int) -> bool:
        stream = self.connection.streams.get(stream_id)
        return stream is None or stream.closed

    async def _send_data(self, stream_id: int) -> None:
        # The stream the sending task is busy with (it may wait in a write): only that task
        # cleans it up.
        self._sending = stream_id
        try:
            await super()._send_data(stream_id)
        finally:
            self._sending = None
