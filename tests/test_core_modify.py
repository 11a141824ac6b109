"""Modify semantics (docs/reference/entroq-protocol.md 2.4, docs/design.md 2.6 and 2.7) over every backend."""

from __future__ import annotations

import re

import pytest
import trio

from entroq_redis import DependencyError, EntroQ, InvalidArgumentError, Task, TaskChange, TaskData, TaskID

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def snapshot(eq: EntroQ, *queues: str) -> list[Task]:
    found: list[Task] = []
    for queue in queues:
        found += await eq.tasks(queue)
    return sorted(found, key=lambda t: t.id)


# --- inserts ---------------------------------------------------------------------------


async def test_insert_generates_uuid4_ids_and_starts_at_version_zero(eq: EntroQ) -> None:
    before = await eq.time()
    inserted, changed = await eq.modify(inserts=[TaskData("q", value=b"a"), TaskData("q", value=b"b")])
    assert changed == []
    assert [t.value for t in inserted] == [b"a", b"b"]
    for task in inserted:
        assert UUID4.match(task.id), task.id
        assert task.version == 0 and task.claims == 0
        assert task.claimant == eq.claimant_id
        assert task.created_ms == task.modified_ms >= before
        # at 0 / absent means available now.
        assert task.at_ms == task.created_ms
    assert inserted[0].id != inserted[1].id


async def test_insert_keeps_caller_id_attempt_err_and_future_at(eq: EntroQ) -> None:
    now = await eq.time()
    (task,), _ = await eq.modify(
        inserts=[TaskData("q", at=now + 60_000, value=b"x", attempt=3, err="boom", id="my/id with spaces")]
    )
    assert (task.id, task.attempt, task.err, task.at_ms) == ("my/id with spaces", 3, "boom", now + 60_000)


async def test_insert_with_delay_uses_store_clock(eq: EntroQ) -> None:
    now = await eq.time()
    (task,), _ = await eq.modify(inserts=[TaskData("q", delay_ms=5_000)])
    assert now + 5_000 <= task.at_ms <= now + 5_000 + 2_000


async def test_future_insert_can_be_changed_only_by_its_inserter(eq: EntroQ, other: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("q", delay_ms=60_000)])
    with pytest.raises(DependencyError) as caught:
        await other.modify(deletes=[task.as_id()])
    assert [(f.kind, f.reason) for f in caught.value.failures] == [("CLAIM", "claimed")]
    await eq.modify(deletes=[task.as_id()])


async def test_insert_collision_reports_existing_task(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q", id="fixed")])
    with pytest.raises(DependencyError) as caught:
        await eq.modify(inserts=[TaskData("other-queue", id="fixed")])
    (failure,) = caught.value.failures
    assert (failure.kind, failure.reason, failure.id, failure.version, failure.queue) == (
        "INSERT",
        "collision",
        "fixed",
        0,
        "q",
    )
    assert caught.value.collisions == [TaskID("fixed", 0, "q")]
    assert await eq.tasks("other-queue") == []


async def test_insert_colliding_with_task_deleted_in_same_modify_is_a_collision(eq: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("q", id="same")])
    with pytest.raises(DependencyError) as caught:
        await eq.modify(deletes=[task.as_id()], inserts=[TaskData("q", id="same")])
    assert [(f.kind, f.reason) for f in caught.value.failures] == [("INSERT", "collision")]
    assert await eq.tasks("q") == [task]


# --- changes ---------------------------------------------------------------------------


async def test_change_replaces_fields_bumps_version_keeps_created_and_claims(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q", value=b"old")])
    claimed = await eq.try_claim("q", duration_ms=60_000)
    assert claimed is not None
    _, (changed,) = await eq.modify(
        changes=[claimed.as_change(queue="q2", value=b"new", attempt=1, err="e", at=None)]
    )
    assert changed.id == claimed.id
    assert changed.version == claimed.version + 1
    assert (changed.queue, changed.value, changed.attempt, changed.err) == ("q2", b"new", 1, "e")
    assert changed.created_ms == claimed.created_ms
    assert changed.claims == claimed.claims == 1
    # New arrival is now (at=None), so the claim is released and the claimant cleared.
    assert changed.claimant == ""
    assert changed.at_ms == changed.modified_ms
    assert await eq.tasks("q") == []
    assert await eq.tasks("q2") == [changed]


async def test_change_with_future_at_makes_modifier_the_claimant(eq: EntroQ, other: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("q")])
    now = await eq.time()
    _, (changed,) = await other.modify(changes=[task.as_change(at=now + 60_000)])
    assert changed.claimant == other.claimant_id
    assert await eq.try_claim("q") is None


