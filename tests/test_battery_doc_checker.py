"""The document checker finds each anomaly it claims to find (synthetic histories).

As test_battery_checker.py for tasks: a small hand-written history of doc claims and
commits (doc_workload.py's record format) with exactly one anomaly, and exactly that check
must fire; the clean history must pass.
"""

from __future__ import annotations

from typing import Any

from battery.doc_checker import DocReport, check, consistency

Record = dict[str, Any]


class DocHistory:
    """Records in doc_workload.py's format on a fake clock (1 s per operation), and the state
    they leave (docs with counters, receipts, done tasks), kept as a correct store would."""

    def __init__(self, *docs: str) -> None:
        self.records: list[Record] = []
        self.clock = 0.0
        self.docs = {d: [0, 0] for d in docs}  # id -> [version, counter]
        self.receipts: dict[str, Any] = {}
        self.tasks: dict[str, str] = {}
        self._add(op="dseed", out=[[d, 0, 0, 0, "", 0] for d in docs])

    def _add(self, **record: Any) -> Record:
        self.clock += 1
        record.setdefault("type", "ok")
        record.setdefault("p", "w0")
        record.update(ti=self.clock, td=self.clock + 0.5)
        self.records.append(record)
        return record

    def claim(self, *ids: str, who: str = "w0", now: int = 1000, lease_ms: int = 100) -> list[list[Any]]:
        out: list[list[Any]] = []
        for doc_id in ids:
            self.docs[doc_id][0] += 1
            version, n = self.docs[doc_id]
            out.append([doc_id, version, now + lease_ms, now, who, n])
        self._add(op="dclaim", ns="acct", key="k", claimant=who, out=out, p=who)
        return [[o[0], o[1], o[5]] for o in out]

    def commit(
        self,
        held: list[list[Any]],
        *,
        who: str = "w0",
        type: str = "ok",
        kind: str = "claimed",
        apply: bool | None = None,
        batch: str | None = None,
    ) -> Record:
        """A commit of ``held`` ([id, version, counter read]); ``apply`` (default: when ok)
        makes the state change as the store would have."""
        batch = batch or f"b{len(self.records)}"
        out = []
        if apply if apply is not None else type == "ok":
            for doc_id, _version, n_read in held:
                self.docs[doc_id][0] += 1
                self.docs[doc_id][1] = n_read + 1
                out.append([doc_id, self.docs[doc_id][0], 0, 0, "", n_read + 1])
            self.receipts[batch] = {"task": "", "docs": [[i, v] for i, v, _ in held], "key": "k"}
            self.tasks["m-" + batch] = batch
        err = {"ok": "", "fail": "DependencyError: refused", "info": "StoreUnavailableError: reset"}[type]
        return self._add(
            op="dmodify",
            batch=batch,
            claimant=who,
            how=kind,
            dchg=held,
            task=None,
            out=out if type == "ok" else [],
            type=type,
            err=err,
            p=who,
        )

    def final(self) -> Record:
        return {
            "op": "dfinal",
            "p": "final",
            "type": "ok",
            "docs": [[i, v, "", 0, n] for i, (v, n) in self.docs.items()],
            "receipts": list(self.receipts.items()),
            "tasks": [[task_id, 0, batch] for task_id, batch in self.tasks.items()],
        }

    def check(self) -> DocReport:
        return check([*self.records, self.final()])


def fired(report: DocReport) -> set[str]:
    return set(report.problems())


def test_a_clean_history_passes() -> None:
    h = DocHistory("a", "b")
    held = h.claim("a", "b")
    h.commit(held)
    h.commit(held, type="fail", kind="stale")  # a replay, refused
    held = h.claim("a", "b", who="w1", now=5000)
    h.commit(held, who="w1")
    report = h.check()
    assert fired(report) == set(), report.problems()
    assert (report.commits_ok, report.changes_ok, report.counter_total, report.stale_attempts) == (2, 4, 4, 1)


def test_an_accepted_stale_replay_is_d4() -> None:
    h = DocHistory("a")
    held = h.claim("a")
    h.commit(held)
    h.commit(held, kind="stale", apply=False)  # the store said ok to a replay
    assert "D4 stale commits accepted" in fired(h.check())


