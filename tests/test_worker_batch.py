"""The Worker's rounds: one store call claims for every free slot and deletes the round's successes.

Script calls are counted on a store of the test's own (INFO commandstats), so no other
client's calls are in the count.
"""

from __future__ import annotations

import random

import pytest
import redis
import trio

import entroq_redis
from entroq_redis import MoveTaskError, RetryTaskError, TakenDocs, Task, TaskData, Worker, WorkerEvent


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def noop(task: Task) -> None:
    return None


async def test_one_store_call_per_round() -> None:
    concurrency, rounds = 8, 8
    async with entroq_redis.open_embedded() as url, entroq_redis.connect(url) as eq:
        await eq.modify(inserts=[TaskData("jobs", value=b"x")] * (concurrency * rounds))
        # A blocking claim's first use sets up the client's wake-ups (a script call of its own).
        with pytest.raises(entroq_redis.ClaimTimeoutError):
            await eq.claim("warm-up", 1_000, timeout_s=0.01)
        client = redis.Redis.from_url(url)
        try:
            worker = Worker(eq, "jobs", noop, concurrency=concurrency, max_tasks=concurrency * rounds)
            before = script_calls(client)
            with trio.fail_after(20):
                await worker.run()
            calls = script_calls(client) - before
        finally:
            client.close()
        assert worker.counts == {"done": concurrency * rounds}
        assert await eq.tasks("jobs") == []
    # No-op handlers finish together, so each round is full: the first claim, seven rounds
    # deleting 8 and claiming 8, and one modify deleting the last 8 (the budget is spent).
    # Task by task it would be 64 finish-and-claim calls.
    assert calls == rounds + 1


async def test_never_claims_more_than_its_free_slots(redis_eq: entroq_redis.EntroQ) -> None:
    eq, concurrency = redis_eq, 4
    await eq.modify(inserts=[TaskData("jobs", value=str(n).encode()) for n in range(40)])
    release = trio.Event()
    running: set[str] = set()
    all_running = trio.Event()

    async def handle(task: Task) -> None:
        running.add(task.id)
        if len(running) == concurrency:
            all_running.set()
        await release.wait()
        await trio.sleep(random.random() * 0.005)

    worker = Worker(eq, "jobs", handle, concurrency=concurrency)

    async def held_by_worker() -> int:
        return sum(t.claimant == worker.claimant_id for t in await eq.tasks("jobs", omit_values=True))

    most = 0
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await all_running.wait()
            await trio.sleep(0.3)  # a worker that prefetched would have claimed more by now
            untouched = [t for t in await eq.tasks("jobs") if t.claims == 0]
            assert (await held_by_worker(), len(untouched)) == (concurrency, 40 - concurrency)
            release.set()
            # Held = running or finished and waiting for the round that deletes them.
            while worker.counts["done"] < 40:
                most = max(most, await held_by_worker())
            worker.stop()
    assert most <= concurrency
    assert await eq.tasks("jobs") == []


async def test_a_mixed_round_commits_each_outcome(eq: entroq_redis.EntroQ) -> None:
    inserted, _ = await eq.modify(inserts=[TaskData("jobs", value=v) for v in (b"ok", b"retry", b"move")])
    by_value = {t.value: t for t in inserted}
    started: set[bytes] = set()
    go = trio.Event()

    async def handle(task: Task) -> None:
        started.add(task.value)
        if len(started) == 3:
            go.set()
        await go.wait()  # all three end in the same round
        if task.value == b"retry":
            raise RetryTaskError("later", delay_ms=60_000)
        if task.value == b"move":
            raise MoveTaskError("never")

    events: list[WorkerEvent] = []
    worker = Worker(eq, "jobs", handle, concurrency=3, max_tasks=3, on_event=events.append)
    with trio.fail_after(20):
        await worker.run()
    assert sorted((e.kind, e.task.value) for e in events) == [
        ("done", b"ok"),
        ("quarantined", b"move"),
        ("retried", b"retry"),
    ]
    [retried] = await eq.tasks("jobs")
    assert (retried.id, retried.attempt, retried.err) == (by_value[b"retry"].id, 1, "later")
    assert retried.claimant == worker.claimant_id and retried.at_ms > await eq.time() + 50_000
    [moved] = await eq.tasks("jobs/err")
    assert (moved.id, moved.attempt, moved.err) == (by_value[b"move"].id, 1, "never")
    assert await eq.tasks(ids=[by_value[b"ok"].id]) == []


async def test_one_stale_task_does_not_block_its_rounds_other_deletes(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    inserted, _ = await eq.modify(inserts=[TaskData("jobs", value=str(n).encode()) for n in range(4)])
    stale_id = inserted[0].id
    started: set[str] = set()
    all_started, go = trio.Event(), trio.Event()

    async def handle(task: Task) -> None:
        started.add(task.id)
        if len(started) == 4:
            all_started.set()
        await go.wait()

    events: list[WorkerEvent] = []
    settled = trio.Event()

    def record(event: WorkerEvent) -> None:
        events.append(event)
        if len(events) == 4:
            settled.set()

    # No max_tasks: the four deletes ride on the next round's claim, which the stale one refuses.
    worker = Worker(eq, "jobs", handle, lease_ms=30_000, concurrency=4, on_event=record)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await all_started.wait()
            # An operator force-releases one task and another worker claims it: the worker
            # still holds a version that is no longer the stored one.
            [held] = await eq.tasks(ids=[stale_id])
            await other.modify(changes=[held.as_change(at=None)], unsafe_claimant_id=held.claimant)
            thief = await other.claim("jobs", 60_000, timeout_s=5)
            assert thief.id == stale_id
            go.set()
            await settled.wait()
            worker.stop()
    assert sorted(e.kind for e in events) == ["done", "done", "done", "lost"]
    assert [e.task.id for e in events if e.kind == "lost"] == [stale_id]
    [left] = await eq.tasks("jobs")
    assert (left.id, left.version, left.claimant) == (stale_id, thief.version, other.claimant_id)


async def test_max_tasks_ends_a_worker_whose_slots_claim_apart(redis_eq: entroq_redis.EntroQ) -> None:
    # With take_docs each slot claims on its own (its own claimant): the slots that find the
    # budget taken must not wait for a task max_tasks will never let them claim.
    await redis_eq.modify(inserts=[TaskData("jobs", value=b"only")])

    async def handle(task: Task, docs: TakenDocs) -> None:
        return None

    worker = Worker(redis_eq, "jobs", handle, concurrency=4, max_tasks=1, take_docs=lambda task: [])
    with trio.fail_after(10):
        await worker.run()
    assert worker.counts == {"done": 1}
    assert await redis_eq.tasks("jobs") == []
