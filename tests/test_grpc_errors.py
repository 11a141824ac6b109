"""gRPC errors as EntroQ's clients read them (docs/reference/entroq-v1-grpc-and-docs.md 3), the
limits, the health service, and the ``serve`` command's gRPC flags; real service processes,
grpcio stubs."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_support
import httpx
import psutil
import pytest
from authz_support import ALICE, BOB, REGO_FLAGS
from conftest import ServiceProcess, start_service
from google.protobuf import json_format

from entroq_redis.cli import build_parser
from entroq_redis.cli._serve_grpc import grpc_settings


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace")
    yield process
    process.stop()


@pytest.fixture
def stub(service: ServiceProcess) -> Iterator[Any]:
    assert service.grpc_url is not None
    with grpc_support.channel(service.grpc_url) as channel:
        yield grpc_support.v1().stub(channel)


def md(namespace: str, token: str | None = None) -> list[tuple[str, str]]:
    meta = [("entroq-namespace", namespace)]
    return [*meta, ("authorization", f"Bearer {token}")] if token else meta


def rpc_error(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def details(error: grpc.RpcError, pb2: Any) -> list[Any]:
    """The typed details of ``grpc-status-details-bin``, decoded by their type URLs."""
    status = grpc_support.status_details(error)
    assert status is not None and status.code == error.code().value[0]  # type: ignore[attr-defined]
    decoded = []
    for any_detail in status.details:
        name = any_detail.type_url.removeprefix("type.googleapis.com/api.")
        decoded.append(getattr(pb2, name).FromString(any_detail.value))
    return decoded


def test_dependency_failure_is_not_found_with_modify_deps(stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    (task,) = stub.Modify(
        pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/q")]), metadata=md(namespace)
    ).inserted
    stale = pb2.TaskID(id=task.id, version=task.version + 1, queue="/q")
    error = rpc_error(
        stub.Modify,
        pb2.ModifyRequest(deletes=[stale], depends=[pb2.TaskID(id="missing", queue="/q")]),
        metadata=md(namespace),
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert error.details().startswith("modification dependency error")  # type: ignore[attr-defined]
    detail, *items = details(error, pb2)
    assert pb2.ActionType.values_by_number[detail.type].name == "DETAIL"
    kinds = sorted((pb2.ActionType.values_by_number[d.type].name, d.id.id) for d in items)
    assert kinds == [("DELETE", task.id), ("DEPEND", "missing")]
    assert {d.reason for d in items} == {"mismatch", "missing"}
    # Nothing was deleted.
    assert len(stub.Tasks(pb2.TasksRequest(queue="/q"), metadata=md(namespace)).tasks) == 1


def test_invalid_arguments_say_what_http_says(service: ServiceProcess, stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as http:
        cases = [
            (
                stub.Tasks,
                pb2.TasksRequest(queue="/q", limit=-1),
                "GET",
                "/api/v0/tasks?queue=/q&limit=-1",
                None,
            ),
            (
                stub.Modify,
                pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/q", at_ms=5, by_ms=5)]),
                "POST",
                "/api/v0/modify",
                {"inserts": [{"queue": "/q", "atMs": "5", "byMs": "5"}]},
            ),
            (
                stub.TryClaim,
                pb2.ClaimRequest(claimant_id="c", queues=[f"/q{i}" for i in range(2000)], duration_ms=1000),
                "POST",
                "/api/v0/claim",
                {"claimantId": "c", "queues": [f"/q{i}" for i in range(2000)], "durationMs": "1000"},
            ),
        ]
        for call, request, method, path, body in cases:
            error = rpc_error(call, request, metadata=md(namespace))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            answer = http.request(method, path, json=body)
            assert answer.status_code == 400
            assert error.details() == answer.json()["message"]  # type: ignore[attr-defined]
    # A value that is not JSON (NaN) is refused as the HTTP JSON route refuses it.
    nan = pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/q", value=pb2.Value(number_value=math.nan))])
    error = rpc_error(stub.Modify, nan, metadata=md(namespace))
    json_headers = {**headers, "EntroQ-Value-Encoding": "json", "Content-Type": "application/json"}
    answer = httpx.post(
        service.url + "/api/v0/modify",
        content=b'{"inserts":[{"queue":"/q","value":NaN}]}',
        headers=json_headers,
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, answer.json()["message"])  # type: ignore[attr-defined]
    assert stub.Tasks(pb2.TasksRequest(queue="/q"), metadata=md(namespace)).tasks == []


def test_bytes_that_are_not_the_message_are_invalid_argument(service: ServiceProcess) -> None:
    assert service.grpc_url is not None
    with grpc_support.channel(service.grpc_url) as channel:
        raw = channel.unary_unary("/api.EntroQ/Time", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "cannot parse the protobuf message" in caught.value.details()  # type: ignore[attr-defined]


def test_bad_document_requests_are_invalid_and_unknown_methods_unimplemented(
    service: ServiceProcess, stub: Any, namespace: str
) -> None:
    pb2 = grpc_support.v1().pb2
    reset = pb2.DocChange(
        old_id=pb2.DocID(namespace="n", id="d", version=0),
        mode=pb2.ChangeMode.values_by_name["CHANGE_RESET_CLAIMS"].number,
    )
    for call, request, wanted in (
        (stub.Docs, pb2.DocsRequest(), "a doc namespace is required"),
        (stub.ClaimDocs, pb2.ClaimDocsRequest(), "a doc namespace is required"),
        (stub.NamespaceStats, pb2.NamespacesRequest(limit=-1), "limit must not be negative"),
        (stub.Modify, pb2.ModifyRequest(doc_changes=[reset]), "CHANGE_RESET_CLAIMS is for tasks"),
    ):
        error = rpc_error(call, request, metadata=md(namespace))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert wanted in error.details()  # type: ignore[attr-defined]
    assert service.grpc_url is not None
    with grpc_support.channel(service.grpc_url) as channel:
        other = channel.unary_unary("/api.EntroQ/Nope", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as caught:
            other(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert caught.value.details() == "unknown gRPC method /api.EntroQ/Nope"  # type: ignore[attr-defined]


def _waiting_claims(service: ServiceProcess) -> float:
    for line in httpx.get(service.url + "/metrics").text.splitlines():
        if line.startswith("entroq_waiting_claims "):
            return float(line.split()[1])
    raise AssertionError("no entroq_waiting_claims")


def test_claim_ends_at_the_callers_deadline(service: ServiceProcess, stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    started = time.monotonic()
    request = pb2.ClaimRequest(claimant_id="c", queues=["/empty"], duration_ms=1000)
    error = rpc_error(stub.Claim, request, metadata=md(namespace), timeout=0.5)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert 0.45 < time.monotonic() - started < 2.0
    # The service stopped waiting too (it does not hold the claim until some later task).
    deadline = time.monotonic() + 5
    while _waiting_claims(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting_claims(service) == 0


def test_claim_ends_at_the_service_cap_with_deadline_exceeded(store_url: str, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    capped = start_service(store_url, "--test-any-namespace", "--claim-wait-cap", "0.5")
    try:
        assert capped.grpc_url is not None
        with grpc_support.channel(capped.grpc_url) as channel:
            started = time.monotonic()
            request = pb2.ClaimRequest(claimant_id="c", queues=["/empty"], duration_ms=1000)
            error = rpc_error(
                grpc_support.v1().stub(channel).Claim, request, metadata=md(namespace), timeout=30
            )
        # The server's answer (the caller's own deadline is 30 s away), in the cap's time.
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert error.details() != "Deadline Exceeded"  # type: ignore[attr-defined]
        assert time.monotonic() - started < 5
    finally:
        capped.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_down_is_unavailable_and_not_serving() -> None:
    dead = start_service(f"redis://127.0.0.1:{_free_port()}", "--test-any-namespace", wait_ready=False)
    try:
        assert dead.grpc_url is not None
        with grpc_support.channel(dead.grpc_url) as channel:
            assert grpc_support.health_check(channel) == grpc_support.NOT_SERVING
            pb2 = grpc_support.v1().pb2
            error = rpc_error(grpc_support.v1().stub(channel).Time, pb2.TimeRequest(), timeout=30)
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert "store" in error.details()  # type: ignore[attr-defined]
    finally:
        dead.stop()


def test_message_limit(store_url: str, stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    # 10 MB messages pass by default (the Go client's maximum).
    big = pb2.ModifyRequest(
        inserts=[pb2.TaskData(queue="/big", value=pb2.Value(string_value="x" * 9_900_000))]
    )
    assert big.ByteSize() > 9_900_000
    (task,) = stub.Modify(big, metadata=md(namespace), timeout=60).inserted
    assert len(task.value.string_value) == 9_900_000
    small = start_service(store_url, "--test-any-namespace", "--grpc-max-message-mb", "1")
    try:
        assert small.grpc_url is not None
        with grpc_support.channel(small.grpc_url) as channel:
            limited = grpc_support.v1().stub(channel)
            over = pb2.ModifyRequest(
                inserts=[pb2.TaskData(queue="/big", value=pb2.Value(string_value="y" * 2_000_000))]
            )
            error = rpc_error(limited.Modify, over, metadata=md(namespace), timeout=30)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            assert error.details() == "gRPC request message is larger than the limit of 1048576 bytes"  # type: ignore[attr-defined]
            # The connection and the service carry on.
            assert limited.Time(pb2.TimeRequest(), metadata=md(namespace), timeout=10).time_ms > 0
            assert len(limited.Tasks(pb2.TasksRequest(queue="/big"), metadata=md(namespace)).tasks) == 1
    finally:
        small.stop()


def test_compressed_messages_are_refused_clearly(stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    # grpcio compresses a message only when that makes it smaller.
    request = pb2.ModifyRequest(
        inserts=[pb2.TaskData(queue="/z", value=pb2.Value(string_value="z" * 10_000))]
    )
    error = rpc_error(
        stub.Modify, request, metadata=md(namespace), compression=grpc.Compression.Gzip, timeout=10
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert "compressed gRPC messages are not supported" in error.details()  # type: ignore[attr-defined]
    assert stub.Tasks(pb2.TasksRequest(queue="/z"), metadata=md(namespace)).tasks == []


def test_authorization_metadata_goes_through_the_policy(store_url: str, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    guarded = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    try:
        assert guarded.grpc_url is not None
        with grpc_support.channel(guarded.grpc_url) as channel:
            stub = grpc_support.v1().stub(channel)
            insert = pb2.ModifyRequest(
                inserts=[pb2.TaskData(queue="/alice/jobs", value=pb2.Value(number_value=1))]
            )
            error = rpc_error(stub.Modify, insert, metadata=md(namespace))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            error = rpc_error(stub.Modify, insert, metadata=md(namespace, BOB))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            denied = [json_format.MessageToDict(d) for d in details(error, pb2)]
            assert {"actions": ["INSERT"], "exact": "/alice/jobs"} in denied
            (task,) = stub.Modify(insert, metadata=md(namespace, ALICE)).inserted
            assert task.queue == "/alice/jobs"
            # Two credentials are ambiguous, as over HTTP.
            both = [*md(namespace, ALICE), ("authorization", f"Bearer {BOB}")]
            error = rpc_error(stub.Time, pb2.TimeRequest(), metadata=both)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            # Health needs no credentials (the Go client checks it first).
            assert grpc_support.health_check(channel) == grpc_support.SERVING
    finally:
        guarded.stop()


def test_grpc_port_0_turns_grpc_off(store_url: str) -> None:
    off = start_service(store_url, "--grpc-port", "0")
    try:
        assert off.grpc_url is None
        listening = [
            c for c in psutil.Process(off.process.pid).net_connections("tcp") if c.status == "LISTEN"
        ]
        assert len(listening) == 1  # HTTP only
    finally:
        off.stop()


def test_workers_share_the_grpc_socket(store_url: str, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    workers = start_service(store_url, "--test-any-namespace", "--workers", "2")
    try:
        assert workers.grpc_url is not None
        for _ in range(6):  # new connections, spread over the workers by the kernel
            with grpc_support.channel(workers.grpc_url) as channel:
                assert (
                    grpc_support.v1()
                    .stub(channel)
                    .Time(pb2.TimeRequest(), metadata=md(namespace), timeout=10)
                )
    finally:
        workers.stop()


def test_grpc_flags_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENTROQ_REDIS_GRPC_PORT", raising=False)
    args = build_parser().parse_args(["serve"])
    settings = grpc_settings(args)
    assert (settings.port, settings.values, settings.max_message_bytes) == (37706, "value", 10 * 1024 * 1024)
    assert settings.max_concurrent_streams == 10_000
    assert grpc_settings(build_parser().parse_args(["serve", "--grpc-port", "0"])) is None
    assert grpc_settings(build_parser().parse_args(["serve", "--grpc-port", "free"])).port == 0
    values = build_parser().parse_args(["serve", "--grpc-values", "bytes", "--grpc-port", "5000"])
    assert (grpc_settings(values).values, grpc_settings(values).port) == ("bytes", 5000)
    monkeypatch.setenv("ENTROQ_REDIS_GRPC_PORT", "4000")
    assert grpc_settings(build_parser().parse_args(["serve"])).port == 4000
    for bad in ("70000", "-1", "abc"):
        with pytest.raises(SystemExit) as caught:
            build_parser().parse_args(["serve", "--grpc-port", bad])
        assert caught.value.code == 2


def test_a_grpc_port_in_use_stops_serve_before_anything_starts(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "entroq_redis.cli", "serve", "--port", "0", "--grpc-port", str(port)]
        done = subprocess.run(
            [*command, "--data", str(tmp_path / "data")], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr
    assert not (tmp_path / "data").exists()  # no store was started


def test_errors_are_counted_by_code(service: ServiceProcess, stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    rpc_error(stub.Tasks, pb2.TasksRequest(limit=-1), metadata=md(namespace))
    text = httpx.get(service.url + "/metrics").text
    assert 'entroq_grpc_requests_total{code="INVALID_ARGUMENT",method="Tasks"}' in text


def test_a_cancelled_claim_stops_waiting(service: ServiceProcess, stub: Any, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    future = stub.Claim.future(
        pb2.ClaimRequest(claimant_id="c", queues=["/never"], duration_ms=1000), metadata=md(namespace)
    )
    deadline = time.monotonic() + 10
    while not _waiting_claims(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting_claims(service) == 1
    future.cancel()  # no deadline: only the stream's reset tells the service
    while _waiting_claims(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting_claims(service) == 0


def _local_ports(port: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port}


def test_idle_connections_live_on_pings_not_on_the_header_timer(store_url: str, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    quick = start_service(
        store_url, "--test-any-namespace", "--header-timeout", "1", "--grpc-idle-timeout", "3"
    )
    try:
        assert quick.grpc_url is not None
        port = int(quick.grpc_url.rsplit(":", 1)[1])
        target = quick.grpc_url.removeprefix("grpc://")
        pinging = [
            ("grpc.keepalive_time_ms", 500),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),  # grpcio stops after 2 otherwise
        ]
        with grpc.insecure_channel(target, options=pinging) as channel:
            stub = grpc_support.v1().stub(channel)
            stub.Time(pb2.TimeRequest(), metadata=md(namespace), timeout=10)
            first = _local_ports(port)
            time.sleep(5)  # idle, but pinged: past the header timeout and the idle timeout
            stub.Time(pb2.TimeRequest(), metadata=md(namespace), timeout=10)
            assert _local_ports(port) == first
        with grpc.insecure_channel(target) as channel:
            stub = grpc_support.v1().stub(channel)
            stub.Time(pb2.TimeRequest(), metadata=md(namespace), timeout=10)
            time.sleep(2)  # silent past the header timeout: still open
            assert len(_local_ports(port)) == 1
            deadline = time.monotonic() + 10
            while _local_ports(port) and time.monotonic() < deadline:  # the idle timeout closes it
                time.sleep(0.2)
            assert not _local_ports(port)
            assert stub.Time(pb2.TimeRequest(), metadata=md(namespace), timeout=10).time_ms > 0  # reconnects
    finally:
        quick.stop()


def test_shutdown_ends_waiting_claims_with_unavailable(store_url: str, namespace: str) -> None:
    pb2 = grpc_support.v1().pb2
    stopping = start_service(store_url, "--test-any-namespace")
    assert stopping.grpc_url is not None
    with grpc_support.channel(stopping.grpc_url) as channel:
        stub = grpc_support.v1().stub(channel)
        future = stub.Claim.future(
            pb2.ClaimRequest(claimant_id="c", queues=["/never"], duration_ms=1000),
            metadata=md(namespace),
            timeout=60,
        )
        deadline = time.monotonic() + 10
        while not _waiting_claims(stopping) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stopping.stop() == 0
        error = future.exception(timeout=10)
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "shutting down" in error.details()  # type: ignore[attr-defined]


def test_a_client_that_is_not_grpc_gets_a_clear_status(service: ServiceProcess) -> None:
    # HTTP/1.1 without te: trailers: the status travels in the headers.
    assert service.grpc_url is not None
    answer = httpx.post(
        service.grpc_url.replace("grpc://", "http://") + "/api.EntroQ/Time",
        content=b"\x00\x00\x00\x00\x00",
        headers={"content-type": "application/grpc"},
    )
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["grpc-status"] == "3"
    assert "gRPC needs HTTP/2" in answer.headers["grpc-message"]
