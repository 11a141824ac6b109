"""The gRPC front end over real sockets: grpcio stubs generated from tests/protos/ (a client
nobody here wrote) against ``entroq-redis serve`` processes, on both schemas."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_support
import httpx
import psutil
import pytest
from conftest import ServiceProcess, start_service
from google.protobuf import json_format


@pytest.fixture(scope="module")
def v1_service(store_url: str) -> Iterator[ServiceProcess]:
    service = start_service(store_url, "--test-any-namespace")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def bytes_service(store_url: str) -> Iterator[ServiceProcess]:
    service = start_service(store_url, "--test-any-namespace", "--grpc-values", "bytes")
    yield service
    service.stop()


@pytest.fixture
def v1_channel(v1_service: ServiceProcess) -> Iterator[grpc.Channel]:
    assert v1_service.grpc_url is not None
    with grpc_support.channel(v1_service.grpc_url) as channel:
        yield channel


def md(namespace: str) -> list[tuple[str, str]]:
    return [("entroq-namespace", namespace)]


def value(pb2: Any, data: Any) -> Any:
    return json_format.ParseDict(data, pb2.Value())


def as_json(message: Any) -> Any:
    return json_format.MessageToDict(message)


def http(service: ServiceProcess, namespace: str, values: str = "base64") -> httpx.Client:
    headers = {
        "EntroQ-Namespace": namespace,
        "User-Agent": "entroq-redis-tests",
        "EntroQ-Value-Encoding": values,
    }
    return httpx.Client(base_url=service.url, headers=headers, timeout=30)


def test_health_is_serving(v1_channel: grpc.Channel) -> None:
    assert grpc_support.health_check(v1_channel) == grpc_support.SERVING


def test_every_rpc_on_the_v1_schema(v1_channel: grpc.Channel, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(v1_channel)
    meta = md(namespace)
    payloads = [{"n": 1, "tags": ["a", None, True], "f": 2.5}, "text", 42, [], {}]
    inserted = stub.Modify(
        pb2.ModifyRequest(
            claimant_id="w",
            inserts=[pb2.TaskData(queue="/jobs", value=value(pb2, p)) for p in payloads]
            + [pb2.TaskData(queue="/later", at_ms=int(time.time() * 1000) + 600_000)],
        ),
        metadata=meta,
    ).inserted
    assert [as_json(t.value) for t in inserted[:5]] == payloads
    assert not inserted[5].HasField("value")  # no value is no value, not null

    stats = {q.name: q for q in stub.QueueStats(pb2.QueuesRequest(), metadata=meta).queues}
    assert (stats["/jobs"].num_tasks, stats["/later"].num_future) == (5, 1)
    queues = stub.Queues(pb2.QueuesRequest(match_prefix=["/j"]), metadata=meta).queues
    assert [(q.name, q.num_tasks) for q in queues] == [("/jobs", 5)]

    tasks = stub.Tasks(pb2.TasksRequest(queue="/jobs"), metadata=meta).tasks
    assert sorted(t.id for t in tasks) == sorted(t.id for t in inserted[:5])
    bare = stub.Tasks(pb2.TasksRequest(queue="/jobs", omit_values=True), metadata=meta).tasks
    assert not any(t.HasField("value") for t in bare)
    streamed = list(stub.StreamTasks(pb2.TasksRequest(queue="/jobs"), metadata=meta))
    assert len(streamed) == 5 and all(len(m.tasks) == 1 for m in streamed)
    assert sorted(as_json(m.tasks[0].value) == p for m in streamed for p in payloads).count(True) == 5

    claimed = stub.TryClaim(
        pb2.ClaimRequest(claimant_id="w", queues=["/jobs"], duration_ms=30_000), metadata=meta
    )
    assert claimed.HasField("task") and claimed.task.claimant_id == "w" and claimed.task.claims == 1
    waited = stub.Claim(
        pb2.ClaimRequest(claimant_id="w", queues=["/jobs"], duration_ms=30_000), metadata=meta, timeout=10
    )
    assert waited.task.id != claimed.task.id

    task = claimed.task
    changed = stub.Modify(
        pb2.ModifyRequest(
            claimant_id="w",
            changes=[
                pb2.TaskChange(
                    old_id=pb2.TaskID(id=task.id, version=task.version, queue=task.queue),
                    new_data=pb2.TaskData(queue="/done", value=value(pb2, {"ok": True})),
                )
            ],
            deletes=[pb2.TaskID(id=waited.task.id, version=waited.task.version, queue="/jobs")],
        ),
        metadata=meta,
    ).changed
    assert [(t.queue, as_json(t.value)) for t in changed] == [("/done", {"ok": True})]
    empty = stub.TryClaim(
        pb2.ClaimRequest(claimant_id="w", queues=["/nothing"], duration_ms=1000), metadata=meta
    )
    assert not empty.HasField("task")
    now = stub.Time(pb2.TimeRequest(), metadata=meta).time_ms
    assert abs(now - time.time() * 1000) < 5_000


def test_every_rpc_on_the_bytes_schema(bytes_service: ServiceProcess, namespace: str) -> None:
    schema = grpc_support.bytes_schema()
    pb2 = schema.pb2
    assert bytes_service.grpc_url is not None
    with grpc_support.channel(bytes_service.grpc_url) as channel:
        stub = schema.stub(channel)
        meta = md(namespace)
        raw = [b"\x00\xffbinary", b'{"a":1}', b""]
        inserted = stub.Modify(
            pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/b", value=v) for v in raw]), metadata=meta
        ).inserted
        assert [t.value for t in inserted] == raw
        assert sorted(
            t.value for t in stub.Tasks(pb2.TasksRequest(queue="/b"), metadata=meta).tasks
        ) == sorted(raw)
        streamed = [m.tasks[0].value for m in stub.StreamTasks(pb2.TasksRequest(queue="/b"), metadata=meta)]
        assert sorted(streamed) == sorted(raw)
        claimed = stub.Claim(
            pb2.ClaimRequest(claimant_id="c", queues=["/b"], duration_ms=5000), metadata=meta
        )
        assert claimed.task.value in raw
        assert stub.TryClaim(
            pb2.ClaimRequest(claimant_id="c", queues=["/b"], duration_ms=5000), metadata=meta
        ).task.id
        assert stub.QueueStats(pb2.QueuesRequest(), metadata=meta).queues[0].num_claimed == 2
        assert stub.Queues(pb2.QueuesRequest(), metadata=meta).queues[0].num_tasks == 3
        assert stub.Time(pb2.TimeRequest(), metadata=meta).time_ms > 0
        assert grpc_support.health_check(channel) == grpc_support.SERVING
        # Bytes over gRPC are the bytes HTTP's seed-era (base64) clients read.
        with http(bytes_service, namespace) as client:
            listed = client.get("/api/v0/tasks", params={"queue": "/b"}).json()["tasks"]
        assert sorted(base64.b64decode(t.get("value", "")) for t in listed) == sorted(raw)


def test_values_cross_between_grpc_v1_and_http(
    v1_service: ServiceProcess, v1_channel: grpc.Channel, namespace: str
) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(v1_channel)
    meta = md(namespace)
    stub.Modify(
        pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/from-grpc", value=value(pb2, {"n": 3, "s": "é"}))]),
        metadata=meta,
    )
    with http(v1_service, namespace) as seed, http(v1_service, namespace, "json") as modern:
        # Stored as compact JSON text: seed-era clients read its bytes, JSON-era ones the JSON.
        (task,) = seed.get("/api/v0/tasks", params={"queue": "/from-grpc"}).json()["tasks"]
        # (A Struct is a map: its keys' order is not kept.)
        stored = base64.b64decode(task["value"]).decode()
        assert json.loads(stored) == {"n": 3, "s": "é"} and " " not in stored
        (task,) = modern.get("/api/v0/tasks", params={"queue": "/from-grpc"}).json()["tasks"]
        assert task["value"] == {"n": 3, "s": "é"}
        # The other way: JSON from an HTTP JSON client, text and binary from a seed-era one.
        body = {"inserts": [{"queue": "/from-http", "value": {"list": [1, 2]}}]}
        assert modern.post("/api/v0/modify", json=body).status_code == 200
        seed_body = {
            "inserts": [
                {"queue": "/from-seed", "value": base64.b64encode(b"plain text").decode()},
                {"queue": "/from-seed", "value": base64.b64encode(b"\x00\x01\xff").decode()},
            ]
        }
        assert seed.post("/api/v0/modify", content=json.dumps(seed_body)).status_code == 200
    (from_http,) = stub.Tasks(pb2.TasksRequest(queue="/from-http"), metadata=meta).tasks
    assert as_json(from_http.value) == {"list": [1, 2]}
    seeded = sorted(
        as_json(t.value) for t in stub.Tasks(pb2.TasksRequest(queue="/from-seed"), metadata=meta).tasks
    )
    # Text reads as a string; other bytes as their base64 (docs/migrating.md's lossy case).
    assert seeded == sorted(["plain text", base64.b64encode(b"\x00\x01\xff").decode()])


def test_namespace_metadata_selects_the_namespace(
    v1_channel: grpc.Channel, namespace: str, sync_redis: Any
) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(v1_channel)
    stub.Modify(pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/ns")]), metadata=md(namespace))
    other = namespace + "x"
    try:
        assert len(stub.Tasks(pb2.TasksRequest(queue="/ns"), metadata=md(namespace)).tasks) == 1
        assert len(stub.Tasks(pb2.TasksRequest(queue="/ns"), metadata=md(other)).tasks) == 0
        assert list(sync_redis.scan_iter(match="{" + namespace + "}:*"))
    finally:
        for key in sync_redis.scan_iter(match="{" + other + "}:*"):
            sync_redis.delete(key)


def test_request_id_is_echoed(v1_channel: grpc.Channel, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(v1_channel)
    _, call = stub.Time.with_call(pb2.TimeRequest(), metadata=[*md(namespace), ("x-request-id", "trace-42")])
    assert ("x-request-id", "trace-42") in list(call.initial_metadata())
    _, call = stub.Time.with_call(pb2.TimeRequest(), metadata=md(namespace))
    assert len(dict(call.initial_metadata())["x-request-id"]) == 32  # a new one


def test_metrics_count_grpc_calls(
    v1_service: ServiceProcess, v1_channel: grpc.Channel, namespace: str
) -> None:
    pb2 = grpc_support.v1().pb2
    stub = grpc_support.v1().stub(v1_channel)
    stub.Time(pb2.TimeRequest(), metadata=md(namespace))
    with pytest.raises(grpc.RpcError):
        stub.Docs(pb2.DocsRequest(), metadata=md(namespace))
    text = httpx.get(v1_service.url + "/metrics").text
    assert 'entroq_grpc_requests_total{code="OK",method="Time"}' in text
    assert 'entroq_grpc_requests_total{code="INVALID_ARGUMENT",method="Docs"}' in text
    assert 'entroq_grpc_request_duration_seconds_count{code="OK",method="Time"}' in text


def _client_connections(port: int) -> set[int]:
    """Local ports of this process's TCP connections to ``port``."""
    return {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port}


