"""Battery row g: the authorization matrix, the parts tests/test_authz_*.py do not cover.

tests/test_authz_service.py, test_authz_rego.py, test_authz_opahttp.py and test_authz_units.py
already cover: 401 for missing, malformed, wrong, expired and forged credentials with one
answer for the last three; allowed and denied inserts, claims, finishes, reads and listings;
moves checked on the real source queue; hostile queue names in the policy input; OPA down,
erroring, stalling or answering garbage failing closed. Missing, and added here:

- the full matrix: every API route (REST and Connect) x every kind of credential x queues of
  the caller, of another user, and the two prefix traps ("/alice/../bob/x" is alice's queue by
  name, not a path to bob's; "/alice2/x" is not alice's); counted: wrong accepts, wrong denies;
  and the store unchanged (DUMP of the namespace) after every refused request;
- the decision time of the in-process engine (target p99 < 1 ms) is measured by
  ``benchmarks/run.py --only authz``, not here: it is a benchmark figure, not a pass/fail;
- claimant binding (EntroQ's ``claimant_mismatch``): the input carries the claimant ID of a
  claim or modify, and the example policy refuses a claimant ID "<user>#..." of another user,
  on every route that acts as a claimant, with nothing written.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from authz_support import ALICE, REGO_FLAGS, client, jwt
from battery.hostile import namespace_state
from conftest import ServiceProcess, start_service

import entroq_redis

OWN = ["/alice/x", "/alice/../bob/x"]
OTHERS = ["/bob/x", "/alice2/x"]
CREDENTIALS: dict[str, str | None] = {
    "none": None,
    "malformed": "a\tb",
    "wrong": "no-such-token",
    "expired": "<expired>",
    "forged": "<forged>",
    "alice": ALICE,
}


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


def token(kind: str) -> str | None:
    if kind == "expired":
        return jwt("alice", expires_in=-60)
    if kind == "forged":
        return jwt("alice", secret="forged")
    return CREDENTIALS[kind]


def requests_for(queue: str, task_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(label, method, path, httpx keyword arguments) of every API route acting on ``queue``."""
    quoted = urllib.parse.quote(queue, safe="")
    claim = {"claimantId": "alice#1", "queues": [queue], "durationMs": "60000"}
    wait = {"X-Server-Timeout": "0.05"}
    delete = {"claimantId": "alice#1", "deletes": [{"id": task_id, "version": 0, "queue": queue}]}
    depend = {"claimantId": "alice#1", "depends": [{"id": task_id, "version": 0, "queue": queue}]}
    old_id = {"id": task_id, "version": 0, "queue": queue}
    move = {"claimantId": "alice#1", "changes": [{"oldId": old_id, "newData": {"queue": "/alice/moved"}}]}
    tasks = {"queue": queue}
    insert = {"claimantId": "alice#1", "inserts": [{"queue": queue}]}
    empty_claim = {**claim, "queues": [queue + "/empty"]}
    connect_wait = {"Connect-Timeout-Ms": "50"}
    return [
        ("insert", "POST", "/api/v0/modify", {"json": insert}),
        ("delete", "POST", "/api/v0/modify", {"json": delete}),
        ("depend", "POST", "/api/v0/modify", {"json": depend}),
        ("move-out", "POST", "/api/v0/modify", {"json": move}),
        ("claim", "POST", "/api/v0/claim", {"json": claim}),
        ("claim-wait", "POST", "/api/v0/claim/wait", {"json": empty_claim, "headers": wait}),
        ("tasks-path", "GET", f"/api/v0/queues/{quoted}/tasks", {}),
        ("tasks-query", "GET", "/api/v0/tasks", {"params": tasks}),
        ("tasks-by-id", "GET", "/api/v0/tasks", {"params": {"taskId": task_id, "queue": queue}}),
        ("stream-path", "GET", f"/api/v0/queues/{quoted}/tasks/stream", {}),
        ("stream-query", "GET", "/api/v0/tasks/stream", {"params": tasks}),
        ("connect-modify", "POST", "/api.EntroQ/Modify", {"json": {"inserts": [{"queue": queue}]}}),
        ("connect-tryclaim", "POST", "/api.EntroQ/TryClaim", {"json": claim}),
        ("connect-claim", "POST", "/api.EntroQ/Claim", {"json": empty_claim, "headers": connect_wait}),
        ("connect-tasks", "POST", "/api.EntroQ/Tasks", {"json": tasks}),
    ]  # fmt: skip


def refused(response: httpx.Response) -> bool:
    return response.status_code in (401, 403)