def test_a_commit_at_a_version_someone_else_claimed_since_is_d4() -> None:
    h = DocHistory("a")
    old = h.claim("a", who="w0", now=1000, lease_ms=10)
    h.claim("a", who="w1", now=2000)
    h.commit(old, who="w0", apply=False)  # accepted although w1 holds a newer version
    assert "D4 stale commits accepted" in fired(h.check())


def test_another_claimants_commit_inside_the_lease_is_d4() -> None:
    h = DocHistory("a")
    held = h.claim("a", who="w0", now=1000, lease_ms=60_000)
    h.commit(held, who="w1", kind="optimistic")  # w1 read the version and changed it meanwhile
    assert "D4 stale commits accepted" in fired(h.check())


def test_two_commits_on_one_counter_are_a_lost_update() -> None:
    h = DocHistory("a")
    held = h.claim("a")
    h.commit(held)
    # A second commit built on the same counter, named at the new version: the store took it,
    # so the first increment is lost (counter 1 written twice).
    h.commit([["a", 2, 0]], who="w1", kind="optimistic")
    assert "D7 lost updates" in fired(h.check())


def test_a_counter_behind_the_accepted_changes_is_a_lost_update() -> None:
    h = DocHistory("a")
    h.commit(h.claim("a"))
    h.commit(h.claim("a"))
    h.docs["a"][1] = 1  # the store kept one increment of two
    problems = fired(h.check())
    assert "D7 lost updates" in problems and "D2 half applied" in problems


def test_a_version_handed_out_twice_is_d5() -> None:
    h = DocHistory("a")
    h.claim("a", who="w0")
    h.docs["a"][0] -= 1
    h.claim("a", who="w1", now=1001)
    # Both took version 1 from the seed; the final version is one behind the two claims.
    assert fired(h.check()) == {"D5 versions reused", "D7 lost updates"}


def test_a_claim_inside_another_claimants_lease_is_d6() -> None:
    h = DocHistory("a")
    h.claim("a", who="w0", now=1000, lease_ms=500)
    h.claim("a", who="w1", now=1200)  # the store let w1 in 300 ms early
    assert fired(h.check()) == {"D6 claim overlaps"}
    h = DocHistory("a")
    h.claim("a", who="w0", now=1000, lease_ms=500)
    h.claim("a", who="w0", now=1200)  # re-claiming one's own docs is allowed
    assert fired(h.check()) == set()


def test_a_receipt_without_its_task_is_half_applied() -> None:
    h = DocHistory("a")
    record = h.commit(h.claim("a"))
    del h.tasks["m-" + record["batch"]]
    assert fired(h.check()) == {"D2 half applied"}
    assert consistency(h.final()).half_applied.count == 1


def test_a_doc_change_without_its_receipt_is_half_applied() -> None:
    h = DocHistory("a")
    h.claim("a")
    h.docs["a"][1] += 1  # the counter moved, nothing else of the commit is there
    assert consistency(h.final()).half_applied.count == 1


def test_an_acknowledged_commit_missing_at_the_end_is_lost() -> None:
    h = DocHistory("a")
    record = h.commit(h.claim("a"))
    h.receipts.pop(record["batch"])
    h.tasks.pop("m-" + record["batch"])
    h.docs["a"][1] = 0
    assert "D1 lost" in fired(h.check())


def test_a_refused_commit_that_took_effect_is_d8_and_an_unanswered_one_is_recovered() -> None:
    h = DocHistory("a")
    h.commit(h.claim("a"), type="fail", apply=True)
    assert "D8 refused but applied" in fired(h.check())
    h = DocHistory("a")
    held = h.claim("a")
    h.commit(held, type="info", apply=True, batch="x")
    h.commit(held, type="fail", apply=False, batch="x")  # the retry, refused: it had landed
    report = h.check()
    assert report.recovered == 1 and fired(report) == set(), report.problems()


def test_a_listing_showing_another_counter_at_a_version_is_d7() -> None:
    h = DocHistory("a")
    h.commit(h.claim("a"))  # version 2 holds counter 1
    h._add(op="dread", ns="acct", key="k", seen=[["a", 2, 1]])
    assert fired(h.check()) == set()
    h._add(op="dread", ns="acct", key="k", seen=[["a", 2, 0]])
    assert fired(h.check()) == {"D7 lost updates"}
