"""What an authorized call costs the policy, seen from the inputs a policy server receives.

``--authz opahttp`` against an OPA-compatible endpoint started here that answers, as a real
OPA server does, with the whole decision document of the example policy (``user`` and
``readable`` included), evaluated by regopy; it records every input. Checked: a caller with
bad credentials gets 401 from a decision about its credentials alone (the request's queues
never reach the policy), listings ask about the caller's read grants rather than every
listed name, the audit log's lines, and the input size limit (413).
"""

from __future__ import annotations

import http.server
import json
import pathlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import regopy
from authz_support import ALICE, BOB, DATA, POLICY, REGO_FLAGS, OpaStandInHandler, b64, serving
from conftest import ServiceProcess, start_service

import entroq_redis


class WholeDocumentOpa(http.server.ThreadingHTTPServer):
    """``POST /v1/data/entroq/authz``: the package's whole document, as OPA answers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.inputs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def decide(self, document: dict[str, Any]) -> Any:
        interpreter = regopy.Interpreter()
        interpreter.add_module("policy", pathlib.Path(POLICY).read_text())
        interpreter.add_data_json(pathlib.Path(DATA).read_text())
        interpreter.set_input_term(json.dumps(document))
        # The tests' queue names need no escaping, so the output's JSON text is safe to read.
        return json.loads(str(interpreter.query("data.entroq.authz")))["expressions"][0]


class _Handler(OpaStandInHandler):
    server: WholeDocumentOpa

    def do_POST(self) -> None:
        document = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["input"]
        with self.server.lock:
            self.server.inputs.append(document)
            result = self.server.decide(document)
        self.send_json(200, json.dumps({"result": result}).encode())


@pytest.fixture(scope="module")
def opa() -> Iterator[WholeDocumentOpa]:
    with serving(WholeDocumentOpa()) as server:
        yield server


@pytest.fixture(scope="module")
def audit_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def service(store_url: str, opa: WholeDocumentOpa, audit_path: pathlib.Path) -> Iterator[ServiceProcess]:
    process = start_service(
        store_url,
        "--test-any-namespace",
        "--authz",
        "opahttp",
        "--opa-url",
        opa.url,
        "--audit-log",
        str(audit_path),
    )
    yield process
    assert process.stop() == 0


def _client(service: ServiceProcess, namespace: str, token: str) -> httpx.AsyncClient:
    headers = {
        "EntroQ-Namespace": namespace,
        "User-Agent": "entroq-redis-tests",
        "Authorization": f"Bearer {token}",
    }
    return httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30)


async def test_bad_credentials_are_refused_before_the_queues_reach_the_policy(
    service: ServiceProcess, opa: WholeDocumentOpa, namespace: str
) -> None:
    opa.inputs.clear()
    claim = {"claimantId": "c", "queues": [f"/q{i}" for i in range(50)], "durationMs": 1000}
    async with _client(service, namespace, "nobody") as nobody:
        answer = await nobody.post("/api/v0/claim", json=claim)
    assert answer.status_code == 401
    assert opa.inputs == [
        {"authz": {"type": "Bearer", "credentials": "nobody"}, "queues": [], "namespace": namespace}
    ]


async def test_a_listing_asks_about_the_callers_grants_not_every_name(
    service: ServiceProcess, opa: WholeDocumentOpa, namespace: str, store_url: str
) -> None:
    names = [f"/bob/q{i:03d}" for i in range(300)] + ["/alice/a", "/alice/b/c", "/shared/inbox"]
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        tasks, _ = await store.modify([entroq_redis.TaskData(queue=q, value=b"v") for q in names])
    opa.inputs.clear()
    async with _client(service, namespace, ALICE) as alice:
        listed = await alice.get("/api/v0/queues")
        by_id = await alice.get("/api/v0/tasks", params={"taskId": [t.id for t in tasks[-5:]]})
    assert listed.status_code == 200 and by_id.status_code == 200
    assert sorted(q["name"] for q in listed.json()["queues"]) == ["/alice/a", "/alice/b/c", "/shared/inbox"]
    assert sorted(t["queue"] for t in by_id.json()["tasks"]) == ["/alice/a", "/alice/b/c", "/shared/inbox"]
    asked = [json.dumps(q, sort_keys=True) for document in opa.inputs for q in document["queues"]]
    # The credentials alone, then alice's three READ grants, per listing: none of bob's names.
    grants = [{"exact": "/shared/inbox"}, {"prefix": "/alice/"}, {"prefix": "/ns=user/alice/"}]
    assert sorted(asked) == sorted(
        2 * [json.dumps({**g, "actions": ["READ"]}, sort_keys=True) for g in grants]
    )


async def test_the_audit_log_has_one_line_per_authorized_call(
    service: ServiceProcess, namespace: str, audit_path: pathlib.Path
) -> None:
    insert = {"inserts": [{"queue": "/alice/jobs", "value": b64("x")}]}
    async with _client(service, namespace, ALICE) as alice, _client(service, namespace, BOB) as bob:
        allowed = await alice.post("/api/v0/modify", json=insert, headers={"X-Request-Id": f"{namespace}-1"})
        refused = await bob.post("/api/v0/modify", json=insert)
        listed = await bob.get("/api/v0/queues")
    async with _client(service, namespace, "nobody") as nobody:
        unknown = await nobody.post("/api/v0/modify", json=insert)
        unknown_again = await nobody.get("/api/v0/queues")
    async with _client(service, namespace, "a.b.c") as malformed:
        garbled = await malformed.get("/api/v0/queues")
    answers = [allowed, refused, listed, unknown, unknown_again, garbled]
    assert [a.status_code for a in answers] == [200, 403, 200, 401, 401, 401]
    assert allowed.headers["X-Request-Id"] == f"{namespace}-1"
    text = audit_path.read_text()  # noqa: ASYNC240 (a small file, read once)
    for token in (ALICE, BOB, "nobody", "a.b.c"):
        assert token not in text, "the audit log never holds a token"
    lines = {
        line["request_id"]: line
        for line in map(json.loads, text.splitlines())
        if line["namespace"] == namespace
    }
    assert list(lines) == [a.headers["X-Request-Id"] for a in answers]
    for line in lines.values():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line.pop("time"))
        line.pop("request_id")
        assert line.pop("namespace") == namespace
    first, second, third, fourth, fifth, sixth = lines.values()
    assert first == {
        "user": "alice",
        "method": "Modify",
        "outcome": "allow",
        "queues": [{"queue": "/alice/jobs", "actions": ["INSERT"]}],
    }
    assert second == {
        "user": "bob",
        "method": "Modify",
        "outcome": "deny",
        "queues": [{"queue": "/alice/jobs", "actions": ["INSERT"]}],
    }
    assert third == {
        "user": "bob",
        "method": "QueueStats",
        "outcome": "filtered",
        "queues": [],
        "shown": 0,
        "hidden": 1,
    }
    assert fourth["outcome"] == fifth["outcome"] == sixth["outcome"] == "unauthenticated"
    # The same credentials have the same fingerprint; other credentials another one.
    assert re.fullmatch(r"[0-9a-f]{16}", fourth["credentials"])
    assert fourth["credentials"] == fifth["credentials"] != sixth["credentials"]
    assert fourth["queues"] == fifth["queues"] == []


async def test_a_policy_input_over_the_limit_is_413(store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--test-any-namespace", *REGO_FLAGS, "--authz-max-input-bytes", "4096")
    try:
        async with _client(service, namespace, ALICE) as alice:
            small = await alice.post("/api/v0/claim", json={"claimantId": "c", "queues": ["/alice/a"]})
            names = [f"/alice/{i}/" + "x" * 500 for i in range(10)]
            big = await alice.post("/api/v0/claim", json={"claimantId": "c", "queues": names})
            big_claimant = await alice.post(
                "/api/v0/claim", json={"claimantId": "c" * 5000, "queues": ["/alice/a"]}
            )
    finally:
        assert service.stop() == 0
    assert small.status_code == 200
    for answer in (big, big_claimant):
        assert answer.status_code == 413, answer.text
        assert "over the limit of 4096 bytes (--authz-max-input-bytes)" in answer.json()["message"]


async def test_a_request_at_the_services_own_limits_fits_the_default_input_limit(
    service: ServiceProcess, namespace: str
) -> None:
    # 1,000 inserts (the most a modify may carry) into queues of 1,024 bytes.
    inserts = [{"queue": f"/alice/{i:04d}/" + "x" * 1012, "value": b64("v")} for i in range(1000)]
    assert {len(d["queue"].encode()) for d in inserts} == {1024}
    async with _client(service, namespace, ALICE) as alice:
        answer = await alice.post("/api/v0/modify", json={"inserts": inserts})
    assert answer.status_code == 200, answer.text[:300]
