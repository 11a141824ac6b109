"""The battery's history checker: C1-C9 of docs/reference/reliability-battery.md 3, in O(n log n).

No search is needed: every mutation names the versions it depends on, so each check is a
pass over the operations grouped by task ID (Porcupine's per-key partitioning, with each
key's history already ordered by its versions). The input is the records of
``history.py`` (every process's file plus one ``final`` record) and the side-effect log.

Definitions used below (ok/fail/info as in history.py):

- a *producer* of ``(id, v)`` is an ok operation whose reply showed task ``id`` at version
  ``v``: a claim, a modify's insert (v = 0) or change;
- a modify *names* ``(id, v)`` when it changes, deletes or depends on that version (a
  claim's finish deletes count as deletes);
- a *snapshot* is one atomic view of the store: a read (one script call) or the final state.

Checks:

- C1 lost: an ok insert whose task is neither in the final state nor named by any ok or
  info delete. Also counted here ("acked writes undone"): an ok delete whose task is still
  there at the end, and an ok claim or change whose version the final state is behind.
- C2 unexpected: a task seen in a claim, read or the final state that no insert (ok or
  info) ever named.
- C3 double commit: two ok modifies naming the same ``(id, v)``; two commit markers of one
  source and stage in the final state; two "committed" side effects of one task.
- C4 stale commit accepted: an ok modify naming ``(id, v)`` although some producer of
  ``(id, v')`` with ``v' > v`` had completed before the modify was invoked; or an ok modify
  by another claimant that completed while the claim that produced ``(id, v)`` still held
  its lease (within the lease measured from the claim's invocation, a lower bound of the
  lease's true end, so this never blames a commit made after the lease ran out, which
  docs/design.md 2.9 allows).
- C5 version reuse: two ok producers of the same ``(id, v)``.
- C6 lease exclusivity: an ok claim that took ``(id, v-1)`` (known from its producer) at a
  store time (the claim's ``modified_ms``) before that version's arrival ``at_ms``: the
  task was still leased (or not yet due) when it was handed out again.
- C7 atomic modify: a snapshot in which one modify is visible in part: one of its inserts
  is there while a version it changed or deleted is still current, or one insert is there
  and another, never touched afterwards, is not.
- C8 duplicates: tasks whose side effect ran more than once (reported, allowed under faults).
- C9 indeterminate: info operations (reported); ``recovered`` counts info modifies that
  did take effect.

A ``rollback`` record (the store restarted from an older copy of its data) erases the
operations that ran between the copy and the restart from the per-version checks (C3-C6):
the store hands their versions out again. What they had acknowledged and is gone is C1.

Commit markers: the workloads finish a task by inserting a result whose value is the JSON
``{"src": <source id>, "v": <version>, "stage": <name>, ...}``; ``Report.markers`` counts
them per source, which turns "committed exactly once" into a fact about the final state.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import json
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]
Key = tuple[str, int]

# How many examples of each violation a report keeps (counts are always complete).
EXAMPLES = 5


@dataclasses.dataclass
class Violations:
    """One check's count and a few examples."""

    count: int = 0
    examples: list[Any] = dataclasses.field(default_factory=list)

    def add(self, example: Any) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclasses.dataclass
