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
"""

from __future__ import annotations

from typing import Any

from hypercorn.protocol.h2 import H2Protocol
from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError


class RoundRobinStreams:
    """The subset of ``priority.PriorityTree`` Hypercorn's H2Protocol uses, without priorities:
    ``next()`` gives the unblocked streams in turn and raises DeadlockError when none is."""

    def __init__(self) -> None:
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

    def __iter__(self) -> RoundRobinStreams:
        return self

    def __next__(self) -> int:
        if not self._ready:
            raise DeadlockError("no stream has data to send")
        stream_id = next(iter(self._ready))
        del self._ready[stream_id]
        self._ready[stream_id] = None
        return stream_id


class ScalableH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol (0.18) with ``RoundRobinStreams`` as its scheduler, and
    window updates that wake only the streams with bytes to send."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.priority = RoundRobinStreams()  # type: ignore[assignment]

    async def _window_updated(self, stream_id: int | None) -> None:
        # Hypercorn wakes every open stream on a connection-wide window change; each then finds
        # nothing to send and blocks again (2,000 waiting claims: 2,000 wake-ups per change). Only
        # a stream holding buffered bytes waits for window; the others are woken by their data.
        if stream_id is None or stream_id == 0:
            for other, buffer in list(self.stream_buffers.items()):
                if buffer.buffer:
                    self.priority.unblock(other)
        elif stream_id in self.stream_buffers:
            self.priority.unblock(stream_id)
        await self.has_data.set()
