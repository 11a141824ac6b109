"""Which HTTP/2 stream Hypercorn sends from next: round robin over the streams that have something
to send, in constant time per pick, however many streams are open.

Hypercorn asks the ``priority`` package's ``PriorityTree`` for the next stream to send. That tree
keeps every open stream in one heap and, to find an unblocked one, pops and re-pushes each blocked
stream it passes: with the gRPC listener's thousands of waiting claims (all open, all blocked, all
with nothing to send) every pick costs O(n log n), and the service's CPU went there (2,000 claims on
one connection took over 20 s to open, 1,230 of them after 10 s; 2 s with this scheduler). HTTP/2's
stream priorities are deprecated (RFC 9113 section 5.3.2) and gRPC clients do not send them, so
plain round robin loses nothing.

The class has the parts of ``PriorityTree``'s interface Hypercorn calls, with its errors.
"""

from __future__ import annotations

from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError, TooManyStreamsError


class RoundRobinStreams:
    """Open streams, and among them those unblocked (something to send), served in turn."""

    def __init__(self, maximum_streams: int) -> None:
        self._maximum = maximum_streams
        self._open: set[int] = set()
        # Insertion-ordered: the first key is the next to send; a stream served moves to the end.
        self._ready: dict[int, None] = {}

    def insert_stream(
        self, stream_id: int, depends_on: int | None = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        if stream_id in self._open:
            raise DuplicateStreamError(f"stream {stream_id} already in the tree")
        # A bound like the tree's: PRIORITY frames can name streams that never open.
        if len(self._open) >= self._maximum:
            raise TooManyStreamsError(f"more than {self._maximum} streams")
        self._open.add(stream_id)
        self._ready[stream_id] = None

    def reprioritize(
        self, stream_id: int, depends_on: int | None = None, weight: int = 16, exclusive: bool = False
    ) -> None:
        if stream_id not in self._open:
            raise MissingStreamError(f"stream {stream_id} not in the tree")

    def remove_stream(self, stream_id: int) -> None:
        if stream_id not in self._open:
            raise MissingStreamError(f"stream {stream_id} not in the tree")
        self._open.discard(stream_id)
        self._ready.pop(stream_id, None)

    def block(self, stream_id: int) -> None:
        if stream_id not in self._open:
            raise MissingStreamError(f"stream {stream_id} not in the tree")
        self._ready.pop(stream_id, None)

    def unblock(self, stream_id: int) -> None:
        if stream_id not in self._open:
            raise MissingStreamError(f"stream {stream_id} not in the tree")
        self._ready[stream_id] = None

    def __iter__(self) -> RoundRobinStreams:
        return self

    def __next__(self) -> int:
        if not self._ready:
            raise DeadlockError("no stream has anything to send")
        stream_id = next(iter(self._ready))
        del self._ready[stream_id]
        self._ready[stream_id] = None
        return stream_id
