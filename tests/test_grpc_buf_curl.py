"""The gRPC listener driven by `buf curl --protocol grpc --http2-prior-knowledge` (connect-go in Buf's Go
binary, installed from npm by tests/buf_support.py), with the schema from tests/protos/ (no reflection).

A client nobody here wrote checks from the outside what grpcio tests cannot tell apart from grpcio's own
habits: h2c framing, status codes in trailers, `grpc-status-details-bin` details, and `grpc-timeout`.
tests/programs/buf_curl_transcript.py runs the same calls and prints them as a transcript.
"""

from __future__ import annotations

import base64
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc_support
import pytest
from buf_support import HEALTH_PROTO, PROTOS, BufCurl, install_buf
from conftest import ServiceProcess, start_service
from service_metrics import grpc_outcomes, waiting_claims

NOT_FOUND = 5
DEADLINE_EXCEEDED = 4
V1_PROTO = PROTOS / "entroq_v1" / "entroq.proto"
TRANSCRIPT = pathlib.Path(__file__).resolve().parent / "programs" / "buf_curl_transcript.py"


@pytest.fixture(scope="module")
def buf_binary() -> pathlib.Path:
    return install_buf()


@pytest.fixture(scope="module")
def grpc_service(store_url: str) -> Iterator[ServiceProcess]:
    service = start_service(store_url, "--test-any-namespace", "--grpc-port", "free")
    yield service
    service.stop()


def grpc_url(service: ServiceProcess) -> str:
    return str(service.grpc_url).removeprefix("grpc://")


@pytest.fixture
def curl(buf_binary: pathlib.Path, grpc_service: ServiceProcess, namespace: str) -> BufCurl:
    return BufCurl(
        buf_binary,
        grpc_url(grpc_service),
        schemas=(V1_PROTO, HEALTH_PROTO),
        headers=(f"entroq-namespace: {namespace}",),
    )


def decoded_details(error: dict[str, Any]) -> list[Any]:
    """buf prints each detail as {"type", "value": base64 of its wire bytes}: decode the ModifyDeps."""
    modify_dep = grpc_support.v1().pb2.ModifyDep
    details = []
    for detail in error.get("details", []):
        assert detail["type"] == "api.ModifyDep", detail
        details.append(modify_dep.FromString(base64.b64decode(detail["value"] + "==")))
    return details


def test_health_check_answers_serving(curl: BufCurl) -> None:
    call = curl("grpc.health.v1.Health/Check")
    assert call.returncode == 0, call.stderr
    assert call.reply() == {"status": "SERVING"}


def test_time_is_the_store_clock(curl: BufCurl) -> None:
    before = time.time() * 1000
    call = curl("api.EntroQ/Time")
    after = time.time() * 1000
    assert call.returncode == 0, call.stderr
    # int64 as a JSON string (proto3 JSON); the store runs on this machine, so its clock agrees.
    assert before - 2000 <= int(call.reply()["timeMs"]) <= after + 2000


def test_insert_then_claim(curl: BufCurl) -> None:
    insert = {"claimantId": "buf", "inserts": [{"queue": "buf/jobs", "value": {"job": 1, "tags": ["a"]}}]}
    call = curl("api.EntroQ/Modify", json.dumps(insert))
    assert call.returncode == 0, call.stderr
    [inserted] = call.reply()["inserted"]
    assert inserted["queue"] == "buf/jobs"
    assert inserted["value"] == {"job": 1, "tags": ["a"]}
    assert inserted.get("version", 0) == 0

    claim = {"claimantId": "buf", "queues": ["buf/jobs"], "durationMs": "30000"}
    call = curl("api.EntroQ/Claim", json.dumps(claim))
    assert call.returncode == 0, call.stderr
    task = call.reply()["task"]
    assert task["id"] == inserted["id"]
    assert task["claimantId"] == "buf"
    assert task["version"] == 1
    assert task["claims"] == 1
    assert task["value"] == {"job": 1, "tags": ["a"]}


