"""Claim semantics (docs/reference/entroq-protocol.md 2.1, docs/design.md 2.7) over every backend."""

from __future__ import annotations

import pytest
import trio

from entroq_redis import EntroQ, InvalidArgumentError, TaskData


async def test_try_claim_on_empty_queue_returns_none(eq: EntroQ) -> None:
    assert await eq.try_claim("nothing-here") is None


async def test_claim_bumps_version_and_claims_and_sets_lease(eq: EntroQ) -> None:
    (inserted,), _ = await eq.modify(inserts=[TaskData("jobs", value=b"v", attempt=2, err="e")])
    before = await eq.time()
    task = await eq.try_claim("jobs", duration_ms=10_000)
    after = await eq.time()
    assert task is not None
    assert task.id == inserted.id
    assert task.version == inserted.version + 1 == 1
    assert task.claims == 1
    assert task.claimant == eq.claimant_id
    assert before <= task.modified_ms <= after
    assert task.at_ms == task.modified_ms + 10_000
    # Unchanged by a claim: queue, value, created, attempt, err.
    assert (task.queue, task.value, task.created_ms, task.attempt, task.err) == (
        "jobs",
        b"v",
        inserted.created_ms,
        2,
        "e",
    )


async def test_claimed_task_is_invisible_until_lease_ends(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("jobs")])
    assert await eq.try_claim("jobs", duration_ms=60_000) is not None
    assert await other.try_claim("jobs") is None


async def test_expired_lease_is_reclaimable_by_another_claimant(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("jobs")])
    first = await eq.try_claim("jobs", duration_ms=50)
    assert first is not None
    await trio.sleep(0.1)
    second = await other.try_claim("jobs", duration_ms=1000)
    assert second is not None
    assert second.id == first.id
    assert second.version == first.version + 1
    assert second.claims == 2
    assert second.claimant == other.claimant_id


async def test_duration_zero_leaves_task_claimable_at_once(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("jobs")])
    first = await eq.try_claim("jobs", duration_ms=0)
    assert first is not None and first.at_ms == first.modified_ms
    second = await other.try_claim("jobs", duration_ms=0)
    assert second is not None and second.version == first.version + 1


async def test_claim_from_several_queues_deduplicates_names(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("b")])
    task = await eq.try_claim(["a", "b", "b", "a"])
    assert task is not None and task.queue == "b"


async def test_future_task_is_not_claimable_until_due(eq: EntroQ) -> None:
    now = await eq.time()
    await eq.modify(inserts=[TaskData("later", at=now + 60_000)])
    assert await eq.try_claim("later") is None


@pytest.mark.parametrize(
    ("queues", "duration_ms"),
    [
        ([], 1000),
        ([""], 1000),
        (["ok", ""], 1000),
        (["q" * 1025], 1000),
        (["ok"], -1),
        (["ok"], 10**15),
        ([f"q{i}" for i in range(1001)], 1000),
    ],
    ids=[
        "no-queues",
        "empty-name",
        "one-empty-name",
        "long-name",
        "negative-duration",
        "absurd-duration",
        "too-many-queues",
    ],
)
async def test_bad_claims_are_rejected_and_change_nothing(
    eq: EntroQ, queues: list[str], duration_ms: int
) -> None:
    await eq.modify(inserts=[TaskData("ok")])
    with pytest.raises(InvalidArgumentError):
        await eq.try_claim(queues, duration_ms=duration_ms)
    (task,) = await eq.tasks("ok")
    assert task.version == 0 and task.claims == 0


async def test_claim_with_empty_claimant_is_rejected(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("ok")])
    eq.claimant_id = ""
    with pytest.raises(InvalidArgumentError):
        await eq.try_claim("ok")


# --- finish-and-claim: delete what is done and take the next task in one call ---------


async def test_finish_deletes_then_claims_the_next(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("f", value=b"1"), TaskData("f", value=b"2")])
    first = await eq.try_claim("f", duration_ms=60_000)
    assert first is not None
    second = await eq.try_claim("f", duration_ms=60_000, finish=[first])
    assert second is not None and second.id != first.id
    assert [t.id for t in await eq.tasks("f")] == [second.id]
    assert await eq.try_claim("f", finish=[second]) is None
    assert await eq.queues() == {}


async def test_stale_finish_deletes_nothing_and_claims_nothing(eq: EntroQ, other: EntroQ) -> None:
    from entroq_redis import DependencyError

    await eq.modify(inserts=[TaskData("f"), TaskData("g")])
    done = await eq.try_claim("f", duration_ms=30)
    assert done is not None
    await trio.sleep(0.08)
    retaken = await other.try_claim("f", duration_ms=60_000)
    assert retaken is not None
    with pytest.raises(DependencyError) as caught:
        await eq.try_claim("g", finish=[done])
    assert [(f.kind, f.reason) for f in caught.value.failures] == [("DELETE", "mismatch")]
    (g,) = await eq.tasks("g")
    assert g.claims == 0, "nothing was claimed"
    assert len(await eq.tasks("f")) == 1


async def test_finish_of_a_task_held_by_another_is_refused(eq: EntroQ, other: EntroQ) -> None:
    from entroq_redis import DependencyError

    await eq.modify(inserts=[TaskData("f")])
    held = await other.try_claim("f", duration_ms=60_000)
    assert held is not None
    with pytest.raises(DependencyError) as caught:
        await eq.try_claim("f", finish=[held])
    assert [f.kind for f in caught.value.failures] == ["CLAIM"]


async def test_blocking_claim_finishes_even_when_it_then_times_out(eq: EntroQ) -> None:
    from entroq_redis import ClaimTimeoutError

    await eq.modify(inserts=[TaskData("f")])
    done = await eq.try_claim("f", duration_ms=60_000)
    assert done is not None
    with pytest.raises(ClaimTimeoutError):
        await eq.claim("f", duration_ms=1_000, timeout_s=0.2, finish=[done])
    assert await eq.tasks("f") == []


async def test_finished_task_that_is_available_is_never_the_next_claim(redis_eq: EntroQ) -> None:
    import random

    random.seed(11)
    seen: set[str] = set()
    for round_ in range(40):
        await redis_eq.modify(inserts=[TaskData(f"r{round_}", id=f"r{round_}-{i}") for i in range(5)])
        # Lease 0: the finished task is itself available when it is finished.
        done = await redis_eq.try_claim(f"r{round_}", duration_ms=0)
        assert done is not None
        claimed = await redis_eq.try_claim(f"r{round_}", duration_ms=0, finish=[done])
        assert claimed is not None and claimed.id != done.id
        seen.add(claimed.id.split("-")[1])
    assert len(seen) == 5, "every remaining rank is reachable"


async def test_finish_that_empties_the_only_candidate_reports_nothing(redis_eq: EntroQ) -> None:
    now = await redis_eq.time()
    await redis_eq.modify(inserts=[TaskData("solo"), TaskData("solo", at=now + 60_000, id="later")])
    done = await redis_eq.try_claim("solo", duration_ms=0)
    assert done is not None and done.id != "later"
    assert await redis_eq.try_claim("solo", finish=[done]) is None
    assert [t.id for t in await redis_eq.tasks("solo")] == ["later"]