class Report:
    """What the checker found. ``problems()`` lists every check that must be zero."""

    operations: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    inserted: int = 0
    claims_ok: int = 0
    commits_ok: int = 0
    commits_refused: int = 0
    lost: Violations = dataclasses.field(default_factory=Violations)
    acked_undone: Violations = dataclasses.field(default_factory=Violations)
    unexpected: Violations = dataclasses.field(default_factory=Violations)
    double_commits: Violations = dataclasses.field(default_factory=Violations)
    stale_accepted: Violations = dataclasses.field(default_factory=Violations)
    version_reused: Violations = dataclasses.field(default_factory=Violations)
    lease_overlaps: Violations = dataclasses.field(default_factory=Violations)
    leases_checked: int = 0
    partial_modifies: Violations = dataclasses.field(default_factory=Violations)
    snapshots: int = 0
    unfinished: Violations = dataclasses.field(default_factory=Violations)
    executed: int = 0
    duplicates: int = 0
    duplicate_executions: int = 0
    recovered: int = 0
    markers: int = 0
    erased: int = 0

    def problems(self) -> dict[str, Violations]:
        """Every check that found something although it must find nothing."""
        checks = {
            "C1 lost": self.lost,
            "C1 acked writes undone": self.acked_undone,
            "C2 unexpected": self.unexpected,
            "C3 double commits": self.double_commits,
            "C4 stale commits accepted": self.stale_accepted,
            "C5 versions reused": self.version_reused,
            "C6 lease overlaps": self.lease_overlaps,
            "C7 partial modifies": self.partial_modifies,
            "unfinished sources": self.unfinished,
        }
        return {name: found for name, found in checks.items() if found.count}

    def summary(self) -> str:
        return (
            f"ops {self.operations} (ok {self.ok}, fail {self.fail}, info {self.info}); "
            f"inserted {self.inserted}, claims {self.claims_ok}, commits {self.commits_ok} "
            f"(refused {self.commits_refused}); lost {self.lost.count}, acked undone "
            f"{self.acked_undone.count}, unexpected {self.unexpected.count}, double "
            f"{self.double_commits.count}, stale accepted {self.stale_accepted.count}, "
            f"reused {self.version_reused.count}, lease overlaps {self.lease_overlaps.count}/"
            f"{self.leases_checked}, partial {self.partial_modifies.count}/{self.snapshots} snapshots, "
            f"unfinished {self.unfinished.count}; executed {self.executed}, duplicates "
            f"{self.duplicates} ({self.duplicate_executions} extra runs), indeterminate {self.info} "
            f"(recovered {self.recovered}), markers {self.markers}, erased by rollbacks {self.erased}"
        )


def _named(record: Record) -> list[Key]:
    """The versions a mutation depends on: changes, deletes, depends, finish deletes.

    A version of None (a commit logged by a process that cannot see which version it named,
    such as the library's Worker, which renews before it commits) names the task only: it
    counts for C1 but takes no part in the per-version checks.
    """
    keys = [(i, v) for i, v, *_ in record.get("chg", ())]
    keys += [(i, v) for i, v in record.get("dels", ())]
    keys += [(i, v) for i, v in record.get("deps", ())]
    keys += [(i, v) for i, v in record.get("fin", ())]
    return [(i, v) for i, v in keys if v is not None]


def _deleted(record: Record) -> list[Key]:
    return [(i, v) for i, v in record.get("dels", ())] + [(i, v) for i, v in record.get("fin", ())]


def _marker(value: str) -> dict[str, Any] | None:
    if not value.startswith("{"):
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "src" in data else None