def test_modify_dependency_error_has_its_details(curl: BufCurl) -> None:
    call = curl("api.EntroQ/Modify", json.dumps({"inserts": [{"queue": "buf/dep", "value": "kept"}]}))
    assert call.returncode == 0, call.stderr
    [present] = call.reply()["inserted"]

    # A delete of a task that does not exist, a dependency on the wrong version of one that does,
    # and an insert that must not happen because the others fail.
    failing = {
        "claimantId": "buf",
        "inserts": [{"queue": "buf/dep", "value": "never"}],
        "deletes": [{"id": "no-such-task", "version": 0, "queue": "buf/dep"}],
        "depends": [{"id": present["id"], "version": 7, "queue": "buf/dep"}],
    }
    call = curl("api.EntroQ/Modify", json.dumps(failing), verbose=True)
    assert call.grpc_code == NOT_FOUND, (call.returncode, call.stderr)
    # Headers, an empty body, then the status in trailers (never a trailers-only response).
    headers, trailers = call.exchange()
    assert headers[0] == "HTTP/2.0 200 OK", headers
    assert "Content-Type: application/grpc" in headers
    assert not [h for h in headers if h.lower().startswith("grpc-status")], headers
    assert "Grpc-Status: 5" in trailers, trailers
    assert [t for t in trailers if t.startswith("Grpc-Status-Details-Bin: ")], trailers
    error = call.error()
    assert error["code"] == "not_found"
    assert error["message"].startswith("modification dependency error"), error
    details = decoded_details(error)
    pb2 = grpc_support.v1().pb2
    by_type = {pb2.ActionType.values_by_number[d.type].name: d for d in details}
    assert by_type["DELETE"].id.id == "no-such-task"
    assert by_type["DEPEND"].id.id == present["id"]
    assert by_type["DEPEND"].id.version == 7
    assert "DETAIL" in by_type  # EntroQ's server adds one DETAIL entry with the message
    assert len(details) == 3

    # Nothing was written: the queue still holds only the task inserted first.
    call = curl("api.EntroQ/Tasks", json.dumps({"queue": "buf/dep"}))
    assert call.returncode == 0, call.stderr
    assert [t["id"] for t in call.reply()["tasks"]] == [present["id"]]


def test_docs_inserted_claimed_and_refused(curl: BufCurl) -> None:
    # A doc inserted with a task in one Modify, listed, claimed, then a stale change refused.
    both = {
        "claimantId": "buf",
        "inserts": [{"queue": "buf/docs", "value": "task"}],
        "docInserts": [{"namespace": "buf", "id": "d1", "key": "k", "content": {"n": 1}}],
    }
    call = curl("api.EntroQ/Modify", json.dumps(both))
    assert call.returncode == 0, call.stderr
    [doc] = call.reply()["insertedDocs"]
    assert (doc["id"], doc["content"]) == ("d1", {"n": 1})
    call = curl("api.EntroQ/Docs", json.dumps({"query": {"namespace": "buf"}}))
    assert [d["id"] for d in call.reply()["docs"]] == ["d1"]
    claim = {"claimQuery": {"namespace": "buf", "claimant": "buf", "key": "k", "durationMs": "30000"}}
    call = curl("api.EntroQ/ClaimDocs", json.dumps(claim))
    assert call.returncode == 0, call.stderr
    assert call.reply()["docs"][0]["version"] == 1
    stale = {
        "docChanges": [{"oldId": {"namespace": "buf", "id": "d1"}, "newData": {"key": "k", "content": 2}}]
    }
    call = curl("api.EntroQ/Modify", json.dumps(stale))
    assert call.grpc_code == NOT_FOUND, (call.returncode, call.stderr)
    error = call.error()
    assert error["message"].startswith("modification dependency error"), error
    pb2 = grpc_support.v1().pb2
    kinds = {(pb2.ActionType.values_by_number[d.type].name, d.doc_id.id) for d in decoded_details(error)}
    assert ("CHANGE", "d1") in kinds