async def test_every_route_every_credential_every_queue(
    service: ServiceProcess, store_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        seeded = {}
        for queue in OWN + OTHERS:
            inserted, _ = await store.modify(
                inserts=[entroq_redis.TaskData(queue, id="t" + str(len(seeded)))]
            )
            seeded[queue] = inserted[0].id
    wrong_accepts: list[str] = []
    wrong_denies: list[str] = []
    changed_by_refusal: list[str] = []
    statuses: dict[int, int] = {}
    sent = 0
    for kind in CREDENTIALS:
        async with client(service.url, namespace, token(kind)) as http:
            for queue in OWN + OTHERS:
                for label, method, path, kwargs in requests_for(queue, seeded[queue]):
                    before = namespace_state(sync_redis, namespace)
                    response = await http.request(method, path, **kwargs)
                    sent += 1
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    assert response.status_code < 500 or response.status_code == 504, response.text
                    what = f"{kind} {label} {queue!r}: {response.status_code} {response.text[:120]}"
                    allowed = kind == "alice" and queue in OWN
                    if allowed and refused(response):
                        wrong_denies.append(what)
                    if not allowed and not refused(response):
                        wrong_accepts.append(what)
                    if refused(response) and namespace_state(sync_redis, namespace) != before:
                        changed_by_refusal.append(what)
                    if kind != "alice":
                        assert response.status_code == 401, what
    print(
        f"authz matrix: {sent} requests, statuses {dict(sorted(statuses.items()))}; wrong accepts "
        f"{len(wrong_accepts)}, wrong denies {len(wrong_denies)}, refusals that changed the store "
        f"{len(changed_by_refusal)}"
    )
    assert wrong_accepts == []
    assert wrong_denies == []
    assert changed_by_refusal == []
    # The prefix trap stored a queue of its own: bob's queue was never touched by alice.
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        assert [t.id for t in await store.tasks("/bob/x")] == [seeded["/bob/x"]]


async def test_listings_never_show_other_users_queues(service: ServiceProcess, namespace: str) -> None:
    async with client(service.url, namespace, ALICE) as alice:
        for queue in OWN + OTHERS:
            await alice.post("/api/v0/modify", json={"inserts": [{"queue": queue}]})
        for path in ("/api/v0/queues", "/api/v0/queues/stats"):
            for params in ({}, {"matchPrefix": "/"}, {"matchExact": OTHERS}, {"matchPrefix": "/alice"}):
                listed = (await alice.get(path, params=params)).json().get("queues", [])
                names = {q["name"] for q in listed}
                assert names.isdisjoint(OTHERS), (path, params, names)
        connect = await alice.post("/api.EntroQ/QueueStats", json={"matchPrefix": ["/"]})
        assert {q["name"] for q in connect.json().get("queues", [])}.isdisjoint(OTHERS)


async def test_a_claimant_id_of_another_user_is_refused(
    service: ServiceProcess, namespace: str, sync_redis: redis.Redis
) -> None:
    async with client(service.url, namespace, ALICE) as alice:
        inserted = await alice.post("/api/v0/modify", json={"inserts": [{"queue": "/alice/x"}]})
        task = inserted.json()["inserted"][0]
        held = await alice.post(
            "/api/v0/claim", json={"claimantId": "alice#1", "queues": ["/alice/x"], "durationMs": "60000"}
        )
        assert held.status_code == 200, held.text
        held_id = {"id": task["id"], "version": held.json()["task"]["version"], "queue": "/alice/x"}
        before = namespace_state(sync_redis, namespace)
        # Acting as one of bob's workers, on alice's own queue: claim, renew (a change), delete.
        as_bob = [
            ("/api/v0/claim", {"claimantId": "bob#1", "queues": ["/alice/x"], "durationMs": "1000"}),
            ("/api/v0/claim/wait", {"claimantId": "bob#1", "queues": ["/alice/x"]}),
            ("/api.EntroQ/TryClaim", {"claimantId": "bob#1", "queues": ["/alice/x"]}),
            (
                "/api/v0/modify",
                {"claimantId": "bob#1", "changes": [{"oldId": held_id, "newData": {"queue": "/alice/x"}}]},
            ),
            ("/api/v0/modify", {"claimantId": "bob#1", "deletes": [held_id]}),
            ("/api.EntroQ/Modify", {"claimantId": "bob#1", "inserts": [{"queue": "/alice/y"}]}),
        ]
        for path, body in as_bob:
            response = await alice.post(path, json=body)
            assert response.status_code == 403, (path, response.text)
            error = response.json()
            assert 'claimant ID "bob#1" may not be used by alice' in error["message"], error
            if not path.startswith("/api.EntroQ/"):  # Connect details are binary (type, value)
                assert error["details"][0]["actions"] == ["DETAIL"], error
        assert namespace_state(sync_redis, namespace) == before
        # Her own claimant IDs, and IDs that name no user (EntroQ's clients pick UUIDs), work.
        for claimant in ("alice#2", "0c6f6a52-35b4-4cf4-a4bb-7b86d5a1e0f1"):
            response = await alice.post(
                "/api/v0/modify", json={"claimantId": claimant, "inserts": [{"queue": "/alice/z"}]}
            )
            assert response.status_code == 200, (claimant, response.text)
