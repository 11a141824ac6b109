"""The battery's checker finds each anomaly it claims to find (synthetic histories).

A checker that never fails proves nothing: each test here feeds a small hand-written
history with exactly one anomaly of one kind and expects exactly that check to fire, and
the clean history to pass.
"""

from __future__ import annotations

import json
from typing import Any

from battery.checker import Report, check

Record = dict[str, Any]


class History:
    """Builds records in history.py's format on a fake clock (1 s per operation)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.clock = 0.0

    def _add(self, **record: Any) -> Record:
        self.clock += 1
        record.setdefault("type", "ok")
        record.setdefault("p", "w0")
        record.update(ti=self.clock, td=self.clock + 0.5)
        self.records.append(record)
        return record

    def insert(self, *ids: str, type: str = "ok", now: int = 1000) -> Record:
        out = [[i, 0, now, now, "w0"] for i in ids] if type == "ok" else []
        return self._add(op="modify", batch=f"ins-{ids[0]}", ins=[[i, "q"] for i in ids], out=out, type=type)

    def claim(self, task_id: str, version: int, *, now: int, lease_ms: int = 100, who: str = "w0") -> Record:
        task = [task_id, version, "q", now + lease_ms, now, who]
        return self._add(op="claim", queues=["q"], claimant=who, task=task, p=who)

    def commit(
        self, task_id: str, version: int, *, who: str = "w0", type: str = "ok", marker: str | None = None
    ) -> Record:
        marker = marker or f"r-{task_id}-{version}-{len(self.records)}"
        return self._add(
            op="modify",
            batch=f"b{len(self.records)}",
            claimant=who,
            ins=[[marker, "done"]],
            dels=[[task_id, version]],
            out=[[marker, 0, 0, 0, who]] if type == "ok" else [],
            type=type,
            p=who,
            err={"ok": "", "fail": "DependencyError: refused", "info": "StoreUnavailableError: reset"}[type],
        )

    def read(self, ids: list[str], seen: list[list[Any]]) -> Record:
        return self._add(op="read", ids=ids, seen=seen)

    def final(self, *tasks: tuple[str, int, str]) -> list[Record]:
        seen = [[i, v, "q", value] for i, v, value in tasks]
        return [*self.records, {"p": "final", "op": "final", "ti": 0, "td": 0, "type": "ok", "seen": seen}]


def marker(source: str, version: int, stage: str = "done") -> str:
    return json.dumps({"src": source, "v": version, "stage": stage})


def problems(report: Report) -> dict[str, int]:
    return {name: found.count for name, found in report.problems().items()}


def finished(history: History, *markers: tuple[str, str, int]) -> list[Record]:
    """The final state holding the given commit markers (id, source, version)."""
    return history.final(*[(m, 0, marker(src, v)) for m, src, v in markers])


def clean() -> tuple[History, list[Record]]:
    history = History()
    history.insert("a", "b")
    history.claim("a", 1, now=2000)
    history.commit("a", 1, marker="ra")
    history.claim("b", 1, now=2100, lease_ms=100)
    history.claim("b", 2, now=2300, who="w1")  # b's first lease ran out at 2200
    history.commit("b", 1, type="fail")  # the late holder is refused
    history.commit("b", 2, who="w1", marker="rb")
    return history, finished(history, ("ra", "a", 1), ("rb", "b", 2))


def test_a_clean_history_passes() -> None:
    _, records = clean()
    report = check(records, sources=["a", "b"])
    assert problems(report) == {}
    assert (report.claims_ok, report.commits_refused, report.leases_checked) == (3, 1, 3)


def test_lost_insert() -> None:
    history, records = clean()
    history.insert("c")
    report = check(finished(history, ("ra", "a", 1), ("rb", "b", 2)))
    assert problems(report) == {"C1 lost": 1}
    del records


def test_acknowledged_delete_undone() -> None:
    history, _ = clean()
    records = history.final(("a", 1, "x"), ("ra", 0, marker("a", 1)), ("rb", 0, marker("b", 2)))
    # The same modify inserted ra, so the final state also shows it applied in part.
    assert problems(check(records)) == {"C1 acked writes undone": 1, "C7 partial modifies": 1}


def test_source_without_its_marker_is_lost_or_unfinished() -> None:
    history, _ = clean()
    assert problems(check(finished(history, ("ra", "a", 1), ("rb", "b", 2)), sources=["a", "b", "z"])) == {
        "C1 lost": 1
    }
    history.insert("z")
    records = history.final(("ra", 0, marker("a", 1)), ("rb", 0, marker("b", 2)), ("z", 0, "pending"))
    assert problems(check(records, sources=["z"])) == {"unfinished sources": 1}


def test_unexpected_task() -> None:
    history, _ = clean()
    history.claim("ghost", 1, now=3000)
    assert problems(check(finished(history, ("ra", "a", 1), ("rb", "b", 2)))) == {"C2 unexpected": 1}


def test_double_commit_of_one_version() -> None:
    history, _ = clean()
    history.commit("b", 2, who="w1", marker="rb2")
    records = finished(history, ("ra", "a", 1), ("rb", "b", 2), ("rb2", "b", 2))
    found = problems(check(records))
    # Two acknowledged deletes of b v2, and two "done" markers of source b.
    assert found == {"C3 double commits": 2}


def test_stale_commit_accepted() -> None:
    history = History()
    history.insert("a")
    history.claim("a", 1, now=2000)
    history.claim("a", 2, now=2200, who="w1")
    history.commit("a", 1, marker="r1")  # names v1 after v2 was handed out: must be refused
    found = problems(check(finished(history, ("r1", "a", 1))))
    assert found == {"C4 stale commits accepted": 1}


def test_commit_by_another_claimant_during_the_lease() -> None:
    history = History()
    history.insert("a")
    history.claim("a", 1, now=2000, lease_ms=60_000)
    history.commit("a", 1, who="intruder", marker="r1")
    assert problems(check(finished(history, ("r1", "a", 1)))) == {"C4 stale commits accepted": 1}


def test_version_handed_out_twice() -> None:
    history = History()
    history.insert("a")
    history.claim("a", 1, now=2000)
    history.claim("a", 1, now=2500, who="w1")
    history.commit("a", 1, who="w1", marker="r1")
    assert problems(check(finished(history, ("r1", "a", 1)))) == {"C5 versions reused": 1}


def test_claim_while_leased() -> None:
    history = History()
    history.insert("a")
    history.claim("a", 1, now=2000, lease_ms=1000)
    history.claim("a", 2, now=2500, who="w1")  # a is leased until 3000
    history.commit("a", 2, who="w1", marker="r1")
    assert problems(check(finished(history, ("r1", "a", 2)))) == {"C6 lease overlaps": 1}


def test_modify_seen_in_part() -> None:
    history, _ = clean()
    # A read in which a's commit marker exists while a is still at the version it deleted.
    history.read(["a", "ra"], [["a", 1, "q"], ["ra", 0, "done"]])
    assert problems(check(finished(history, ("ra", "a", 1), ("rb", "b", 2)))) == {"C7 partial modifies": 1}


def test_info_operations_go_either_way() -> None:
    history = History()
    history.insert("a", "b")
    history.claim("a", 1, now=2000)
    history.commit("a", 1, type="info", marker="ra")  # landed although unacknowledged
    history.claim("b", 1, now=2000)
    history.commit("b", 1, type="info", marker="rb")  # did not land
    history.claim("b", 2, now=2200, who="w1")
    history.commit("b", 2, who="w1", marker="rb2")
    report = check(finished(history, ("ra", "a", 1), ("rb2", "b", 2)), sources=["a", "b"])
    assert problems(report) == {}
    assert (report.info, report.recovered) == (2, 1)


def test_duplicate_side_effects_are_counted_not_failed() -> None:
    _, records = clean()
    effects = [
        {"id": "b", "v": 1, "phase": "effect"},
        {"id": "b", "v": 2, "phase": "effect"},
        {"id": "b", "v": 2, "phase": "committed", "stage": "done"},
    ]
    report = check(records, effects)
    assert problems(report) == {}
    assert (report.executed, report.duplicates, report.duplicate_executions) == (1, 1, 1)
    effects.append({"id": "b", "v": 1, "phase": "committed", "stage": "done"})
    assert problems(check(records, effects)) == {"C3 double commits": 1}


def test_a_rollback_erases_the_versions_it_undid() -> None:
    history = History()
    history.insert("a")
    copied = history.clock + 0.7
    history.claim("a", 1, now=2000, who="w0")  # acknowledged, then undone by the rollback
    restarted = history.clock + 1.5
    history.clock += 2
    history.claim("a", 1, now=9000, who="w1")  # the same version, handed out again
    history.commit("a", 1, who="w1", marker="r1")
    records = finished(history, ("r1", "a", 1))
    assert problems(check(records)) == {"C5 versions reused": 1}
    rollback = {
        "op": "rollback",
        "to": copied,
        "ti": restarted,
        "td": restarted,
        "type": "ok",
        "p": "nemesis",
    }
    report = check([*records, rollback])
    assert problems(report) == {}
    assert report.erased == 1