def test_claim_ends_with_deadline_exceeded_at_the_callers_timeout(
    curl: BufCurl, grpc_service: ServiceProcess
) -> None:
    claim = {"claimantId": "buf", "queues": ["buf/empty"], "durationMs": "30000"}
    ended_before = grpc_outcomes(grpc_service, "Claim")
    began = time.monotonic()
    call = curl("api.EntroQ/Claim", json.dumps(claim), timeout=1.5, verbose=True)
    took = time.monotonic() - began
    assert call.grpc_code == DEADLINE_EXCEEDED, (call.returncode, call.stderr)
    assert call.error()["code"] == "deadline_exceeded"
    # The deadline went to the service as grpc-timeout (connect-go sends the context's deadline).
    assert "Grpc-Timeout:" in call.stderr
    assert 1.4 <= took < 10, took
    # The service let go of the claim: no claim is left waiting, and it answers the next call.
    deadline = time.monotonic() + 5
    while waiting_claims(grpc_service) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting_claims(grpc_service) == 0
    # buf's own timer and the service's deadline fire at the same instant; connect-go's fires a
    # network hop sooner and resets the stream, so the service records the call as CANCELLED
    # (DEADLINE_EXCEEDED when it wins). Either way it ended the call, once.
    ended = grpc_outcomes(grpc_service, "Claim")
    changed = {code: ended[code] - ended_before.get(code, 0) for code in ended}
    assert {code: n for code, n in changed.items() if n} in ({"CANCELLED": 1}, {"DEADLINE_EXCEEDED": 1})
    assert curl("api.EntroQ/Time").returncode == 0


def test_transcript_program_shows_every_call(buf_binary: pathlib.Path, grpc_service: ServiceProcess) -> None:
    done = subprocess.run(
        [sys.executable, str(TRANSCRIPT), "--buf", str(buf_binary), grpc_url(grpc_service)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for method in ("grpc.health.v1.Health/Check", "api.EntroQ/Time", "api.EntroQ/Modify", "api.EntroQ/Claim"):
        assert f"/{method}" in out
    assert '"status": "SERVING"' in out
    assert '"code": "not_found"' in out
    assert '"type": "api.ModifyDep"' in out
    assert '"code": "deadline_exceeded"' in out
    assert "(exit 40)" in out and "(exit 32)" in out


def test_bytes_schema_service_takes_bytes_values(
    buf_binary: pathlib.Path, store_url: str, namespace: str
) -> None:
    """`--grpc-values bytes`: the seed's schema (bytes values, base64 in buf's JSON) for v0.9-era clients."""
    service = start_service(
        store_url, "--test-any-namespace", "--grpc-port", "free", "--grpc-values", "bytes"
    )
    try:
        curl = BufCurl(
            buf_binary,
            grpc_url(service),
            schemas=(PROTOS / "entroq_bytes" / "entroq.proto", HEALTH_PROTO),
            headers=(f"entroq-namespace: {namespace}",),
        )
        raw = bytes(range(256))  # not UTF-8, not JSON: stored and returned as they are
        value = base64.b64encode(raw).decode()
        insert = {"claimantId": "buf", "inserts": [{"queue": "buf/bytes", "value": value}]}
        call = curl("api.EntroQ/Modify", json.dumps(insert))
        assert call.returncode == 0, call.stderr
        claim = {"claimantId": "buf", "queues": ["buf/bytes"], "durationMs": "30000"}
        call = curl("api.EntroQ/Claim", json.dumps(claim))
        assert call.returncode == 0, call.stderr
        assert base64.b64decode(call.reply()["task"]["value"]) == raw
        assert curl("grpc.health.v1.Health/Check").reply() == {"status": "SERVING"}
    finally:
        service.stop()
