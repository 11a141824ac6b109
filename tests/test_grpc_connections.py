"""Long-lived gRPC connections, as EntroQ's Go workers hold them: one grpcio channel (one HTTP/2
connection) carrying thousands of blocking claims at once, and thousands of calls in a row.

"One connection, never replaced" is checked three ways, all real observables: the TCP connections
between this process and the gRPC port as the kernel lists them on both ends (psutil: the client's
and the service's sockets, the same single pair from start to end: a reconnect takes a new local
port), and the channel's connectivity states (READY once, never TRANSIENT_FAILURE or IDLE after it:
a GOAWAY makes grpcio leave READY). The claims are counted waiting on the service itself
(``entroq_waiting_claims``), so streams queued inside grpcio behind a low MAX_CONCURRENT_STREAMS would
not pass for open claims.

Sizes: 2,000 claims and 5,000 calls (the issue's numbers) in every run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_support
import psutil
import pytest
from conftest import ServiceProcess, start_service
from service_metrics import waiting_claims

CLAIMS = 2_000
WAVES = 4  # tasks arrive in this many inserts, each served before the next arrives
SEQUENTIAL = 5_000


@pytest.fixture(scope="module")
def grpc_service(store_url: str) -> Iterator[ServiceProcess]:
    service = start_service(store_url, "--test-any-namespace", "--grpc-port", "free")
    yield service
    service.stop()


def grpc_port(service: ServiceProcess) -> int:
    return int(str(service.grpc_url).rsplit(":", 1)[1])


Endpoint = tuple[str, int]


def endpoint(address: Any) -> Endpoint:
    # grpcio connects from a dual-stack socket, so its end shows as an IPv4-mapped IPv6 address.
    return (str(address.ip).removeprefix("::ffff:"), int(address.port))


class WatchedChannel:
    """A grpcio channel with its connectivity states recorded and its TCP connections observable."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self.port = grpc_port(service)
        self.channel = grpc_support.channel(str(service.grpc_url))
        self.states: list[grpc.ChannelConnectivity] = []
        self.channel.subscribe(self.states.append, try_to_connect=True)
        grpc.channel_ready_future(self.channel).result(timeout=10)

    def connections(self) -> set[tuple[Endpoint, Endpoint]]:
        """(client address, service address) of each established TCP connection to the gRPC port,
        as seen from this process's sockets and from the service's: the two views must agree."""
        ours = {
            (endpoint(c.laddr), endpoint(c.raddr))
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        }
        service = psutil.Process(self.service.process.pid)
        theirs = {
            (endpoint(c.raddr), endpoint(c.laddr))
            for c in service.net_connections(kind="tcp")
            if c.raddr and c.laddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        }
        assert ours == theirs, (ours, theirs)
        return ours

    def assert_never_reconnected(self) -> None:
        ready = [s for s in self.states if s == grpc.ChannelConnectivity.READY]
        assert len(ready) == 1, self.states
        after = self.states[self.states.index(grpc.ChannelConnectivity.READY) :]
        assert set(after) == {grpc.ChannelConnectivity.READY}, self.states
        assert grpc.ChannelConnectivity.TRANSIENT_FAILURE not in self.states, self.states

    def close(self) -> None:
        self.channel.unsubscribe(self.states.append)
        self.channel.close()


@pytest.fixture
def watched(grpc_service: ServiceProcess) -> Iterator[WatchedChannel]:
    channel = WatchedChannel(grpc_service)
    yield channel
    channel.close()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_thousands_of_blocking_claims_on_one_connection(watched: WatchedChannel, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(watched.channel)
    metadata = (("entroq-namespace", namespace),)
    [connection] = watched.connections()

    done: list[Any] = []
    lock = threading.Lock()

    def finished(future: grpc.Future) -> None:
        with lock:
            done.append(future)

    futures = []
    for i in range(CLAIMS):
        request = pb2.ClaimRequest(claimant_id=f"claimer-{i}", queues=["many/jobs"], duration_ms=60_000)
        future = stub.Claim.future(request, timeout=90, metadata=metadata)
        future.add_done_callback(finished)
        futures.append(future)
    # Every claim is open on the service at once, not queued inside grpcio behind a stream limit.
    wait_for(lambda: waiting_claims(watched.service) == CLAIMS, 20, f"{CLAIMS} waiting claims")
    assert done == []

    inserted: set[str] = set()
    per_wave = CLAIMS // WAVES
    for wave in range(WAVES):
        value = pb2.Value(number_value=wave)
        inserts = [pb2.TaskData(queue="many/jobs", value=value) for _ in range(per_wave)]
        reply = stub.Modify(pb2.ModifyRequest(inserts=inserts), timeout=30, metadata=metadata)
        inserted |= {t.id for t in reply.inserted}
        # Served as the tasks arrive: exactly one claim per task so far, the rest still waiting.
        total = per_wave * (wave + 1)
        wait_for(lambda total=total: len(done) >= total, 30, f"{total} claims served")
        time.sleep(0.05)
        assert len(done) == total
    assert len(inserted) == CLAIMS

    claimed = [f.result().task for f in futures]
    assert sorted(t.id for t in claimed) == sorted(inserted)  # each task claimed exactly once
    assert {t.claimant_id for t in claimed} == {f"claimer-{i}" for i in range(CLAIMS)}
    assert all(t.version == 1 and t.claims == 1 for t in claimed)
    assert waiting_claims(watched.service) == 0
    assert watched.connections() == {connection}
    watched.assert_never_reconnected()


def test_thousands_of_sequential_calls_on_one_connection(watched: WatchedChannel, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(watched.channel)
    metadata = (("entroq-namespace", namespace),)
    [connection] = watched.connections()

    # A worker's loop, four calls a turn: the time, an insert, a claim of it, its deletion.
    calls = 0
    for turn in range(SEQUENTIAL // 4):
        assert stub.Time(pb2.TimeRequest(), timeout=10, metadata=metadata).time_ms > 0
        data = pb2.TaskData(queue="seq/jobs", value=pb2.Value(number_value=turn))
        [task] = stub.Modify(pb2.ModifyRequest(inserts=[data]), timeout=10, metadata=metadata).inserted
        claim = pb2.ClaimRequest(claimant_id="seq", queues=["seq/jobs"], duration_ms=30_000)
        claimed = stub.TryClaim(claim, timeout=10, metadata=metadata).task
        assert claimed.id == task.id
        gone = pb2.TaskID(id=claimed.id, version=claimed.version, queue=claimed.queue)
        stub.Modify(pb2.ModifyRequest(claimant_id="seq", deletes=[gone]), timeout=10, metadata=metadata)
        calls += 4
        if turn % 250 == 0:
            assert watched.connections() == {connection}
    assert calls == SEQUENTIAL
    assert watched.connections() == {connection}
    watched.assert_never_reconnected()
