"""The modify each worker outcome becomes (pure functions, no store)."""

from __future__ import annotations

import pytest

from entroq_redis import Doc, DocChange, DocID, DocNeed, DocSet, Finish, Task, TaskData, TaskID
from entroq_redis._worker_docs import normalize_needs
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


def held_set(key: str, version: int) -> Doc:
    return Doc("accounts", "", version, "me", 9_000, key, "", b"", 0, 0)


def test_finish_releases_the_held_doc_sets_unless_it_names_them() -> None:
    held = task(version=5)
    sets = [held_set("a1", 4), held_set("a2", 9)]
    member = Doc("accounts", "bal", 2, "", 100, "a1", "balance", b"10", 1, 1)
    keep_a2 = DocChange("accounts", "", 0, key="a2", delay_ms=60_000, mode="lease")
    commit = finish_commit(
        Finish(doc_changes=[member.as_change(content=b"5"), keep_a2], doc_deletes=[member]), held, sets
    )
    # The member doc's own version is kept (holding a set does not change its docs); the
    # handler's lease change of a2 gets the held version; a1, not named, is released.
    assert [(c.id, c.key, c.version, c.mode, c.delay_ms) for c in commit.doc_changes] == [
        ("bal", "a1", 2, "full", None),
        ("", "a2", 9, "lease", 60_000),
        ("", "a1", 4, "lease", None),
    ]
    assert commit.doc_deletes == [DocID("accounts", "bal", 2)]
    assert commit.deletes == [TaskID("t1", 5, "jobs")]
    plain = finish_commit(None, held, sets)
    assert [(c.key, c.version, c.at, c.delay_ms) for c in plain.doc_changes] == [
        ("a1", 4, None, None),
        ("a2", 9, None, None),
    ]


def test_docs_needed_are_merged_per_set_and_sorted() -> None:
    needs = normalize_needs(
        [
            ("b", "k2"),
            DocSet("a", "k9"),
            DocNeed("b", "k1", ids=("x",)),
            DocNeed("b", "k2", ids=("y",), nonempty=True),
        ]
    )
    assert needs == [DocNeed("a", "k9"), DocNeed("b", "k1", ("x",)), DocNeed("b", "k2", ("y",), True)]
    with pytest.raises(ValueError, match="non-empty key"):
        normalize_needs([("a", "")])
    with pytest.raises(TypeError, match="take_docs returns"):
        normalize_needs(["a/k"])  # type: ignore[list-item]
