"""Every EntroQ HTTP client generation against one service: request and response shapes.

Each test sends what one generation sends (docs/reference/entroq-client-generations.md: the seed
0.10 clients "S", PyPI entroq 0.12.x "A", 0.13/0.14 "B", 0.15 "C"; headers, body keys, JSON
types, as captured) and reads the answer as that generation's client code reads it. The real
PyPI clients run in tests/test_generations_clients.py; the seed clients are not installable,
so these shapes are their only test (with tests/test_http_clients.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio
from conftest import ServiceProcess, start_service

HTTPX_UA = "python-httpx/0.28.1"  # A, B and C (httpx defaults)
REQUESTS_UA = "python-requests/2.32.3"  # S, and the interim sync client (JSON values)
DEP_TYPES = {"INSERT", "CHANGE", "DELETE", "DEPEND", "CLAIM", "DETAIL"}


@contextlib.asynccontextmanager
async def client(url: str, namespace: str, generation: str) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP with the headers one generation sends."""
    headers = {"EntroQ-Namespace": namespace, "User-Agent": REQUESTS_UA if generation == "S" else HTTPX_UA}
    if generation == "C":
        headers["entroq-protocol"] = "2"
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def seed(http_service: ServiceProcess, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(http_service.url, namespace, "S") as http:
        yield http


@pytest.fixture
async def a(http_service: ServiceProcess, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(http_service.url, namespace, "A") as http:
        yield http


@pytest.fixture
async def c(http_service: ServiceProcess, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client(http_service.url, namespace, "C") as http:
        yield http


@pytest.fixture(scope="module")
def json_default_service(store_url: str) -> Iterator[ServiceProcess]:
    """A service whose ambiguous callers get JSON values."""
    service = start_service(store_url, "--test-any-namespace", "--value-encoding-default", "json")
    yield service
    service.stop()


# What each generation's client code reads.


def seed_task(obj: dict[str, Any]) -> dict[str, Any]:
    """entroq 0.10 json._json_to_task (b64decode of the value; null would crash it)."""
    return {
        "id": obj.get("id", ""),
        "version": int(obj.get("version", 0)),
        "value": base64.b64decode(obj.get("value", "")),
    }


def json_era_task(obj: dict[str, Any]) -> dict[str, Any]:
    """entroq 0.12 to 0.15 json._task_from_json: int() of every number (null raises), raw value."""
    return {
        "id": obj.get("id", ""),
        "version": int(obj.get("version", 0)),
        "queue": obj.get("queue", ""),
        "at": int(obj.get("atMs", 0)),
        "claimant": obj.get("claimantId", ""),
        "value": obj.get("value"),
        "created": int(obj.get("createdMs", 0)),
        "modified": int(obj.get("modifiedMs", 0)),
        "claims": int(obj.get("claims", 0)),
        "attempt": int(obj.get("attempt", 0)),
        "err": obj.get("err", ""),
    }


def json_era_dependency(response: httpx.Response) -> dict[str, list[tuple[str, int, str]]] | None:
    """entroq 0.12 to 0.15 _raise_for_error: the DependencyError lists, or None (not one)."""
    if response.status_code not in (404, 409):
        return None
    details = [d for d in response.json().get("details", []) if isinstance(d, dict)]
    if not any(d.get("type") in DEP_TYPES for d in details):
        return None
    lists: dict[str, list[tuple[str, int, str]]] = {}
    for detail in details:
        if detail.get("type") == "DETAIL" or not detail.get("id"):
            continue
        ident = detail["id"]
        # ident["id"] unguarded, as in 0.12-0.14: a KeyError would fall through to HTTPStatusError.
        lists.setdefault(detail["type"], []).append(
            (ident["id"], int(ident.get("version", 0)), ident.get("queue", ""))
        )
    return lists


def no_nulls(value: Any) -> bool:
    """JSON-era clients raise on null numbers, times and lists (a task's JSON value may hold null)."""
    if value is None:
        return False
    if isinstance(value, dict):
        return all(no_nulls(v) for k, v in value.items() if k != "value")
    if isinstance(value, list):
        return all(no_nulls(v) for v in value)
    return True


# Request shapes.


def json_era_modify(claimant: str, **lists: list[dict[str, Any]]) -> dict[str, Any]:
    """0.12+ modify bodies: all nine keys, always."""
    body: dict[str, Any] = {"claimantId": claimant}
    for name in [
        "inserts",
        "changes",
        "deletes",
        "depends",
        "docInserts",
        "docChanges",
        "docDeletes",
        "docDepends",
    ]:
        body[name] = lists.get(name, [])
    return body


def a_insert(queue: str, value: Any = None, at_ms: int | None = None) -> dict[str, Any]:
    """0.12-0.14 _task_insert_json: keys whose value is None/0/"" are dropped."""
    body = {"queue": queue, "atMs": at_ms, "value": value}
    return {k: v for k, v in body.items() if v is not None}


def a_change(task: dict[str, Any], old_queue: str, at_ms: int = 0, **new: Any) -> dict[str, Any]:
    """0.12-0.14 _task_change_json: every newData key present, atMs 0 for None, value maybe null."""
    data = {
        "queue": task["queue"],
        "atMs": at_ms,
        "value": task["value"],
        "attempt": task["attempt"],
        "err": task["err"],
    }
    return {
        "oldId": {"id": task["id"], "version": task["version"], "queue": old_queue},
        "newData": {**data, **new},
    }


def claim_body(claimant: str, queue: str, poll_ms: int = 0) -> dict[str, Any]:
    """Claim bodies: identical in every generation (ms values as strings)."""
    return {"claimantId": claimant, "queues": [queue], "durationMs": "30000", "pollMs": str(poll_ms)}


# Every response.


async def test_every_response_carries_the_protocols(a: httpx.AsyncClient, seed: httpx.AsyncClient) -> None:
    responses = [
        await a.get("/api/v0/time"),
        await seed.get("/api/v0/time"),  # no protocol header sent
        await a.get("/healthz"),
        await a.get("/metrics"),
        await a.get("/openapi.json"),
        await a.get("/no/such/route"),  # 404
        await a.get("/api/v0/modify"),  # 405
        await a.post("/api/v0/claim", content=b"{"),  # 400
        await a.post("/api/v0/modify", content=b"x" * (11 * 1024 * 1024)),  # 413
        await a.post("/api/v0/modify", json={"deletes": [{"id": "gone", "version": 1}]}),  # 404 dependency
        await a.get("/api/v0/docs"),  # 400: a doc namespace is required
        await a.post("/api.EntroQ/Time", json={}, headers={"Connect-Protocol-Version": "1"}),
        await a.get("/api/v0/tasks/stream", params={"queue": "q"}),
        await a.get("/api/v0/time", headers={"entroq-protocol": "3"}),  # 501
    ]
    assert [r.status_code for r in responses] == [
        200,
        200,
        200,
        200,
        200,
        404,
        405,
        400,
        413,
        404,
        400,
        200,
        200,
        501,
    ]
    for response in responses:
        assert response.headers["entroq-protocol"] == "1,2", response.request.url


async def test_protocol_negotiation(a: httpx.AsyncClient) -> None:
    # 0.15's probe: GET /api/v0/time with its header; it reads only the response header.
    probe = await a.get("/api/v0/time", headers={"entroq-protocol": "2"})
    assert probe.status_code == 200 and 2 in [int(p) for p in probe.headers["entroq-protocol"].split(",")]
    assert (await a.get("/api/v0/time", headers={"entroq-protocol": "1"})).status_code == 200
    unserved = await a.get("/api/v0/time", headers={"entroq-protocol": "3"})
    body = unserved.json()
    assert unserved.status_code == 501 and body["code"] == 12 and "upgrade the server" in body["message"]
    for bad in ("1,2", "two", "0"):
        response = await a.post("/api/v0/claim", json=claim_body("w", "q"), headers={"entroq-protocol": bad})
        assert response.status_code == 400 and response.json()["code"] == 3
    twice = await a.get("/api/v0/time", headers=[("entroq-protocol", "1"), ("entroq-protocol", "2")])
    assert twice.status_code == 400 and "exactly one" in twice.json()["message"]
    # Unserved beats a malformed body; Connect routes answer in Connect's error shape.
    assert (await a.post("/api/v0/modify", content=b"{", headers={"entroq-protocol": "9"})).status_code == 501
    connect = await a.post("/api.EntroQ/Time", json={}, headers={"entroq-protocol": "3"})
    assert connect.status_code == 501 and connect.json()["code"] == "unimplemented"


# S: the seed clients (0.10): base64 values, "id": null, string atMs, the /queues/{q}/tasks route.


async def test_seed_generation_on_a_json_default_service(
    json_default_service: ServiceProcess, namespace: str
) -> None:
    async with client(json_default_service.url, namespace, "S") as seed:
        claimant = str(uuid.uuid4())
        # A claim before anything else: nothing tells the seed from the interim JSON client yet.
        empty = await seed.post("/api/v0/claim", json=claim_body(claimant, "nothing"))
        assert empty.status_code == 200 and empty.text == "{}"  # "task": null would crash the seed
        insert = {
            "queue": "jobs",
            "atMs": "0",
            "value": base64.b64encode(b"\x00work\xff").decode(),
            "id": None,
            "attempt": 0,
            "err": "",
        }
        modify = {"claimantId": claimant, "inserts": [insert], "changes": [], "deletes": [], "depends": []}
        inserted = (await seed.post("/api/v0/modify", json=modify)).json()["inserted"][0]
        assert seed_task(inserted)["value"] == b"\x00work\xff"
        # Its claims: the claimant's modify showed the seed, so base64 despite the JSON default.
        claimed = (await seed.post("/api/v0/claim", json=claim_body(claimant, "jobs"))).json()["task"]
        assert seed_task(claimed)["value"] == b"\x00work\xff"
        listed = (await seed.get("/api/v0/queues/jobs/tasks")).json()["tasks"]
        assert seed_task(listed[0])["value"] == b"\x00work\xff"
        # Another requests-based caller nothing identifies gets the default (JSON): the bytes are
        # not JSON or text, so a base64 string.
        stranger = (await seed.get("/api/v0/tasks", params={"queue": "jobs"})).json()["tasks"][0]
        assert stranger["value"] == base64.b64encode(b"\x00work\xff").decode()
        # The seed's DependencyError test: 404 and "missing" or "mismatched" in the body.
        stale = await seed.post(
            "/api/v0/modify",
            json={**modify, "inserts": [], "deletes": [{"id": claimed["id"], "version": 0, "queue": "jobs"}]},
        )
        assert stale.status_code == 404 and "mismatched" in stale.text


# A: PyPI entroq 0.12.2 to 0.12.4.


async def test_group_a_session(a: httpx.AsyncClient) -> None:
    claimant = uuid.uuid4().hex[:16]
    values = [{"n": 1, "ü": [1.5, None, True]}, "text", 7, [], {}, False, "aGk="]
    response = await a.post(
        "/api/v0/modify",
        json=json_era_modify(claimant, inserts=[a_insert("/a", v) for v in values] + [a_insert("/a")]),
    )
    assert response.status_code == 200 and no_nulls(response.json())
    inserted = [json_era_task(t) for t in response.json()["inserted"]]
    assert [t["value"] for t in inserted] == [*values, None]  # equal JSON back; no value = absent
    assert all(t["version"] == 0 and t["created"] > 0 for t in inserted)

    listed = (await a.get("/api/v0/tasks", params={"queue": "/a"})).json()["tasks"]
    assert sorted(map(json.dumps, (t.get("value") for t in listed))) == sorted(
        map(json.dumps, [*values, None])
    )
    omitted = (await a.get("/api/v0/tasks", params={"queue": "/a", "limit": 2, "omitValues": "true"})).json()[
        "tasks"
    ]
    assert len(omitted) == 2 and all("value" not in t for t in omitted)

    # Claim by this claimant: nothing in the claim body tells, the httpx User-Agent (or the
    # remembered claimant) does.
    task = json_era_task((await a.post("/api/v0/claim", json=claim_body(claimant, "/a"))).json()["task"])
    assert task["value"] in [*values, None] and task["claims"] == 1 and task["claimant"] == claimant

    # 0.12.x re-sends the claim expiry (as_change copies at): the modifier keeps the task.
    kept = await a.post(
        "/api/v0/modify",
        json=json_era_modify(claimant, changes=[a_change(task, "/a", at_ms=task["at"], value={"step": 2})]),
    )
    kept_task = json_era_task(kept.json()["changed"][0])
    assert (
        kept_task["claimant"] == claimant
        and kept_task["at"] == task["at"]
        and kept_task["value"] == {"step": 2}
    )
    stats = (await a.get("/api/v0/queues", params={"matchPrefix": "/a"})).json()["queues"]
    assert stats == [{"name": "/a", "numTasks": 8, "numClaimed": 1, "numAvailable": 7, "maxClaims": 1}]

    # The stale version: a DependencyError as 0.12.x parses it (typed details, id objects).
    stale = await a.post(
        "/api/v0/modify", json=json_era_modify(claimant, changes=[a_change(task, "/a", value="late")])
    )
    assert json_era_dependency(stale) == {"CHANGE": [(task["id"], task["version"], "/a")]}
    assert stale.json()["message"].startswith("modification dependency error")

    # A move with oldId.queue = the destination (0.12.2, the seed), "" (a hand-made TaskChange),
    # or the source (0.12.3+): all accepted.
    current = kept_task
    for old_queue, destination in (("/a/b", "/a/b"), ("", "/a/c"), ("/a/c", "/a/d")):
        moved = await a.post(
            "/api/v0/modify",
            json=json_era_modify(claimant, changes=[a_change(current, old_queue, queue=destination)]),
        )
        assert moved.status_code == 200, moved.text
        current = json_era_task(moved.json()["changed"][0])
        assert current["queue"] == destination and current["claimant"] == ""  # atMs 0: released

    # "value": null in a change (a task whose value is None) clears the value.
    cleared = await a.post(
        "/api/v0/modify", json=json_era_modify(claimant, changes=[a_change(current, "/a/d", value=None)])
    )
    assert "value" not in cleared.json()["changed"][0]
    assert (await a.get("/api/v0/queues", params={"matchPrefix": "/a/d"})).json()["queues"][0][
        "numAvailable"
    ] == 1


# B: PyPI entroq 0.13.0 to 0.14.0.


async def test_group_b_blocking_claims_never_answer_empty(a: httpx.AsyncClient) -> None:
    claimant = uuid.uuid4().hex[:16]
    body = claim_body(claimant, "/b", poll_ms=30000)
    # Nothing arrives: the wait ends with an error status, never 200 {} (RuntimeError in 0.13+).
    nothing = await a.post("/api/v0/claim/wait", json=body, headers={"X-Server-Timeout": "0.2"})
    assert nothing.status_code == 504 and nothing.json()["message"]

    async def insert_later() -> None:
        await trio.sleep(0.3)
        await a.post("/api/v0/modify", json=json_era_modify(claimant, inserts=[a_insert("/b", {"job": 1})]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_later)
        waited = await a.post("/api/v0/claim/wait", json=body)
    task = json_era_task(waited.json()["task"])
    assert task["value"] == {"job": 1} and task["claims"] == 1

    # 0.13.1+ as_change(at=None): "atMs": 0 means now, and the claim is released.
    released = await a.post(
        "/api/v0/modify", json=json_era_modify(claimant, changes=[a_change(task, "/b", at_ms=0)])
    )
    released_task = json_era_task(released.json()["changed"][0])
    assert released_task["claimant"] == "" and released_task["value"] == {"job": 1}
    assert (await a.get("/api/v0/queues/stats", params={"matchExact": "/b"})).json()["queues"][0][
        "numAvailable"
    ] == 1


# C: PyPI entroq 0.15.0 (entroq-protocol: 2).


async def test_group_c_session(c: httpx.AsyncClient) -> None:
    claimant = uuid.uuid4().hex[:16]
    c_inserts = [
        {"queue": "/c", "value": {"k": "v"}},
        {"queue": "/c", "value": "past", "byMs": -5000},  # an instant already past: now
        {"queue": "/c/later", "value": 1, "byMs": 3_600_000},
    ]
    response = await c.post("/api/v0/modify", json=json_era_modify(claimant, inserts=c_inserts))
    now_ms = int((await c.get("/api/v0/time")).json()["timeMs"])
    later = json_era_task(response.json()["inserted"][2])
    assert 3_590_000 < later["at"] - now_ms <= 3_600_000
    stats = (await c.get("/api/v0/queues", params={"matchPrefix": "/c"})).json()["queues"]
    assert stats == [
        {"name": "/c", "numTasks": 2, "numAvailable": 2},
        {"name": "/c/later", "numTasks": 1, "numFuture": 1},
    ]

    task = json_era_task((await c.post("/api/v0/claim", json=claim_body(claimant, "/c"))).json()["task"])
    # The worker's lease is at - modified: both present, from one clock, modified = the claim.
    assert task["at"] - task["modified"] == 30000

    # Renewal: a lease-only change, newData holding only byMs.
    lease = {
        "oldId": {"id": task["id"], "version": task["version"], "queue": "/c"},
        "newData": {"byMs": 90000},
        "mode": "CHANGE_LEASE",
    }
    renewed = await c.post("/api/v0/modify", json=json_era_modify(claimant, changes=[lease]))
    [changed] = [json_era_task(t) for t in renewed.json()["changed"]]
    assert (changed["id"], changed["version"], changed["queue"]) == (task["id"], task["version"] + 1, "/c")
    assert (
        changed["value"] == task["value"]
        and changed["claims"] == 1
        and changed["at"] - changed["modified"] == 90000
    )

    # Release: a full change with byMs 0 and CHANGE_RESET_CLAIMS.
    release = {
        "oldId": {"id": task["id"], "version": changed["version"], "queue": "/c"},
        "newData": {"queue": "/c", "byMs": 0, "value": changed["value"], "attempt": 1, "err": "boom"},
        "mode": "CHANGE_RESET_CLAIMS",
    }
    released = json_era_task(
        (await c.post("/api/v0/modify", json=json_era_modify(claimant, changes=[release]))).json()["changed"][
            0
        ]
    )
    assert (
        released["claims"] == 0
        and released["claimant"] == ""
        and released["attempt"] == 1
        and released["err"] == "boom"
    )

    # 400 carries a message (InvalidArgumentError); the stale lease a typed 404.
    bad = await c.post("/api/v0/modify", json=json_era_modify(claimant, inserts=[{"queue": ""}]))
    assert bad.status_code == 400 and bad.json()["message"]
    stale = await c.post("/api/v0/modify", json=json_era_modify(claimant, changes=[lease]))
    assert json_era_dependency(stale) == {"CHANGE": [(task["id"], task["version"], "/c")]}


# Values across generations (the compatibility plan, docs/reference/entroq-client-generations.md 5.3 point 2).


async def test_values_across_generations(seed: httpx.AsyncClient, c: httpx.AsyncClient) -> None:
    def seed_insert(value: bytes) -> dict[str, Any]:
        return {
            "queue": "/x",
            "atMs": "0",
            "value": base64.b64encode(value).decode(),
            "id": None,
            "attempt": 0,
            "err": "",
        }

    stored = [b'{"from": "seed", "n": [1, 2]}', b"plain text", b"\xff\x00", b""]
    await seed.post(
        "/api/v0/modify",
        json={
            "claimantId": "s",
            "inserts": [seed_insert(v) for v in stored],
            "changes": [],
            "deletes": [],
            "depends": [],
        },
    )
    await c.post(
        "/api/v0/modify",
        json=json_era_modify("c", inserts=[{"queue": "/x", "value": {"from": "c", "ü": None}}]),
    )
    seen_by_c = [
        t.get("value") for t in (await c.get("/api/v0/tasks", params={"queue": "/x"})).json()["tasks"]
    ]
    expected = [{"from": "seed", "n": [1, 2]}, "plain text", "/wA=", None, {"from": "c", "ü": None}]
    assert sorted(map(json.dumps, seen_by_c)) == sorted(map(json.dumps, expected))
    seen_by_seed = [
        seed_task(t)["value"] for t in (await seed.get("/api/v0/queues//x/tasks")).json()["tasks"]
    ]
    assert sorted(seen_by_seed) == sorted([*stored, '{"from":"c","ü":null}'.encode()])


async def test_value_encoding_header_overrides_detection(a: httpx.AsyncClient) -> None:
    raw = base64.b64encode(b"\x01\x02").decode()
    explicit = {"EntroQ-Value-Encoding": "base64", "entroq-protocol": "2"}
    inserted = (
        await a.post("/api/v0/modify", json={"inserts": [{"queue": "/h", "value": raw}]}, headers=explicit)
    ).json()["inserted"][0]
    assert inserted["value"] == raw
    as_json = (await a.get("/api/v0/queues//h/tasks", headers={"EntroQ-Value-Encoding": "json"})).json()[
        "tasks"
    ][0]
    assert as_json["value"] == "AQI="  # the bytes are not text: a base64 string even in JSON
    bad = await a.get("/api/v0/tasks", params={"queue": "/h"}, headers={"EntroQ-Value-Encoding": "hex"})
    assert bad.status_code == 400


# The document store (EntroQ v1.1): every generation's request shapes are served
# (tests/test_docs_http.py tests the answers in depth).


async def test_document_store_serves_every_generations_shapes(
    a: httpx.AsyncClient, c: httpx.AsyncClient
) -> None:
    connect = {"Connect-Protocol-Version": "1"}
    # A modify mixing a task and a doc (all nine keys, as 0.12+ send them) applies both.
    mixed = json_era_modify(
        "w", inserts=[a_insert("/docs-mixed", 1)], docInserts=[{"namespace": "n", "key": "k", "content": 1}]
    )
    modified = await a.post("/api/v0/modify", json=mixed)
    assert modified.status_code == 200, modified.text
    assert [d["content"] for d in modified.json()["insertedDocs"]] == [1]
    assert (await a.get("/api/v0/queues", params={"matchExact": "/docs-mixed"})).json()["queues"][0][
        "numTasks"
    ] == 1
    responses = [
        await a.get("/api/v0/docs", params={"namespace": "n", "keyStart": "a"}),  # 0.12.2, 0.12.3, 0.13.0
        await a.get(
            "/api/v0/docs", params={"query.namespace": "n", "query.keyExact": "k"}
        ),  # 0.12.4, 0.13.1+
        await a.post(
            "/api/v0/docs/claim",
            json={"claimQuery": {"namespace": "n", "claimant": "w", "key": "k", "durationMs": 30000}},
        ),
        await a.get("/api/v0/namespaces/stats"),
        await a.post("/api.EntroQ/Docs", json={"query": {"namespace": "n"}}, headers=connect),
    ]
    for response in responses:
        assert response.status_code == 200, (response.request.url, response.text)
        assert response.headers["entroq-protocol"] == "1,2"
    listed, by_key, claimed, stats, connect_listed = (r.json() for r in responses)
    assert [d["key"] for d in listed["docs"]] == ["k"] == [d["key"] for d in by_key["docs"]]
    assert claimed["docs"][0]["claimant"] == "w" and claimed["docs"][0]["version"] == 1
    assert stats["namespaces"] == [{"name": "n", "numDocs": 1, "numClaimed": 1}]
    assert connect_listed["docs"][0]["content"] == 1
    # 0.15 (protocol 2): a set claim, answered with the set's lock (a Doc without an id).
    sets = await c.post(
        "/api/v0/docs/claim",
        json={
            "claimQuery": {
                "claimant": "v",
                "sets": [{"set": {"namespace": "n", "key": "j"}}],
                "durationMs": 5000,
            }
        },
    )
    assert sets.status_code == 200, sets.text
    assert [(s["key"], s["claimant"], "id" in s) for s in sets.json()["sets"]] == [("j", "v", False)]


# oldId.queue (docs/reference/entroq-client-generations.md 5.3 point 3): accepted as "", the
# source or the destination; authorization of a move still checks the queue the task is really
# in (the authorizer, docs/design.md 2.12, looks it up).


async def test_moves_named_by_destination_are_authorized_on_the_real_source(
    store_url: str, namespace: str, tmp_path: pathlib.Path
) -> None:
    tokens = {"alice-token": "alice", "bob-token": "bob"}
    data = {
        "entroq": {
            "tokens": {hashlib.sha256(t.encode()).hexdigest(): user for t, user in tokens.items()},
            "users": {
                "alice": {"queues": [{"prefix": "/alice/", "actions": ["ALL"]}]},
                "bob": {"queues": [{"prefix": "/bob/", "actions": ["ALL"]}]},
            },
        }
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    policy = pathlib.Path(__file__).parent.parent / "deploy" / "authz" / "policy.rego"
    flags = ["--namespace", namespace, "--authz", "rego", "--policy", str(policy)]
    # The tokens are the example's published ones, refused without --allow-example-credentials.
    data_flags = ["--policy-data", str(tmp_path / "data.json"), "--allow-example-credentials"]
    service = start_service(store_url, *flags, *data_flags)
    try:
        async with client(service.url, namespace, "A") as http:
            bob = {"Authorization": "Bearer bob-token"}
            alice = {"Authorization": "Bearer alice-token"}
            inserted = await http.post(
                "/api/v0/modify", json=json_era_modify("b", inserts=[a_insert("/bob/in", 1)]), headers=bob
            )
            task = json_era_task(inserted.json()["inserted"][0])
            # Alice names her own queue as the source (the seed's and 0.12.2's destination form),
            # or no queue: the task is in /bob/in, so the move is a DELETE there, denied.
            for old_queue in ("/alice/out", ""):
                steal = json_era_modify("a", changes=[a_change(task, old_queue, queue="/alice/out")])
                denied = await http.post("/api/v0/modify", json=steal, headers=alice)
                assert denied.status_code == 403, denied.text
                assert "/bob/in" not in denied.text  # where someone else's task lives stays hidden
            # Bob's own move, named the same way, goes through.
            mine = json_era_modify("b", changes=[a_change(task, "/bob/done", queue="/bob/done")])
            moved = await http.post("/api/v0/modify", json=mine, headers=bob)
            assert moved.status_code == 200 and moved.json()["changed"][0]["queue"] == "/bob/done"
    finally:
        service.stop()


# This project's own HTTP backend says base64 explicitly: bytes come back exactly, even bytes
# that are JSON text or look like base64, though httpx's User-Agent would suggest JSON.


async def test_the_librarys_http_backend_keeps_bytes_exact(
    http_service: ServiceProcess, store_url: str, namespace: str
) -> None:
    import entroq_redis

    values = [b'{"a": 1}', b'"quoted"', b"aGk=", b"\xff\x00", b"", "grüße".encode()]
    async with entroq_redis.connect(http_service.url, namespace=namespace) as over_http:
        inserted, _ = await over_http.modify([entroq_redis.TaskData("/lib", value=v) for v in values])
        assert [t.value for t in inserted] == values
        listed = await over_http.tasks("/lib")
    async with entroq_redis.connect(store_url, namespace=namespace) as direct:
        stored = await direct.tasks("/lib")
    assert sorted(t.value for t in listed) == sorted(t.value for t in stored) == sorted(values)
