"""The modify each worker outcome becomes (pure functions, no store)."""

from __future__ import annotations

from entroq_redis import Finish, Task, TaskData, TaskID
from entroq_redis._worker_outcomes import (
    MAX_ERR_CHARS,
    append_err,
    finish_commit,
    release_change,
    retry_change,
)


def task(version: int = 7, attempt: int = 0, err: str = "") -> Task:
    return Task("jobs", "t1", version, 1_000, "me", b"value", 1, 2, 3, attempt, err)


def test_finish_patches_versions_and_deletes_the_task_by_default() -> None:
    claimed, held = task(version=1), task(version=5)
    other = TaskID("t2", 3)
    commit = finish_commit(
        Finish(inserts=[TaskData("out")], deletes=[other], depends=[claimed.as_id(), TaskID("t3", 1)]), held
    )
    assert commit.deletes == [other, TaskID("t1", 5, "jobs")]
    assert commit.depends == [TaskID("t1", 5, "jobs"), TaskID("t3", 1)]
    assert [d.queue for d in commit.inserts] == ["out"]

    moved = finish_commit(Finish(changes=[claimed.as_change(queue="done", at=None)]), held)
    assert [(c.id, c.version, c.queue) for c in moved.changes] == [("t1", 5, "done")]
    assert moved.deletes == []  # changed, so not deleted
    assert finish_commit(None, held).deletes == [TaskID("t1", 5, "jobs")]


def test_retry_appends_err_and_quarantines_at_max_attempts() -> None:
    change, quarantined = retry_change(
        task(attempt=0), "boom", delay_ms=500, err_queue="jobs/err", max_attempts=3
    )
    assert (change.queue, change.attempt, change.err, change.delay_ms, quarantined) == (
        "jobs",
        1,
        "boom",
        500,
        False,
    )
    change, quarantined = retry_change(
        task(attempt=2, err="a\nb"), "c", delay_ms=500, err_queue="jobs/err", max_attempts=3
    )
    assert (change.queue, change.attempt, change.err, change.at, quarantined) == (
        "jobs/err",
        3,
        "a\nb\nc",
        None,
        True,
    )
    change, quarantined = retry_change(task(attempt=99), "x", delay_ms=1, err_queue="e", max_attempts=0)
    assert (change.queue, change.attempt, quarantined) == ("jobs", 100, False)


def test_err_is_capped_keeping_the_newest_lines() -> None:
    line = "x" * 1000
    err = ""
    for _ in range(100):
        err = append_err(err, line)
    assert len(err) <= MAX_ERR_CHARS and err.endswith(line) and err.startswith("x")
    assert all(part == line for part in err.split("\n"))


def test_release_moves_only_the_arrival() -> None:
    change = release_change(task())
    assert (change.mode, change.at, change.delay_ms, change.version, change.value) == (
        "lease",
        None,
        None,
        7,
        b"",
    )
