"""Batched claims (issue 17): try_claim_many and claim_many over every backend.

On the Redis and cluster backends one claim.lua call claims the whole batch; over HTTP and
gRPC the backend sends one claim per task. Either way the caller sees the same contract:
distinct tasks, each claimed as a single claim would claim it.
"""

from __future__ import annotations

import pytest
import trio

from entroq_redis import ClaimTimeoutError, DependencyError, EntroQ, InvalidArgumentError, TaskData


async def test_claim_many_takes_distinct_tasks_each_claimed_as_one_claim(eq: EntroQ) -> None:
    inserted, _ = await eq.modify(inserts=[TaskData("jobs", value=b"%d" % i, attempt=1) for i in range(20)])
    by_id = {t.id: t for t in inserted}
    before = await eq.time()
    tasks = await eq.try_claim_many("jobs", 16, duration_ms=10_000)
    after = await eq.time()
    assert len(tasks) == 16 and len({t.id for t in tasks}) == 16
    for task in tasks:
        original = by_id[task.id]
        assert (task.version, task.claims, task.claimant) == (original.version + 1, 1, eq.claimant_id)
        assert before <= task.modified_ms <= after and task.at_ms == task.modified_ms + 10_000
        assert (task.queue, task.value, task.created_ms, task.attempt) == (
            "jobs",
            original.value,
            original.created_ms,
            1,
        )
    # What the store holds is what came back.
    stored = {t.id: t for t in await eq.tasks("jobs")}
    for task in tasks:
        assert stored[task.id] == task


async def test_claim_many_returns_what_is_available(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("few") for _ in range(5)])
    held = await other.try_claim("few", duration_ms=60_000)
    assert held is not None
    tasks = await eq.try_claim_many("few", 16, duration_ms=60_000)
    assert len(tasks) == 4 and held.id not in {t.id for t in tasks}
    assert await eq.try_claim_many("few", 16) == []
    assert await eq.try_claim_many("nothing-here", 3) == []


async def test_claim_many_with_a_zero_lease_never_repeats_a_task(eq: EntroQ) -> None:
    inserted, _ = await eq.modify(inserts=[TaskData("zero") for _ in range(10)])
    for limit in (3, 10, 16):
        tasks = await eq.try_claim_many("zero", limit, duration_ms=0)
        assert len({t.id for t in tasks}) == len(tasks) >= 1
        stored = {t.id: t.version for t in await eq.tasks("zero")}
        # Every returned version is the task's current one: none was claimed twice.
        assert all(stored[t.id] == t.version for t in tasks)
    if eq.backend.__class__.__name__ in ("RedisBackend",):
        assert len(await eq.try_claim_many("zero", 16, duration_ms=0)) == len(inserted)


async def test_claim_many_finishes_first_all_or_nothing(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("fin") for _ in range(6)])
    first = await eq.try_claim_many("fin", 3, duration_ms=60_000)
    assert len(first) == 3
    stale = first[0].as_id()
    again = await eq.try_claim_many("fin", 3, duration_ms=60_000, finish=first)
    assert len(again) == 3 and not {t.id for t in again} & {t.id for t in first}
    assert len(await eq.tasks("fin")) == 3
    # A stale finish: nothing deleted, nothing claimed.
    with pytest.raises(DependencyError):
        await eq.try_claim_many("fin", 3, duration_ms=60_000, finish=[again[0], stale])
    assert {t.id: t.version for t in await eq.tasks("fin")} == {t.id: t.version for t in again}


async def test_claim_many_waits_for_the_first_task(eq: EntroQ, other: EntroQ) -> None:
    got: list[int] = []

    async def waiter() -> None:
        tasks = await eq.claim_many("later", 8, duration_ms=60_000, timeout_s=10)
        got.append(len(tasks))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.3)
        assert got == []
        await other.modify(inserts=[TaskData("later") for _ in range(3)])
    assert got and 1 <= got[0] <= 3
    with pytest.raises(ClaimTimeoutError):
        await eq.claim_many("empty", 4, timeout_s=0.2)


@pytest.mark.parametrize("limit", [0, -1, 1001, 2.0, True])
async def test_claim_many_refuses_a_bad_limit(eq: EntroQ, limit: object) -> None:
    await eq.modify(inserts=[TaskData("lim")])
    with pytest.raises(InvalidArgumentError, match="limit"):
        await eq.try_claim_many("lim", limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="limit"):
        await eq.claim_many("lim", limit, timeout_s=0.1)  # type: ignore[arg-type]
    assert (await eq.tasks("lim"))[0].claims == 0