def check(
    records: Iterable[Record],
    effects: Iterable[Record] = (),
    *,
    sources: Iterable[str] = (),
    final_stage: str = "done",
) -> Report:
    """Checks a history.

    Args:
        records: Every history record, the ``final`` one included (exactly one).
        effects: The side-effect log records.
        sources: Tasks that must each end with exactly one ``final_stage`` marker (and be
            gone from the store); empty to skip the end-to-end check.
        final_stage: The marker stage that finishes a source.
    """
    report = Report()
    records = list(records)
    finals = [r for r in records if r["op"] == "final"]
    if len(finals) != 1:
        raise ValueError(f"a history needs exactly one final record, got {len(finals)}")
    final = {i: (v, q, value) for i, v, q, value in finals[0]["seen"]}
    # A rollback (the store restarted from an older copy of its data, ``to`` = when that copy
    # was taken, ``ti`` = the restart): the operations that ran entirely in between are
    # erased. Their acknowledgements still count (what they wrote and is gone is reported
    # under C1), but the versions they produced or named no longer exist, and the store
    # hands those versions out again: they take no part in the per-version checks.
    rollbacks = [(r["to"], r["ti"]) for r in records if r["op"] == "rollback"]
    ops = [r for r in records if r["op"] not in ("final", "rollback")]
    erased = {id(r) for r in ops if any(to < r["ti"] and r["td"] < at for to, at in rollbacks)}
    live = [r for r in ops if id(r) not in erased]
    report.erased = len(erased)

    attempted_inserts: set[str] = set()
    ok_inserts: dict[str, Record] = {}
    deleted_any: set[str] = set()  # named by an ok or info delete
    producers: dict[Key, list[Record]] = collections.defaultdict(list)
    produced_at: dict[Key, int] = {}
    by_id_done: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    touched_after_insert: set[str] = set()
    batches: dict[str, list[Record]] = collections.defaultdict(list)

    for record in ops:
        report.operations += 1
        kind = record["type"]
        setattr(report, kind, getattr(report, kind) + 1)
        for task_id, _queue in record.get("ins", ()):
            if kind != "fail":
                attempted_inserts.add(task_id)
        for task_id, _version in _named(record):
            touched_after_insert.add(task_id)
        if record["op"] == "claim" and record.get("task"):
            touched_after_insert.add(record["task"][0])
        if kind != "fail" and id(record) not in erased:
            for task_id, _version in _deleted(record):
                deleted_any.add(task_id)
        if record["op"] == "modify":
            batches[record.get("batch", id(record))].append(record)
            if kind == "fail" and "DependencyError" in record.get("err", ""):
                report.commits_refused += 1
        if kind != "ok":
            continue
        if record["op"] == "modify":
            report.commits_ok += 1
            for task_id, _queue in record.get("ins", ()):
                ok_inserts[task_id] = record
            report.inserted += len(record.get("ins", ()))
        if id(record) in erased:
            continue
        if record["op"] == "modify":
            for task_id, version, at_ms, _modified, _claimant in record.get("out", ()):
                producers[(task_id, version)].append(record)
                produced_at.setdefault((task_id, version), at_ms)
                by_id_done[task_id].append((record["td"], version))
        elif record["op"] == "claim" and record.get("task"):
            report.claims_ok += 1
            task_id, version, _queue, at_ms, _modified, _claimant = record["task"]
            producers[(task_id, version)].append(record)
            produced_at.setdefault((task_id, version), at_ms)
            by_id_done[task_id].append((record["td"], version))

    # C5: one version handed out twice.
    for key, found in producers.items():
        if len(found) > 1:
            report.version_reused.add({"task": key, "by": [(r["p"], r["op"]) for r in found]})

    # C4 and C3 (by version): ok mutations naming a version.
    done_sorted: dict[str, tuple[list[float], list[int]]] = {}
    for task_id, entries in by_id_done.items():
        entries.sort()
        times, prefix_max, highest = [], [], -1
        for done, version in entries:
            highest = max(highest, version)
            times.append(done)
            prefix_max.append(highest)
        done_sorted[task_id] = (times, prefix_max)
    named_ok: dict[Key, list[Record]] = collections.defaultdict(list)
    for record in live:
        if record["type"] != "ok" or record["op"] not in ("modify", "claim"):
            continue
        for key in _named(record):
            if key in [(i, v) for i, v in record.get("deps", ())]:
                continue  # a depend does not change the task: two may name one version
            named_ok[key].append(record)
        for task_id, version in _named(record):
            times, prefix_max = done_sorted.get(task_id, ([], []))
            before = bisect.bisect_left(times, record["ti"])
            if before and prefix_max[before - 1] > version:
                report.stale_accepted.add(
                    {"task": (task_id, version), "by": record["p"], "newer": prefix_max[before - 1]}
                )
    claims_of: dict[Key, Record] = {}
    for record in live:
        if record["type"] == "ok" and record["op"] == "claim" and record.get("task"):
            claims_of.setdefault((record["task"][0], record["task"][1]), record)
    for key, found in named_ok.items():
        claim = claims_of.get(key)
        if claim is None:
            continue
        _id, _version, _queue, at_ms, modified_ms, holder = claim["task"]
        lease_s = (at_ms - modified_ms) / 1000
        for record in found:
            who = record.get("claimant")
            if who is not None and who != holder and record["td"] < claim["ti"] + lease_s:
                report.stale_accepted.add({"task": key, "holder": holder, "committed_by": who})
    for key, found in named_ok.items():
        if len(found) > 1:
            report.double_commits.add({"task": key, "by": [r["p"] for r in found]})

    # C6: a claim must find the version it took due.
    for record in live:
        if record["type"] != "ok" or record["op"] != "claim" or not record.get("task"):
            continue
        task_id, version, _queue, _at, modified_ms, _claimant = record["task"]
        previous_at = produced_at.get((task_id, version - 1))
        if previous_at is None:
            continue  # the previous version came from an operation whose reply we lack
        report.leases_checked += 1
        if modified_ms < previous_at:
            report.lease_overlaps.add(
                {"task": (task_id, version), "claimed_at": modified_ms, "due": previous_at, "by": record["p"]}
            )

    # C1 and C2.
    for task_id, record in ok_inserts.items():
        if task_id not in final and task_id not in deleted_any:
            report.lost.add({"task": task_id, "inserted_by": record["p"], "batch": record.get("batch")})
    for record in ops:
        if record["type"] != "ok":
            continue
        for task_id, version in _deleted(record):
            if task_id in final:
                report.acked_undone.add({"deleted": (task_id, version), "still": final[task_id][0]})
        outs = [(o[0], o[1]) for o in record.get("out", ())]
        if record["op"] == "claim" and record.get("task"):
            outs.append((record["task"][0], record["task"][1]))
        for task_id, version in outs:
            if task_id in final and final[task_id][0] < version:
                report.acked_undone.add({"acked": (task_id, version), "final": final[task_id][0]})
    seen_ids: set[str] = set(final)
    for record in ops:
        if record["type"] == "ok" and record["op"] == "claim" and record.get("task"):
            seen_ids.add(record["task"][0])
        if record["op"] == "read" and record["type"] == "ok":
            seen_ids.update(s[0] for s in record["seen"])
    for task_id in seen_ids - attempted_inserts:
        report.unexpected.add(task_id)

    # C7: snapshots (reads and the final state) against every modify's effects.
    # (IDs asked or None for everything, version of each ID present)
    snapshots: list[tuple[set[str] | None, dict[str, int]]] = [
        (set(r["ids"]), {s[0]: s[1] for s in r["seen"]})
        for r in ops
        if r["op"] == "read" and r["type"] == "ok"
    ]
    snapshots.append((None, {task_id: entry[0] for task_id, entry in final.items()}))
    report.snapshots = len(snapshots)
    effects_of: dict[str, tuple[list[str], list[Key]]] = {}
    batches_of_id: dict[str, set[str]] = collections.defaultdict(set)
    for batch, attempts in batches.items():
        first = attempts[0]
        inserted = [i for i, _ in first.get("ins", ())]
        named = [(i, v) for i, v, *_ in first.get("chg", ())] + [(i, v) for i, v in first.get("dels", ())]
        named = [(i, v) for i, v in named if v is not None]
        if len(inserted) + len(named) < 2 or not inserted:
            continue  # one effect (or no insert to witness it) cannot be seen in part
        effects_of[batch] = (inserted, named)
        for task_id in inserted:
            batches_of_id[task_id].add(batch)
    for asked, snapshot in snapshots:
        candidates = set().union(*(batches_of_id.get(i, set()) for i in snapshot))
        for batch in candidates:
            inserted, named = effects_of[batch]
            present = [i for i in inserted if i in snapshot]
            if not present:
                continue
            stale = [(i, v) for i, v in named if snapshot.get(i) == v]
            missing = [
                i
                for i in inserted
                if i not in snapshot and (asked is None or i in asked) and i not in touched_after_insert
            ]
            if stale or missing:
                report.partial_modifies.add(
                    {"batch": batch, "present": present, "old": stale, "missing": missing}
                )

    # C9 detail: unacknowledged modifies that took effect anyway.
    for attempts in batches.values():
        if any(a["type"] == "ok" for a in attempts) or not any(a["type"] == "info" for a in attempts):
            continue
        inserted = [i for i, _ in attempts[0].get("ins", ())]
        if any(i in final for i in inserted):
            report.recovered += 1

    # C8 and the committed half of C3, from the side-effect log.
    runs: collections.Counter[str] = collections.Counter()
    commits: collections.Counter[tuple[str, str]] = collections.Counter()
    for effect in effects:
        if effect["phase"] == "effect":
            runs[effect["id"]] += 1
        elif effect["phase"] == "committed":
            if any(to < effect.get("t", 0) < at for to, at in rollbacks):
                continue  # a commit the rollback undid: the work is done again (C8), not twice
            commits[(effect["id"], effect.get("stage", ""))] += 1
    report.executed = len(runs)
    report.duplicates = sum(1 for n in runs.values() if n > 1)
    report.duplicate_executions = sum(n - 1 for n in runs.values() if n > 1)
    for (task_id, stage), count in commits.items():
        if count > 1:
            report.double_commits.add({"task": task_id, "stage": stage, "committed_effects": count})

    # End to end: exactly one finishing marker per source, and sources gone.
    markers: collections.Counter[tuple[str, str]] = collections.Counter()
    for _task_id, (_version, _queue, value) in final.items():
        marker = _marker(value)
        if marker is not None:
            report.markers += 1
            markers[(marker["src"], marker.get("stage", final_stage))] += 1
    for (source, stage), count in markers.items():
        if count > 1:
            report.double_commits.add({"source": source, "stage": stage, "markers": count})
    for source in sources:
        if markers[(source, final_stage)] == 0:
            if source in final:
                report.unfinished.add(source)
            else:
                report.lost.add({"source": source, "no": final_stage})
    return report