async def test_lease_change_moves_only_the_arrival(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q", value=b"v", attempt=4, err="e")])
    task = await eq.try_claim("q", duration_ms=1_000)
    assert task is not None
    renewed = await eq.renew_for(task, 60_000)
    assert renewed.version == task.version + 1
    assert (renewed.queue, renewed.value, renewed.attempt, renewed.err, renewed.claims) == (
        "q",
        b"v",
        4,
        "e",
        1,
    )
    assert renewed.at_ms >= task.at_ms + 58_000
    assert renewed.claimant == eq.claimant_id


async def test_reset_claims_change_zeroes_claims(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    task = await eq.try_claim("q")
    assert task is not None
    _, (changed,) = await eq.modify(changes=[task.as_change(mode="reset_claims", at=None)])
    assert changed.claims == 0
    (stats,) = await eq.queue_stats(exact=["q"])
    assert stats.max_claims == 0


async def test_change_of_task_held_by_another_is_claim_failure(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    task = await eq.try_claim("q", duration_ms=60_000)
    assert task is not None
    with pytest.raises(DependencyError) as caught:
        await other.modify(changes=[task.as_change(value=b"stolen")])
    (failure,) = caught.value.failures
    assert (failure.kind, failure.reason, failure.id, failure.version) == (
        "CLAIM",
        "claimed",
        task.id,
        task.version,
    )
    assert caught.value.claims == [TaskID(task.id, task.version, "q")]


async def test_expired_lease_can_be_changed_and_deleted_by_anyone(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    task = await eq.try_claim("q", duration_ms=30)
    assert task is not None
    await trio.sleep(0.08)
    _, (changed,) = await other.modify(changes=[task.as_change(value=b"mine now", at=None)])
    await other.modify(deletes=[changed.as_id()])


async def test_holder_can_commit_after_lease_ran_out_if_nobody_reclaimed(eq: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    task = await eq.try_claim("q", duration_ms=30)
    assert task is not None
    await trio.sleep(0.08)
    await eq.modify(deletes=[task.as_id()])
    assert await eq.tasks("q") == []


async def test_stale_version_cannot_commit_after_reclaim(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    first = await eq.try_claim("q", duration_ms=30)
    assert first is not None
    await trio.sleep(0.08)
    second = await other.try_claim("q", duration_ms=60_000)
    assert second is not None
    with pytest.raises(DependencyError) as caught:
        await eq.modify(deletes=[first.as_id()])
    assert [(f.kind, f.reason, f.current_version) for f in caught.value.failures] == [
        ("DELETE", "mismatch", second.version)
    ]


# --- deletes and depends ----------------------------------------------------------------


async def test_delete_and_depend_do_not_bump_versions(eq: EntroQ) -> None:
    (a, b), _ = await eq.modify(inserts=[TaskData("q"), TaskData("q")])
    inserted, changed = await eq.modify(deletes=[a.as_id()], depends=[b.as_id()])
    assert (inserted, changed) == ([], [])
    assert await eq.tasks("q") == [b]


async def test_delete_with_wrong_queue_is_missing(eq: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("q")])
    with pytest.raises(DependencyError) as caught:
        await eq.modify(deletes=[TaskID(task.id, 0, "elsewhere")])
    assert [(f.kind, f.reason) for f in caught.value.failures] == [("DELETE", "missing")]
    await eq.modify(deletes=[TaskID(task.id, 0, "")])


async def test_depend_never_checks_claimant(eq: EntroQ, other: EntroQ) -> None:
    await eq.modify(inserts=[TaskData("q")])
    task = await eq.try_claim("q", duration_ms=60_000)
    assert task is not None
    await other.modify(depends=[task.as_id()], inserts=[TaskData("done")])


async def test_depend_failure_blocks_the_insert(eq: EntroQ) -> None:
    (task,), _ = await eq.modify(inserts=[TaskData("q")])
    with pytest.raises(DependencyError) as caught:
        await eq.modify(depends=[TaskID(task.id, 7)], inserts=[TaskData("done")])
    assert [(f.kind, f.reason, f.current_version) for f in caught.value.failures] == [
        ("DEPEND", "mismatch", 0)
    ]
    assert await eq.tasks("done") == []


async def test_every_failure_is_reported_and_nothing_is_applied(eq: EntroQ, other: EntroQ) -> None:
    now = await eq.time()
    (keep, stale, held, dup), _ = await eq.modify(
        inserts=[TaskData("q", value=b"keep"), TaskData("q"), TaskData("q", id="dup"), TaskData("q")]
    )
    _, (stale_now,) = await eq.modify(changes=[stale.as_change(value=b"v2")])
    _, (held_now,) = await other.modify(changes=[held.as_change(at=now + 60_000)])
    before = await snapshot(eq, "q", "new")
    with pytest.raises(DependencyError) as caught:
        await eq.modify(
            inserts=[TaskData("new", id="fresh"), TaskData("new", id="dup")],
            changes=[stale.as_change(value=b"v3"), keep.as_change(value=b"applied?")],
            deletes=[held_now.as_id(), TaskID("no-such-task", 0)],
            depends=[TaskID("also-missing", 3), dup.as_id()],
        )
    failures = {(f.kind, f.reason, f.id) for f in caught.value.failures}
    assert failures == {
        ("INSERT", "collision", "dup"),
        ("CHANGE", "mismatch", stale.id),
        ("CLAIM", "claimed", held.id),
        ("DELETE", "missing", "no-such-task"),
        ("DEPEND", "missing", "also-missing"),
    }
    assert str(caught.value).startswith("modification dependency error")
    assert await snapshot(eq, "q", "new") == before
    del stale_now


async def test_successful_modify_returns_tasks_in_request_order(eq: EntroQ) -> None:
    (a, b, c), _ = await eq.modify(inserts=[TaskData("q", id=name) for name in ("c1", "a1", "b1")])
    assert [t.id for t in (a, b, c)] == ["c1", "a1", "b1"]
    inserted, changed = await eq.modify(
        inserts=[TaskData("r", id="z"), TaskData("r", id="y")],
        changes=[c.as_change(value=b"1"), a.as_change(value=b"2")],
        deletes=[b.as_id()],
    )
    assert [t.id for t in inserted] == ["z", "y"]
    assert [t.id for t in changed] == ["b1", "c1"]


async def test_empty_modify_is_a_no_op(eq: EntroQ) -> None:
    assert await eq.modify() == ([], [])


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"inserts": [TaskData("")]},
        {"inserts": [TaskData("q", id="x" * 65)]},
        {"inserts": [TaskData("q" * 1025)]},
        {"inserts": [TaskData("q", attempt=-1)]},
        {"inserts": [TaskData("q", id="twice"), TaskData("q", id="twice")]},
        {"changes": [TaskChange("", 0, "q")]},
        {"changes": [TaskChange("a", 0, "")]},
        {"changes": [TaskChange("a", -1, "q")]},
        {"changes": [TaskChange("a", 0, "q"), TaskChange("a", 0, "q")]},
        {"changes": [TaskChange("a", 0, "q")], "deletes": [TaskID("a", 0)]},
        {"deletes": [TaskID("x" * 65, 0)]},
        {"depends": [TaskID("", 0)]},
        {"inserts": [TaskData("q") for _ in range(1001)]},
    ],
    ids=[
        "empty-queue",
        "long-id",
        "long-queue",
        "negative-attempt",
        "duplicate-insert-id",
        "empty-change-id",
        "empty-change-queue",
        "negative-version",
        "changed-twice",
        "changed-and-deleted",
        "long-delete-id",
        "empty-depend-id",
        "too-many-items",
    ],
)
async def test_bad_modify_is_rejected_and_writes_nothing(
    eq: EntroQ, request_kwargs: dict[str, object]
) -> None:
    await eq.modify(inserts=[TaskData("q", id="a")])
    before = await snapshot(eq, "q")
    with pytest.raises(InvalidArgumentError):
        await eq.modify(**request_kwargs)  # type: ignore[arg-type]
    assert await snapshot(eq, "q") == before
    assert await eq.queues() == {"q": 1}
