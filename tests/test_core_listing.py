"""Task listing, queue listing and stats over every backend.

The rules: docs/reference/entroq-protocol.md 2.5 and 2.7, docs/design.md 2.7.
"""

from __future__ import annotations

import pytest
import trio

from entroq_redis import EntroQ, InvalidArgumentError, QueueStats, TaskData


async def test_tasks_by_queue_in_arrival_order_with_limit(eq: EntroQ) -> None:
    now = await eq.time()
    inserted, _ = await eq.modify(
        inserts=[TaskData("q", at=now - 1000 * i, value=b"%d" % i) for i in range(5)]
    )
    listed = await eq.tasks("q")
    assert [t.id for t in listed] == [t.id for t in reversed(inserted)]
    assert [t.id for t in await eq.tasks("q", limit=2)] == [inserted[4].id, inserted[3].id]


async def test_tasks_omit_values(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q", value=b"payload")])
    (task,) = await eq.tasks("q", omit_values=True)
    assert task.value == b""


async def test_tasks_by_ids_come_from_any_queue_and_ignore_limit(eq: EntroQ) -> None:
    (a, b, c), _ = await eq.modify(inserts=[TaskData("q1"), TaskData("q2"), TaskData("q3")])
    found = await eq.tasks(ids=[a.id, b.id, "unknown", c.id], limit=1)
    assert [t.id for t in found] == [a.id, b.id, c.id]
    assert [t.id for t in await eq.tasks("q2", ids=[a.id, b.id])] == [b.id]


async def test_tasks_without_queue_or_ids_is_empty(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    assert await eq.tasks() == []


async def test_tasks_claimant_filter(eq: EntroQ, other: EntroQ) -> None:
    now = await eq.time()
    (mine_future, available, theirs_future), _ = await eq.modify(
        inserts=[TaskData("q", at=now + 60_000), TaskData("q"), TaskData("q", id="theirs")]
    )
    _, (theirs,) = await other.modify(changes=[theirs_future.as_change(at=now + 60_000)])
    ids = {t.id for t in await eq.tasks("q", claimant_id=eq.claimant_id)}
    assert ids == {mine_future.id, available.id}
    ids = {t.id for t in await eq.tasks("q", claimant_id=other.claimant_id)}
    assert ids == {available.id, theirs.id}
    assert len(await eq.tasks("q")) == 3


async def test_tasks_pages_through_large_queues(eq: EntroQ) -> None:
    for start in range(0, 2500, 1000):
        await eq.modify(inserts=[TaskData("big") for _ in range(min(1000, 2500 - start))])
    listed = await eq.tasks("big", omit_values=True)
    assert len(listed) == 2500 == len({t.id for t in listed})
    assert len(await eq.tasks("big", limit=1500, omit_values=True)) == 1500


async def test_tasks_offset_pages_by_arrival_rank(eq: EntroQ) -> None:
    now = await eq.time()
    by_arrival = []
    for start in (0, 1000):  # 1,205 tasks, at most 1,000 per modify
        count = min(1000, 1205 - start)
        inserted, _ = await eq.modify(
            inserts=[TaskData("q", at=now - 10_000 + start + i) for i in range(count)]
        )
        by_arrival += [t.id for t in inserted]
    assert [t.id for t in await eq.tasks("q", offset=3, limit=4)] == by_arrival[3:7]
    # Past the store's page size, and with no limit: the rest of the queue from the offset on.
    assert [t.id for t in await eq.tasks("q", offset=1000, limit=0)] == by_arrival[1000:]
    assert [t.id for t in await eq.tasks("q", offset=1200, limit=50)] == by_arrival[1200:]
    assert await eq.tasks("q", offset=1205) == []
    # With IDs the offset does not apply, as the limit does not.
    assert [t.id for t in await eq.tasks(ids=by_arrival[:2], offset=5)] == by_arrival[:2]


@pytest.mark.parametrize("offset", [-1, 2**52, True])
async def test_tasks_offset_out_of_range_is_refused(eq: EntroQ, offset: int) -> None:
    with pytest.raises(InvalidArgumentError, match="offset"):
        await eq.tasks("q", offset=offset)


async def test_queues_listing_prefix_exact_limit_sorted(eq: EntroQ) -> None:
    names = ["a/x", "a/y", "ab", "b", "c/z", "a"]
    await eq.modify(inserts=[TaskData(name) for name in names] + [TaskData("b")])
    assert await eq.queues() == {"a": 1, "a/x": 1, "a/y": 1, "ab": 1, "b": 2, "c/z": 1}
    assert list(await eq.queues()) == sorted(names)
    assert await eq.queues(prefixes=["a/"]) == {"a/x": 1, "a/y": 1}
    assert await eq.queues(prefixes=["a/"], exact=["b", "nope"]) == {"a/x": 1, "a/y": 1, "b": 2}
    assert list(await eq.queues(prefixes=["a"], limit=2)) == ["a", "a/x"]
    assert await eq.queues(exact=["c/z"]) == {"c/z": 1}
    assert await eq.queues(prefixes=[""]) == await eq.queues()


async def test_queues_listing_pages_past_a_thousand(eq: EntroQ) -> None:
    names = [f"q{i:05d}" for i in range(1200)]
    for start in range(0, len(names), 1000):
        await eq.modify(inserts=[TaskData(name) for name in names[start : start + 1000]])
    listed = await eq.queues(prefixes=["q"])
    assert list(listed) == names
    assert list(await eq.queues(limit=1100)) == names[:1100]
    stats = await eq.queue_stats(prefixes=["q0"], limit=1001)
    assert [s.name for s in stats] == names[:1001]


async def test_queue_disappears_when_its_last_task_goes(eq: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("fleeting")])
    assert await eq.queues(exact=["fleeting"]) == {"fleeting": 1}
    await eq.modify(changes=[task.as_change(queue="elsewhere")])
    assert await eq.queues() == {"elsewhere": 1}


async def test_queue_stats_counts(eq: EntroQ, other: EntroQ) -> None:
    now = await eq.time()
    await eq.modify(
        inserts=[
            TaskData("s", value=b"available"),
            TaskData("s", value=b"available too"),
            TaskData("s", at=now + 60_000, value=b"future, inserter holds it but never claimed"),
            TaskData("s", value=b"to be claimed twice"),
        ]
    )
    first = await eq.try_claim("s", duration_ms=20)
    assert first is not None
    await trio.sleep(0.05)
    # Make sure the twice-claimed one is the same task: claim until we see claims == 2.
    for _ in range(200):
        again = await other.try_claim("s", duration_ms=0)
        assert again is not None
        if again.id == first.id:
            break
    held = await other.try_claim("s", duration_ms=60_000)
    assert held is not None
    (stats,) = await eq.queue_stats(exact=["s"])
    assert stats.name == "s"
    assert stats.num_tasks == 4
    assert stats.num_claimed == 1
    assert stats.num_future == 1
    assert stats.num_available == 2
    assert stats.max_claims == max(t.claims for t in await eq.tasks("s"))
    assert stats.max_claims >= 2


async def test_queue_stats_max_claims_falls_when_task_leaves(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("m"), TaskData("m", id="other")])
    task = None
    for _ in range(3):
        task = await eq.try_claim("m", duration_ms=0)
    assert task is not None
    top = max(t.claims for t in await eq.tasks("m"))
    (stats,) = await eq.queue_stats(exact=["m"])
    assert stats.max_claims == top
    for listed in await eq.tasks("m"):
        if listed.claims == top:
            await eq.modify(deletes=[listed.as_id()])
            break
    remaining = await eq.tasks("m")
    (stats,) = await eq.queue_stats(exact=["m"])
    assert stats.max_claims == max(t.claims for t in remaining)


async def test_queue_stats_of_unknown_queue_is_empty(eq: EntroQ) -> None:
    assert await eq.queue_stats(exact=["never"]) == []


async def test_queue_stats_equal_sizes(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("x"), TaskData("y"), TaskData("y")])
    assert await eq.queue_stats() == [
        QueueStats("x", 1, 0, 1, 0, 0),
        QueueStats("y", 2, 0, 2, 0, 0),
    ]


async def test_tasks_with_oversized_queue_name_is_rejected(eq: EntroQ) -> None:
    with pytest.raises(InvalidArgumentError):
        await eq.tasks("q" * 1025)
