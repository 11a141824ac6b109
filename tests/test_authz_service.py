"""The service with ``--authz rego`` and the example policy (deploy/authz), over real HTTP.

Allowed and denied calls, 401 for missing or bad credentials, listings that show only
readable queues, moves checked against the task's real queue (whatever ``oldId.queue`` says),
the guard that makes that check race-free, the library's HTTP backend and the CLI sending a
token, metrics of decisions, and startup refusing a bad policy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authz_support import ALICE, BOB, OPS, REGO_FLAGS, b64, client, jwt
from conftest import ServiceProcess, start_service
from entroq_redis_server.authz.modify import plan_modify, translate_failures
from openapi_support import OPERATIONS, example_request, validate

import entroq_redis


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


@pytest.fixture
async def store(store_url: str, namespace: str) -> Any:
    """The namespace straight on the store: to set up tasks and to see what really changed."""
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        yield eq


async def _insert(store: entroq_redis.EntroQ, queue: str) -> entroq_redis.Task:
    inserted, _ = await store.modify([entroq_redis.TaskData(queue=queue, value=b"v")])
    return inserted[0]


async def test_allowed_denied_and_unauthenticated(
    service: ServiceProcess, namespace: str, store: Any
) -> None:
    insert = {"inserts": [{"queue": "/alice/jobs", "value": b64("hi")}]}
    async with client(service.url, namespace, ALICE) as alice:
        ok = await alice.post("/api/v0/modify", json=insert)
        assert ok.status_code == 200, ok.text
        assert ok.json()["inserted"][0]["queue"] == "/alice/jobs"
    async with client(service.url, namespace, BOB) as bob:
        no = await bob.post("/api/v0/modify", json=insert)
    assert no.status_code == 403
    assert no.json() == {
        "code": 7,
        "message": 'queue action denied: INSERT on "/alice/jobs"',
        "details": [
            {"@type": "type.googleapis.com/api.AuthzDep", "actions": ["DETAIL"], "msg": "user: bob"},
            {"@type": "type.googleapis.com/api.AuthzDep", "actions": ["INSERT"], "exact": "/alice/jobs"},
        ],
    }
    async with client(service.url, namespace) as anonymous:
        missing = await anonymous.post("/api/v0/modify", json=insert)
        malformed = await anonymous.post(
            "/api/v0/modify", json=insert, headers={"Authorization": "Bearer a\tb"}
        )
        connect = await anonymous.post("/api.EntroQ/Modify", json=insert)
        time_ok = await anonymous.get("/api/v0/time")  # open, as in EntroQ
    assert (missing.status_code, missing.json()["code"]) == (401, 16)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="entroq"'
    assert malformed.status_code == 401 and "malformed" in malformed.json()["message"]
    assert connect.status_code == 401 and connect.json()["code"] == "unauthenticated"
    assert time_ok.status_code == 200
    # A wrong token, an expired JWT and a forged one get the same answer: nothing tells which.
    answers = []
    for token in ("no-such-token", jwt("alice", expires_in=-60), jwt("alice", secret="forged")):
        async with client(service.url, namespace, token) as caller:
            answers.append((await caller.post("/api/v0/modify", json=insert)).json())
    assert answers == [{"code": 16, "message": "invalid credentials", "details": []}] * 3
    async with client(service.url, namespace, jwt("alice")) as alice_jwt:
        assert (await alice_jwt.post("/api/v0/modify", json=insert)).status_code == 200
    # Only the two allowed inserts reached the store.
    assert len(await store.tasks("/alice/jobs")) == 2


async def test_claims(service: ServiceProcess, namespace: str, store: Any) -> None:
    task = await _insert(store, "/alice/work")
    async with client(service.url, namespace, BOB) as bob:
        denied = await bob.post(
            "/api/v0/claim", json={"queues": ["/bob/work", "/alice/work"], "durationMs": "5000"}
        )
    assert denied.status_code == 403
    assert [d.get("exact") for d in denied.json()["details"]] == [None, "/alice/work"]
    async with client(service.url, namespace, ALICE) as alice:
        claimed = await alice.post(
            "/api/v0/claim", json={"claimantId": "alice#1", "queues": ["/alice/work"], "durationMs": "5000"}
        )
        assert claimed.status_code == 200 and claimed.json()["task"]["id"] == task.id, claimed.text
        # finish (this service's extension) deletes: its queue is authorized as DELETE, and a
        # finish without a queue is authorized on the queue the task is really in.
        other = await _insert(store, "/bob/work")
        finish = await alice.post(
            "/api/v0/claim",
            json={
                "claimantId": "alice#1",
                "queues": ["/alice/work"],
                "finish": [{"id": other.id, "version": other.version}],
            },
        )
        # Her own claimed task, finished without its queue: found in /alice/work, allowed.
        done = {"id": task.id, "version": int(claimed.json()["task"]["version"])}
        own = await alice.post(
            "/api/v0/claim", json={"claimantId": "alice#1", "queues": ["/alice/work"], "finish": [done]}
        )
        assert own.status_code == 200 and own.json() == {}, own.text
    assert finish.status_code == 403
    assert "/bob/work" not in finish.text  # found by lookup, never named by alice: not revealed
    assert [t.id for t in await store.tasks("/bob/work")] == [other.id]
    assert await store.tasks("/alice/work") == []


async def test_listings_show_only_readable_queues(
    service: ServiceProcess, namespace: str, store: Any
) -> None:
    for queue in ("/alice/a", "/alice/b", "/bob/x", "/shared/inbox", "/ns=user/alice/z", "/secret"):
        await _insert(store, queue)

    async def names(token: str, path: str = "/api/v0/queues", **params: Any) -> list[str]:
        async with client(service.url, namespace, token) as caller:
            response = await caller.get(path, params=params)
        assert response.status_code == 200, response.text
        return [q["name"] for q in response.json().get("queues", [])]

    assert await names(ALICE) == ["/alice/a", "/alice/b", "/ns=user/alice/z", "/shared/inbox"]
    assert await names(BOB) == ["/bob/x", "/shared/inbox"]
    assert await names(OPS) == [
        "/alice/a",
        "/alice/b",
        "/bob/x",
        "/ns=user/alice/z",
        "/secret",
        "/shared/inbox",
    ]
    assert await names(ALICE, "/api/v0/queues/stats") == [
        "/alice/a",
        "/alice/b",
        "/ns=user/alice/z",
        "/shared/inbox",
    ]
    # The limit counts what the caller may see, not what was hidden.
    assert await names(BOB, limit=1) == ["/bob/x"]
    assert await names(ALICE, matchPrefix="/b") == []
    async with client(service.url, namespace) as anonymous:
        assert (await anonymous.get("/api/v0/queues")).status_code == 401
    async with client(service.url, namespace, "wrong") as wrong:
        assert (await wrong.get("/api/v0/queues/stats")).status_code == 401


async def test_reading_tasks(service: ServiceProcess, namespace: str, store: Any) -> None:
    mine, theirs = await _insert(store, "/alice/a"), await _insert(store, "/bob/x")
    async with client(service.url, namespace, ALICE) as alice:
        own = await alice.get("/api/v0/queues/%2Falice%2Fa/tasks")
        other = await alice.get("/api/v0/tasks", params={"queue": "/bob/x"})
        stream = await alice.get("/api/v0/tasks/stream", params={"queue": "/bob/x"})
        # By IDs without a queue: only the tasks in queues alice may read come back.
        by_id = await alice.post("/api.EntroQ/Tasks", json={"taskId": [mine.id, theirs.id]})
        no_queue = await alice.get("/api/v0/tasks")  # EntroQ: READ on no queue, denied
    assert own.status_code == 200 and [t["id"] for t in own.json()["tasks"]] == [mine.id]
    assert other.status_code == 403 and stream.status_code == 403
    assert by_id.status_code == 200 and [t["id"] for t in by_id.json()["tasks"]] == [mine.id]
    assert no_queue.status_code == 403


async def test_a_move_is_checked_against_the_real_source_queue(
    service: ServiceProcess, namespace: str, store: Any
) -> None:
    bobs = await _insert(store, "/bob/in")
    async with client(service.url, namespace, ALICE) as alice:
        # EntroQ clients send oldId.queue empty, as the source or as the destination; alice
        # names her own queues, but the task is in bob's.
        for claimed_source in ("", "/alice/out", "/alice/in"):
            change = {
                "oldId": {"id": bobs.id, "version": bobs.version, "queue": claimed_source},
                "newData": {"queue": "/alice/out", "value": b64("mine now")},
            }
            response = await alice.post("/api/v0/modify", json={"changes": [change]})
            assert response.status_code == 403, (claimed_source, response.text)
            assert response.json()["details"][1]["actions"] == ["DELETE"]
            assert "/bob/in" not in response.text  # the real queue is not revealed
        # Her own task, moved with oldId.queue = the destination (an EntroQ client quirk): allowed.
        own = await _insert(store, "/alice/in")
        move = {
            "oldId": {"id": own.id, "version": own.version, "queue": "/alice/out"},
            "newData": {"queue": "/alice/out"},
        }
        moved = await alice.post("/api/v0/modify", json={"changes": [move]})
        assert moved.status_code == 200, moved.text
        # A stale version is a dependency error naming the change only (no guard depend shows).
        stale = await alice.post("/api/v0/modify", json={"changes": [move]})
        assert stale.status_code == 404
        assert [d["type"] for d in stale.json()["details"]] == ["DETAIL", "CHANGE"]
    async with client(service.url, namespace, BOB) as bob:
        # bob may delete in /bob/ but not insert into /shared/inbox.
        out = {"oldId": {"id": bobs.id, "version": bobs.version}, "newData": {"queue": "/shared/inbox"}}
        response = await bob.post("/api/v0/modify", json={"changes": [out]})
        assert response.status_code == 403
        assert [(d["actions"], d.get("exact")) for d in response.json()["details"][1:]] == [
            (["INSERT"], "/shared/inbox")
        ]
    assert [(t.queue, t.version) for t in await store.tasks(ids=[bobs.id, own.id])] == [
        ("/bob/in", bobs.version),
        ("/alice/out", own.version + 1),
    ]


async def test_the_guard_refuses_a_move_whose_task_moved_after_the_lookup(store: Any) -> None:
    """The race the guard closes: the service looked the task up in /alice/in and authorized
    the move from there, then the task moved to /bob/in and came back to the same version
    number (deleted and re-created, IDs may be chosen). The modify must fail."""
    task = await _insert(store, "/alice/in")
    looked_up = {task.id: task}
    await store.modify(deletes=[task])
    await store.modify([entroq_redis.TaskData(queue="/bob/in", value=b"bob's", id=task.id)])
    from entroq_redis_server.core import schema as _schema
    from entroq_redis_server.core import wire as _wire
    from google.protobuf import json_format

    request = json_format.ParseDict(
        {"changes": [{"oldId": {"id": task.id, "version": 0}, "newData": {"queue": "/alice/out"}}]},
        _schema.ModifyRequest(),
    )
    plan = plan_modify(request, looked_up)
    assert [(e.exact, e.actions) for e in plan.entries] == [
        ("/alice/in", ("DELETE",)),
        ("/alice/out", ("INSERT",)),
    ]
    inserts, changes, deletes, depends = _wire.modify_args(plan.request)
    with pytest.raises(entroq_redis.DependencyError) as caught:
        await store.modify(inserts, changes, deletes, depends)
    failures = translate_failures(caught.value, plan).failures
    assert [(f.kind, f.reason, f.id) for f in failures] == [("CHANGE", "missing", task.id)]
    assert [t.queue for t in await store.tasks(ids=[task.id])] == ["/bob/in"]


async def test_library_http_backend_sends_the_token(service: ServiceProcess, namespace: str) -> None:
    async with entroq_redis.connect(service.url, namespace=namespace, token=ALICE) as alice:
        inserted, _ = await alice.modify([entroq_redis.TaskData(queue="/alice/lib", value=b"x")])
        assert [t.id for t in await alice.tasks("/alice/lib")] == [inserted[0].id]
        assert await alice.try_claim("/alice/lib") is not None
        with pytest.raises(entroq_redis.PermissionDeniedError) as denied:
            await alice.modify([entroq_redis.TaskData(queue="/bob/lib", value=b"x")])
        assert denied.value.status == 403 and "/bob/lib" in str(denied.value)
        assert list(await alice.queues()) == ["/alice/lib"]
    for token in (None, "wrong"):
        async with entroq_redis.connect(service.url, namespace=namespace, token=token) as nobody:
            with pytest.raises(entroq_redis.PermissionDeniedError) as refused:
                await nobody.tasks("/alice/lib")
            assert refused.value.status == 401


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    command = [sys.executable, "-m", "entroq_redis.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**base, **(env or {})})


def test_cli_sends_the_token(service: ServiceProcess, namespace: str) -> None:
    common = ("--url", service.url, "--namespace", namespace)
    assert _cli("ins", *common, "--token", ALICE, "/alice/cli", "hello").returncode == 0
    listed = _cli("qs", *common, "--json", env={"ENTROQ_TOKEN": ALICE})
    assert listed.returncode == 0 and "/alice/cli" in listed.stdout
    denied = _cli("ins", *common, "/bob/cli", "x", env={"ENTROQ_TOKEN": ALICE})
    assert denied.returncode != 0 and "queue action denied" in denied.stderr
    missing = _cli("ts", *common, "/alice/cli")
    assert missing.returncode != 0 and "credentials" in missing.stderr


async def test_metrics_count_decisions(service: ServiceProcess, namespace: str) -> None:
    async with client(service.url, namespace, BOB) as bob:
        await bob.post("/api/v0/modify", json={"inserts": [{"queue": "/alice/m"}]})
        await bob.post("/api/v0/modify", json={"inserts": [{"queue": "/bob/m"}]})
        metrics = (await bob.get("/metrics")).text
    for outcome in ("allow", "deny", "unauthenticated", "filtered"):
        assert f'entroq_authz_decisions_total{{outcome="{outcome}"}}' in metrics
    assert "entroq_authz_decision_seconds_count" in metrics


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--authz", "rego"), 2, "needs at least one --policy"),
        (("--policy", "x.rego"), 2, "--policy and --policy-data need --authz rego"),
        (("--authz", "rego", "--policy", "/nonexistent.rego"), 1, "cannot read policy"),
        (("--authz", "opahttp", "--opa-path", "/data/x"), 1, "--opa-path must look like"),
    ],
)
def test_startup_refuses_unusable_authz_flags(args: tuple[str, ...], status: int, message: str) -> None:
    result = _cli("serve", "--redis", "redis://127.0.0.1:1/0", "--port", "0", *args)
    assert result.returncode == status and message in result.stderr, result.stderr


def test_startup_refuses_a_bad_policy(tmp_path: Any) -> None:
    bad = tmp_path / "bad.rego"
    bad.write_text("package entroq.authz\n\nimport rego.v1\n\nallow if { input.x = }\n")
    result = _cli(
        "serve", "--redis", "redis://127.0.0.1:1/0", "--port", "0", "--authz", "rego", "--policy", str(bad)
    )
    assert result.returncode == 1
    assert "bad.rego: Invalid assignment operator (line 5)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_seeds_http_client_shape_gets_401_without_a_token(service: ServiceProcess) -> None:
    # EntroQ's Python client posts JSON to the REST routes; without a token it must get 401, not 500.
    response = httpx.post(f"{service.url}/api/v0/claim", json={"queues": ["/alice/a"]}, timeout=30)
    assert response.status_code == 401


async def test_a_refused_modify_does_not_name_queues_the_caller_may_not_see(
    service: ServiceProcess, namespace: str, store: Any
) -> None:
    inserted, _ = await store.modify([entroq_redis.TaskData(queue="/bob/secret", value=b"x", id="shared-id")])
    async with client(service.url, namespace, ALICE) as alice:
        collision = await alice.post(
            "/api/v0/modify", json={"inserts": [{"queue": "/alice/q", "id": "shared-id", "value": b64("y")}]}
        )
    assert collision.status_code == 404
    assert collision.json()["details"][1]["type"] == "INSERT"
    assert "/bob/secret" not in collision.text
    assert [t.queue for t in await store.tasks(ids=["shared-id"])] == ["/bob/secret"]
    assert inserted[0].id == "shared-id"


@pytest.mark.parametrize(
    ("path", "method", "operation"),
    [op for op in OPERATIONS if "401" in op[2]["responses"]],
    ids=[f"{m} {p}" for p, m, o in OPERATIONS if "401" in o["responses"]],
)
async def test_refusals_are_documented_in_the_openapi_document(
    service: ServiceProcess, namespace: str, path: str, method: str, operation: dict[str, Any]
) -> None:
    # Without credentials every protected route is 401; as bob (who may not touch the examples'
    # queues) a route answers 403 or, for listings that filter, 200: each as documented.
    request = example_request(path, operation)
    for token, allowed in ((None, {401}), (BOB, {200, 403})):
        async with client(service.url, namespace, token) as caller:
            response = await caller.request(method.upper(), **request)
        assert response.status_code in allowed, (token, response.status_code, response.text)
        documented = operation["responses"][str(response.status_code)]
        media = response.headers["content-type"].split(";")[0]
        if media == "application/json":
            validate(response.json(), documented["content"][media]["schema"])