def test_thousands_of_calls_on_one_connection(v1_service: ServiceProcess, namespace: str) -> None:
    # Hypercorn's default closes a connection with GOAWAY after 1,000 requests; not here.
    pb2 = grpc_support.v1().pb2
    assert v1_service.grpc_url is not None
    port = int(v1_service.grpc_url.rsplit(":", 1)[1])
    with grpc_support.channel(v1_service.grpc_url) as channel:
        stub = grpc_support.v1().stub(channel)
        stub.Time(pb2.TimeRequest(), metadata=md(namespace))
        first = _client_connections(port)
        assert len(first) == 1
        for _ in range(2_500):
            stub.Time(pb2.TimeRequest(), metadata=md(namespace))
        assert _client_connections(port) == first


def test_many_blocking_claims_on_one_connection(
    v1_service: ServiceProcess, namespace: str, request: pytest.FixtureRequest
) -> None:
    # One Go worker process runs all its blocking claims on one connection, a stream each.
    count = 2_000
    pb2 = grpc_support.v1().pb2
    assert v1_service.grpc_url is not None
    port = int(v1_service.grpc_url.rsplit(":", 1)[1])
    with grpc_support.channel(v1_service.grpc_url) as channel:
        stub = grpc_support.v1().stub(channel)
        claim = pb2.ClaimRequest(claimant_id="w", queues=["/wait"], duration_ms=60_000)
        started = time.monotonic()
        futures = [stub.Claim.future(claim, metadata=md(namespace), timeout=120) for _ in range(count)]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _waiting_claims(v1_service) < count:
            time.sleep(0.2)
        assert _waiting_claims(v1_service) >= count
        waiting = time.monotonic()
        assert not any(f.done() for f in futures)
        for start in range(0, count, 500):
            inserts = [pb2.TaskData(queue="/wait", value=value(pb2, i)) for i in range(start, start + 500)]
            stub.Modify(pb2.ModifyRequest(inserts=inserts), metadata=md(namespace))
        got = sorted(as_json(f.result(timeout=60).task.value) for f in futures)
        assert got == list(range(count))
        print(
            f"{count} claims waiting after {waiting - started:.1f} s, "
            f"served {time.monotonic() - waiting:.1f} s later"
        )
        assert len(_client_connections(port)) == 1


def _waiting_claims(service: ServiceProcess) -> float:
    for line in httpx.get(service.url + "/metrics").text.splitlines():
        if line.startswith("entroq_waiting_claims "):
            return float(line.split()[1])
    return 0.0
