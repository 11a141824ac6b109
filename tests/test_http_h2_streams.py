"""server/_h2_streams.py: the HTTP/2 send scheduler Hypercorn asks which stream to send from next.

Its use under load (thousands of open streams on one connection) is tests/test_grpc_connections.py;
here, the contract Hypercorn relies on, which the priority package's tree defines."""

from __future__ import annotations

import pytest
from entroq_redis_server._h2_streams import RoundRobinStreams
from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError, TooManyStreamsError


def picks(streams: RoundRobinStreams, count: int) -> list[int]:
    return [next(streams) for _ in range(count)]


def test_unblocked_streams_are_served_in_turn_and_blocked_ones_never() -> None:
    streams = RoundRobinStreams(maximum_streams=10)
    for stream_id in (1, 3, 5):
        streams.insert_stream(stream_id)
    assert picks(streams, 6) == [1, 3, 5, 1, 3, 5]
    streams.block(3)
    assert picks(streams, 4) == [1, 5, 1, 5]
    streams.unblock(3)
    assert sorted(picks(streams, 3)) == [1, 3, 5]
    streams.remove_stream(1)
    streams.block(5)
    assert picks(streams, 2) == [3, 3]


def test_nothing_to_send_is_a_deadlock_as_hypercorn_expects() -> None:
    streams = RoundRobinStreams(maximum_streams=10)
    with pytest.raises(DeadlockError):
        next(streams)
    streams.insert_stream(1)
    streams.block(1)
    with pytest.raises(DeadlockError):
        next(streams)


def test_errors_match_the_priority_tree() -> None:
    streams = RoundRobinStreams(maximum_streams=2)
    streams.insert_stream(1)
    with pytest.raises(DuplicateStreamError):
        streams.insert_stream(1)  # Hypercorn: a PRIORITY frame came before the HEADERS
    streams.insert_stream(3)
    with pytest.raises(TooManyStreamsError):
        streams.insert_stream(5)
    for call in (streams.block, streams.unblock, streams.remove_stream, streams.reprioritize):
        with pytest.raises(MissingStreamError):
            call(7)
    streams.reprioritize(1, depends_on=3, weight=200)  # accepted, and changes nothing
    assert picks(streams, 2) == [1, 3]
