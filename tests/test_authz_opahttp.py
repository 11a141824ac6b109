"""``--authz opahttp`` against an OPA-compatible endpoint started here (the OPA binary is not
installable on this machine): it serves OPA's data API for the example policy, evaluated by
regopy, and records every request, so the exact input document the service sends is checked
(a contract test), and OPA being down, slow, failing or answering nonsense gives 503.
"""

from __future__ import annotations

import http.server
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authz_support import ALICE, BOB, DATA, POLICY, OpaStandInHandler, b64, client, serving
from conftest import ServiceProcess, start_service
from entroq_redis_server.authz.rego import load_rego_engine

import entroq_redis

OPA_PATH = "/v1/data/entroq/authz"
OPA_TIMEOUT_S = 0.5


class FakeOpa(http.server.ThreadingHTTPServer):
    """OPA's ``POST /v1/data/<path>``: ``{"input": ...}`` in, ``{"result": ...}`` out.

    ``mode`` scripts misbehaviour: ok, stall (longer than the service waits), error (HTTP 500),
    garbage (not JSON), undefined (no result, as OPA answers for an undefined document),
    nonbool (allow is a string).
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.engine = load_rego_engine([POLICY], DATA, ("entroq", "authz"))
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(OpaStandInHandler):
    server: FakeOpa

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        mode = self.server.mode
        if mode == "stall":
            time.sleep(OPA_TIMEOUT_S * 4)
        if mode == "error":
            return self.send_json(500, b'{"code": "internal_error"}')
        if mode == "garbage":
            return self.send_json(200, b"<html>not json</html>")
        if mode == "undefined" or self.path != OPA_PATH:
            return self.send_json(200, b"{}")
        result = self.server.engine.evaluate_sync(body["input"])
        if mode == "nonbool":
            result["allow"] = "true"
        self.send_json(200, json.dumps({"result": result}).encode())


@pytest.fixture(scope="module")
def opa() -> Iterator[FakeOpa]:
    with serving(FakeOpa()) as server:
        yield server


@pytest.fixture(scope="module")
def service(store_url: str, opa: FakeOpa) -> Iterator[ServiceProcess]:
    flags = ("--authz", "opahttp", "--opa-url", opa.url + "/", "--opa-path", OPA_PATH)
    process = start_service(store_url, "--test-any-namespace", *flags, "--opa-timeout", str(OPA_TIMEOUT_S))
    yield process
    assert process.stop() == 0


@pytest.fixture(autouse=True)
def fresh(opa: FakeOpa) -> None:
    opa.mode = "ok"
    opa.requests.clear()


async def test_the_exact_input_document(
    service: ServiceProcess, opa: FakeOpa, namespace: str, store_url: str
) -> None:
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        inserted, _ = await store.modify(
            [
                entroq_redis.TaskData(queue=q, value=b"v")
                for q in ("/alice/a", "/alice/b", "/alice/c", "/alice/d")
            ]
        )
    same, moved, deleted, depended = inserted
    request = {
        "claimantId": "alice#7",
        "inserts": [{"queue": "/alice/new", "value": b64("x")}],
        "changes": [
            {"oldId": {"id": same.id, "version": 0, "queue": "/alice/a"}, "newData": {"queue": "/alice/a"}},
            # oldId.queue as the destination: the service authorizes the real source.
            {
                "oldId": {"id": moved.id, "version": 0, "queue": "/alice/moved"},
                "newData": {"queue": "/alice/moved"},
            },
        ],
        "deletes": [{"id": deleted.id, "version": 0, "queue": "/alice/c"}],
        "depends": [{"id": depended.id, "version": 0}],
    }
    async with client(service.url, namespace, ALICE) as alice:
        modified = await alice.post("/api/v0/modify", json=request)
        assert modified.status_code == 200, modified.text
        claim = {"claimantId": "alice#1", "queues": ["/alice/new", "/alice/x"]}
        assert (await alice.post("/api/v0/claim", json=claim)).status_code == 200
    assert [r["path"] for r in opa.requests] == [OPA_PATH, OPA_PATH, OPA_PATH]
    # First the credentials alone (a 401 must not wait for the request's queues), once: the
    # policy accepted them, so the claim right after skips that step.
    alone = opa.requests.pop(0)
    assert alone["body"] == {
        "input": {"authz": {"type": "Bearer", "credentials": ALICE}, "queues": [], "namespace": namespace}
    }
    first = opa.requests[0]
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Authorization"] == f"Bearer {ALICE}"
    assert first["body"] == {
        "input": {
            "authz": {"type": "Bearer", "credentials": ALICE},
            "queues": [
                {"exact": "/alice/new", "actions": ["INSERT"]},
                {"exact": "/alice/a", "actions": ["CHANGE"]},
                {"exact": "/alice/b", "actions": ["DELETE"]},
                {"exact": "/alice/moved", "actions": ["INSERT"]},
                {"exact": "/alice/c", "actions": ["DELETE"]},
                {"exact": "/alice/d", "actions": ["READ"]},
            ],
            "namespace": namespace,
            "claimant_id": "alice#7",
        }
    }
    assert opa.requests[1]["body"] == {
        "input": {
            "authz": {"type": "Bearer", "credentials": ALICE},
            "queues": [
                {"exact": "/alice/new", "actions": ["CLAIM"]},
                {"exact": "/alice/x", "actions": ["CLAIM"]},
            ],
            "namespace": namespace,
            "claimant_id": "alice#1",
        }
    }
    # A modify that names no claimant sends none.
    opa.requests.clear()
    async with client(service.url, namespace, ALICE) as alice:
        assert (
            await alice.post("/api/v0/modify", json={"inserts": [{"queue": "/alice/n"}]})
        ).status_code == 200
    assert "claimant_id" not in opa.requests[0]["body"]["input"]


async def test_decisions_match_the_embedded_engine(service: ServiceProcess, namespace: str) -> None:
    async with client(service.url, namespace, BOB) as bob:
        denied = await bob.post("/api/v0/modify", json={"inserts": [{"queue": "/alice/q"}]})
        allowed = await bob.post("/api/v0/modify", json={"inserts": [{"queue": "/bob/q"}]})
        listed = await bob.get("/api/v0/queues")
    assert denied.status_code == 403
    assert denied.json()["details"][1] == {
        "@type": "type.googleapis.com/api.AuthzDep",
        "actions": ["INSERT"],
        "exact": "/alice/q",
    }
    assert allowed.status_code == 200
    assert [q["name"] for q in listed.json()["queues"]] == ["/bob/q"]
    async with client(service.url, namespace, "wrong") as wrong:
        assert (
            await wrong.post("/api/v0/modify", json={"inserts": [{"queue": "/bob/q"}]})
        ).status_code == 401


@pytest.mark.parametrize("mode", ["stall", "error", "garbage", "undefined", "nonbool"])
async def test_a_failing_policy_server_fails_closed(
    service: ServiceProcess, opa: FakeOpa, namespace: str, store_url: str, mode: str
) -> None:
    opa.mode = mode
    started = time.monotonic()
    async with client(service.url, namespace, ALICE) as alice:
        insert = await alice.post("/api/v0/modify", json={"inserts": [{"queue": "/alice/q"}]})
        listing = await alice.get("/api/v0/queues")
        metrics = (await alice.get("/metrics")).text
    assert (insert.status_code, listing.status_code) == (503, 503), insert.text
    assert insert.json()["message"].startswith("authorization is unavailable")
    assert time.monotonic() - started < 10
    assert 'entroq_authz_decisions_total{outcome="unavailable"}' in metrics
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        assert await store.queues() == {}  # nothing was written


def test_an_unreachable_policy_server_fails_closed(store_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # An OPA URL with credentials: neither the caller nor the log may ever see the password.
    opa_url = f"http://entroq:opa-password-0b5e@127.0.0.1:{port}"
    process = start_service(store_url, "--authz", "opahttp", "--opa-url", opa_url)
    try:
        headers = {"Authorization": f"Bearer {ALICE}"}
        response = httpx.post(
            f"{process.url}/api/v0/modify", json={"inserts": [{"queue": "/alice/q"}]}, headers=headers
        )
        assert response.status_code == 503
        assert "cannot reach OPA at http://entroq:***@127.0.0.1" in response.json()["message"]
    finally:
        assert process.stop() == 0
    assert "opa-password-0b5e" not in response.text
    assert "opa-password-0b5e" not in process.log()
