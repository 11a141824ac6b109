"""The checker of the battery's document workloads (doc_workload.py), in the style of checker.py.

Input: the history records of every process (``dclaim``, ``dread``, ``dmodify``, ``receipt``
and the task ``claim`` records), one ``dfinal`` record (the store's docs, receipts and done
tasks at the end).

Definitions, as in checker.py: a *producer* of doc version ``(id, v)`` is an ok ``dclaim`` or
``dmodify`` (or the seed) whose reply showed doc ``id`` at version ``v``; a ``dmodify``
*names* ``(id, v)`` for each doc it changes.

Checks (every count must be zero):

- D1 lost: an ok commit whose receipt is not in the final state, or an ok producer whose
  version the final state is behind. A store that loses acknowledged writes (a kill -9 with
  ``appendfsync everysec`` may) then hands their versions out again, so D3-D7 may follow
  from D1: test_battery_store_crash.py allows them there only together with D1.
- D2 half applied: in a state of the store (the final one, or one a crash left behind), a
  receipt without its done task or a done task without its receipt, or a doc whose counter
  is not the number of receipts naming it (the doc change of a commit is there without the
  rest of it, or the other way round). ``consistency`` checks one state alone.
- D3 double commit: two ok commits naming the same ``(id, v)``.
- D4 stale commit accepted: an ok commit naming ``(id, v)`` although a producer of a newer
  version of that doc had completed before the commit was invoked (every ``stale`` replay is
  such a commit), or an ok commit by one claimant that completed while another claimant's
  claim of ``(id, v)`` still held its lease (measured from the claim's invocation).
- D5 version reuse: two ok producers of one ``(id, v)``.
- D6 claim overlap: an ok ``dclaim`` that took ``(id, v)`` (from ``v - 1``) at a store time
  before the end of the lease another claimant held on ``(id, v - 1)``.
- D7 lost update: two ok commits writing the same counter value to one doc (both built on
  the same counter: one increment overwrote the other), or a commit whose ``n_read`` is not
  the counter its producer showed at that version (or a listing shows another counter at that
  version than its producer did), or a final counter that is not the number
  of commits applied to the doc, or a final version that is not the number of claims and
  changes applied to it (when no unanswered call touched it).
- D8 refused but applied: a receipt of a batch whose every attempt was refused.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from .checker import Violations

Record = dict[str, Any]
Key = tuple[str, int]


@dataclasses.dataclass
class DocReport:
    operations: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    claims_ok: int = 0
    claims_refused: int = 0
    commits_ok: int = 0
    changes_ok: int = 0  # doc changes in acknowledged commits
    commits_refused: int = 0
    stale_attempts: int = 0
    optimistic_ok: int = 0
    recovered: int = 0
    lost: Violations = dataclasses.field(default_factory=Violations)
    half_applied: Violations = dataclasses.field(default_factory=Violations)
    double_commits: Violations = dataclasses.field(default_factory=Violations)
    stale_accepted: Violations = dataclasses.field(default_factory=Violations)
    version_reused: Violations = dataclasses.field(default_factory=Violations)
    claim_overlaps: Violations = dataclasses.field(default_factory=Violations)
    claims_checked: int = 0
    lost_updates: Violations = dataclasses.field(default_factory=Violations)
    refused_applied: Violations = dataclasses.field(default_factory=Violations)
    receipts: int = 0
    counter_total: int = 0

    def problems(self) -> dict[str, Violations]:
        checks = {
            "D1 lost": self.lost,
            "D2 half applied": self.half_applied,
            "D3 double commits": self.double_commits,
            "D4 stale commits accepted": self.stale_accepted,
            "D5 versions reused": self.version_reused,
            "D6 claim overlaps": self.claim_overlaps,
            "D7 lost updates": self.lost_updates,
            "D8 refused but applied": self.refused_applied,
        }
        return {name: found for name, found in checks.items() if found.count}

    def summary(self) -> str:
        return (
            f"ops {self.operations} (ok {self.ok}, fail {self.fail}, info {self.info}); doc claims "
            f"{self.claims_ok} (refused {self.claims_refused}), commits {self.commits_ok} (refused "
            f"{self.commits_refused}; doc changes {self.changes_ok}; stale replays {self.stale_attempts}, "
            f"optimistic accepted "
            f"{self.optimistic_ok}, recovered {self.recovered}); receipts {self.receipts}, counters "
            f"{self.counter_total}; lost {self.lost.count}, half applied {self.half_applied.count}, "
            f"double {self.double_commits.count}, stale accepted {self.stale_accepted.count}, reused "
            f"{self.version_reused.count}, claim overlaps {self.claim_overlaps.count}/"
            f"{self.claims_checked}, lost updates {self.lost_updates.count}, refused but applied "
            f"{self.refused_applied.count}"
        )


def final_state(docs: Iterable[Any], receipts: Iterable[Any], tasks: Iterable[Any]) -> Record:
    """The ``dfinal`` record of a state: entroq_redis Docs (the counted ones and the receipts)
    and the tasks of the done queue."""
    return {
        "p": "final",
        "op": "dfinal",
        "type": "ok",
        "docs": [[d.id, d.version, d.claimant, d.at_ms, json.loads(d.content)["n"]] for d in docs],
        "receipts": [[d.id, json.loads(d.content)] for d in receipts],
        "tasks": [[t.id, t.version, t.value.decode()] for t in tasks],
    }


def consistency(state: Record, report: DocReport | None = None) -> DocReport:
    """D2 on one state of the store: every commit there in full or not at all."""
    report = report if report is not None else DocReport()
    receipts = {batch: content for batch, content in state["receipts"]}
    done = {value: task_id for task_id, _version, value in state["tasks"]}
    report.receipts = len(receipts)
    for batch, content in receipts.items():
        if batch not in done:
            report.half_applied.add({"receipt without its task": batch, "task": content["task"]})
    for batch, task_id in done.items():
        if batch not in receipts:
            report.half_applied.add({"task without its receipt": task_id, "batch": batch})
    named: collections.Counter[str] = collections.Counter()
    for content in receipts.values():
        for doc_id, _version in content["docs"]:
            named[doc_id] += 1
    report.counter_total = 0
    for doc_id, _version, _claimant, _at, n in state["docs"]:
        report.counter_total += n
        if n != named[doc_id]:
            report.half_applied.add({"doc": doc_id, "counter": n, "receipts naming it": named[doc_id]})
    return report


def check(records: Iterable[Record]) -> DocReport:
    """Checks a doc workload's history (the module doc) and its ``dfinal`` record."""
    report = DocReport()
    records = list(records)
    finals = [r for r in records if r["op"] == "dfinal"]
    if len(finals) != 1:
        raise ValueError(f"a doc history needs exactly one dfinal record, got {len(finals)}")
    final = finals[0]
    ops = [r for r in records if r["op"] in ("dseed", "dclaim", "dmodify", "dread", "receipt", "claim")]
    final_docs = {doc_id: (version, n) for doc_id, version, _c, _at, n in final["docs"]}
    final_receipts = {batch: content for batch, content in final["receipts"]}

    producers: dict[Key, list[Record]] = collections.defaultdict(list)
    counter_at: dict[Key, int] = {}
    lease_of: dict[Key, tuple[int, str]] = {}  # (id, v) -> (at_ms, claimant) as produced
    done_by_doc: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    uncertain_docs: set[str] = set()
    batches: dict[str, list[Record]] = collections.defaultdict(list)
    applied: collections.Counter[str] = collections.Counter()  # doc -> claims + changes acknowledged

    for record in ops:
        report.operations += 1
        kind = record["type"]
        setattr(report, kind, getattr(report, kind) + 1)
        if record["op"] == "dmodify":
            batches[record["batch"]].append(record)
            report.stale_attempts += record.get("how") == "stale"
            if kind == "fail":
                report.commits_refused += 1
            if kind == "info":
                uncertain_docs.update(i for i, _v, _n in record["dchg"])
        if record["op"] == "dclaim":
            if kind == "fail":
                report.claims_refused += 1
            if kind == "info":
                # Which docs an unanswered key claim took is unknown: every doc is suspect.
                uncertain_docs.add("*")
        if kind != "ok" or record["op"] not in ("dseed", "dclaim", "dmodify"):
            continue
        if record["op"] == "dclaim":
            report.claims_ok += 1
        elif record["op"] == "dmodify":
            report.commits_ok += 1
            report.changes_ok += len(record["dchg"])
            report.optimistic_ok += record.get("how") == "optimistic"
        for doc_id, version, at_ms, _modified, claimant, n in record.get("out", ()):
            producers[(doc_id, version)].append(record)
            counter_at.setdefault((doc_id, version), n)
            lease_of.setdefault((doc_id, version), (at_ms, claimant))
            done_by_doc[doc_id].append((record["td"], version))
            if record["op"] != "dseed":
                applied[doc_id] += 1

    # D5
    for key, found in producers.items():
        if len(found) > 1:
            report.version_reused.add({"doc": key, "by": [(r["p"], r["op"]) for r in found]})

    # D4 (by version) and D3, D7 (per commit)
    newest_before: dict[str, tuple[list[float], list[int]]] = {}
    for doc_id, entries in done_by_doc.items():
        entries.sort()
        times, highest, top = [], [], -1
        for done, version in entries:
            top = max(top, version)
            times.append(done)
            highest.append(top)
        newest_before[doc_id] = (times, highest)
    named_ok: dict[Key, list[Record]] = collections.defaultdict(list)
    written: dict[tuple[str, int], list[Record]] = collections.defaultdict(list)
    for record in ops:
        if record["op"] != "dmodify" or record["type"] != "ok":
            continue
        if record.get("how") == "stale":
            report.stale_accepted.add({"stale replay accepted": record["batch"], "by": record["p"]})
        for doc_id, version, n_read in record["dchg"]:
            named_ok[(doc_id, version)].append(record)
            written[(doc_id, n_read + 1)].append(record)
            seen = counter_at.get((doc_id, version))
            if seen is not None and seen != n_read:
                report.lost_updates.add({"doc": (doc_id, version), "read": n_read, "store showed": seen})
            times, highest = newest_before.get(doc_id, ([], []))
            before = bisect.bisect_left(times, record["ti"])
            if before and highest[before - 1] > version:
                report.stale_accepted.add(
                    {"doc": (doc_id, version), "by": record["p"], "newer": highest[before - 1]}
                )
    claims_of: dict[Key, Record] = {}
    for record in ops:
        if record["op"] == "dclaim" and record["type"] == "ok":
            for doc_id, version, *_ in record["out"]:
                claims_of.setdefault((doc_id, version), record)
    for key, found in named_ok.items():
        claim = claims_of.get(key)
        if claim is not None:
            at_ms, modified_ms, holder = next(o[2:5] for o in claim["out"] if o[0] == key[0])
            lease_s = (at_ms - modified_ms) / 1000
            for record in found:
                if record["claimant"] != holder and record["td"] < claim["ti"] + lease_s:
                    report.stale_accepted.add(
                        {"doc": key, "holder": holder, "committed_by": record["claimant"]}
                    )
        if len(found) > 1:
            report.double_commits.add({"doc": key, "by": [r["batch"] for r in found]})
    for record in ops:
        if record["op"] == "dread" and record["type"] == "ok":
            for doc_id, version, n in record["seen"]:
                shown = counter_at.get((doc_id, version))
                if shown is not None and shown != n:
                    report.lost_updates.add({"doc": (doc_id, version), "listed": n, "store showed": shown})
    for (doc_id, n), found in written.items():
        if len(found) > 1:
            report.lost_updates.add(
                {"doc": doc_id, "counter written twice": n, "by": [r["batch"] for r in found]}
            )

    # D6
    for record in ops:
        if record["op"] != "dclaim" or record["type"] != "ok":
            continue
        for doc_id, version, _at, modified_ms, claimant, _n in record["out"]:
            previous = lease_of.get((doc_id, version - 1))
            if previous is None:
                continue
            report.claims_checked += 1
            at_ms, holder = previous
            if holder and holder != claimant and modified_ms < at_ms:
                report.claim_overlaps.add(
                    {"doc": (doc_id, version), "claimed_at": modified_ms, "held_until": at_ms, "by": holder}
                )

    # D1, D7 (final counters and versions), D8
    for batch, attempts in batches.items():
        acknowledged = [a for a in attempts if a["type"] == "ok"]
        if acknowledged:
            if batch not in final_receipts:
                report.lost.add(
                    {"acknowledged commit without its receipt": batch, "td": acknowledged[0]["td"]}
                )
        elif batch in final_receipts:
            if any(a["type"] == "info" for a in attempts):
                report.recovered += 1
            else:
                report.refused_applied.add({"batch": batch, "how": [a.get("how") for a in attempts]})
    for (doc_id, version), found in producers.items():
        if doc_id in final_docs and final_docs[doc_id][0] < version:
            report.lost.add({"doc": (doc_id, version), "final": final_docs[doc_id][0], "td": found[0]["td"]})
    # The commits that took effect, by the history: acknowledged, or unanswered and then found.
    accepted: collections.Counter[str] = collections.Counter()
    for batch, attempts in batches.items():
        if any(a["type"] == "ok" for a in attempts) or (
            batch in final_receipts and any(a["type"] == "info" for a in attempts)
        ):
            for doc_id, _version, _n in attempts[0]["dchg"]:
                accepted[doc_id] += 1
    for doc_id, (version, n) in final_docs.items():
        if n != accepted[doc_id]:
            report.lost_updates.add({"doc": doc_id, "final counter": n, "commits accepted": accepted[doc_id]})
        certain = doc_id not in uncertain_docs and "*" not in uncertain_docs
        if certain and version != applied[doc_id]:
            report.lost_updates.add(
                {"doc": doc_id, "final version": version, "claims + changes": applied[doc_id]}
            )
    consistency(final, report)
    return report
