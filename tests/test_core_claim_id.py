"""try_claim_id (EntroQ's ``eqc tryclaimid``): claim one given task when it is available.

Over every backend: a Redis URL runs claim_id.lua; the HTTP service and gRPC run the same
script for a TryClaim naming ``taskId`` (this service's addition to ClaimRequest).
"""

from __future__ import annotations

import pytest
import redis
import trio

from entroq_redis import DependencyError, EntroQ, InvalidArgumentError, StoreError, TaskData
from entroq_redis._keys import Keys


async def test_available_task_is_claimed_like_a_claim(eq: EntroQ) -> None:
    (inserted,), _ = await eq.modify(inserts=[TaskData("pick", value=b"v\x00", attempt=2, err="e")])
    await eq.modify(inserts=[TaskData("pick", value=b"another")])
    before = await eq.time()
    task = await eq.try_claim_id("pick", inserted.id, 10_000)
    after = await eq.time()
    assert task is not None and task.id == inserted.id
    assert task.version == 1 and task.claimant == eq.claimant_id
    assert task.claims == 1
    assert before <= task.modified_ms <= after and task.at_ms == task.modified_ms + 10_000
    assert (task.queue, task.value, task.created_ms, task.attempt, task.err) == (
        "pick",
        b"v\x00",
        inserted.created_ms,
        2,
        "e",
    )
    # Now leased: an ordinary claim takes the other task, never this one.
    for _ in range(2):
        claimed = await eq.try_claim("pick", duration_ms=10_000)
        assert claimed is None or claimed.id != inserted.id
    (stats,) = await eq.queue_stats(exact=["pick"])
    assert (stats.num_tasks, stats.num_available) == (2, 0)
    assert (stats.num_claimed, stats.num_future) == (2, 0)


async def test_task_held_by_another_is_not_claimed(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("held")])
    held = await other.try_claim("held", duration_ms=60_000)
    assert held is not None
    assert await eq.try_claim_id("held", held.id, 10_000) is None
    # Nor by the holder itself: a live lease is renewed with a lease change, not re-claimed.
    assert await other.try_claim_id("held", held.id, 10_000) is None
    [now] = await eq.tasks(ids=[held.id])
    assert (now.version, now.claimant, now.at_ms) == (held.version, other.claimant_id, held.at_ms)
    await other.modify(deletes=[held])  # the holder still commits


async def test_future_task_is_not_claimed_until_due(eq: EntroQ, other: EntroQ) -> None:
    (later,), _ = await eq.modify(inserts=[TaskData("later", delay_ms=300)])
    assert await other.try_claim_id("later", later.id, 10_000) is None
    assert await eq.try_claim_id("later", later.id, 10_000) is None  # the inserter neither
    assert (await eq.tasks(ids=[later.id]))[0].version == 0
    await trio.sleep(0.4)
    task = await other.try_claim_id("later", later.id, 10_000)
    assert task is not None and task.version == 1 and task.claimant == other.claimant_id


async def test_missing_id_or_other_queue_is_none(eq: EntroQ) -> None:
    assert await eq.try_claim_id("nowhere", "no-such-task", 10_000) is None
    (task,), _ = await eq.modify(inserts=[TaskData("here", id="known-id")])
    assert await eq.try_claim_id("elsewhere", "known-id", 10_000) is None
    assert (await eq.tasks(ids=["known-id"]))[0].version == 0
    # An empty queue name means wherever the task is.
    claimed = await eq.try_claim_id("", "known-id", 10_000)
    assert claimed is not None and claimed.queue == "here"
    await eq.modify(deletes=[claimed])
    assert await eq.try_claim_id("here", task.id, 10_000) is None


async def test_version_moves_so_the_old_holder_cannot_commit(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("fence")])
    first = await other.try_claim("fence", duration_ms=50)
    assert first is not None
    await trio.sleep(0.1)  # the lease runs out; the task is available again
    taken = await eq.try_claim_id("fence", first.id, 10_000)
    assert taken is not None and taken.version == first.version + 1
    with pytest.raises(DependencyError) as refused:
        await other.modify(changes=[first.as_change(value=b"stale")])
    assert [(f.kind, f.reason, f.current_version) for f in refused.value.failures] == [
        ("CHANGE", "mismatch", taken.version)
    ]
    with pytest.raises(DependencyError):
        await other.modify(deletes=[first])
    _, (done,) = await eq.modify(changes=[taken.as_change(queue="fence/done", at=None)])
    assert done.version == taken.version + 1 and done.queue == "fence/done"


async def test_two_claimants_race_for_one_task(eq: EntroQ, other: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("race")])
    results: list[object] = []

    async def attempt(client: EntroQ) -> None:
        results.append(await client.try_claim_id("race", task.id, 60_000))

    for _ in range(3):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(attempt, eq)
            nursery.start_soon(attempt, other)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and len(results) == 6


async def test_bad_arguments_are_refused_and_change_nothing(eq: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("bad")])
    for queue, task_id, duration in [
        ("bad", "", 1000),
        ("bad", "x" * 65, 1000),
        ("bad", task.id, -1),
        ("bad", task.id, 31_622_400_001),
    ]:
        with pytest.raises(InvalidArgumentError):
            await eq.try_claim_id(queue, task_id, duration)
    assert (await eq.tasks(ids=[task.id]))[0].version == 0


async def test_claim_id_keeps_queue_stats_exact(redis_eq: EntroQ) -> None:
    """claim_id.lua maintains the claimed index and the claims histogram as claim.lua does."""
    (task, _), _ = await redis_eq.modify(inserts=[TaskData("stats"), TaskData("stats")])
    first = await redis_eq.try_claim_id("stats", task.id, 0)  # claimable again at once
    assert first is not None and first.claims == 1
    second = await redis_eq.try_claim_id("stats", task.id, 60_000)
    assert second is not None and (second.version, second.claims) == (2, 2)
    (stats,) = await redis_eq.queue_stats(exact=["stats"])
    assert (stats.num_tasks, stats.num_claimed, stats.num_available, stats.max_claims) == (2, 1, 1, 2)
    await redis_eq.modify(deletes=[second])
    (stats,) = await redis_eq.queue_stats(exact=["stats"])
    assert (stats.num_tasks, stats.num_claimed, stats.max_claims) == (1, 0, 0)


async def test_a_task_missing_from_its_queue_index_is_reported_not_claimed(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    """A damaged store (only a foreign writer can do this) is named, and nothing is written."""
    (task,), _ = await redis_eq.modify(inserts=[TaskData("damaged")])
    keys = Keys(namespace)
    record = sync_redis.get(keys.task(task.id))
    sync_redis.zrem(keys.queue("damaged"), task.id)
    with pytest.raises(StoreError, match=r"EQ_CORRUPT .* missing from the index of its queue damaged"):
        await redis_eq.try_claim_id("damaged", task.id, 10_000)
    assert sync_redis.get(keys.task(task.id)) == record
    assert sync_redis.zscore(keys.queue("damaged"), task.id) is None
    assert not sync_redis.exists(keys.claimed("damaged"), keys.claim_histogram("damaged"))
