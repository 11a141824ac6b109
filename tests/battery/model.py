"""A pure-Python model of EntroQ's semantics as this project defines them (battery row j).

Written from README "Semantics" and lua/README.md sections 5 and 6, not from the scripts:

- every task has a version; a claim or a change moves it by one; inserts start at 0;
- claim: any task of the named queues with ``at <= now`` may be taken; the claimed task gets
  ``version + 1``, ``claims + 1``, ``claimant`` = the claimer, ``at = now + duration``;
- modify is all or nothing; it fails when an insert's ID exists (INSERT collision), a change,
  delete or depend names a missing task or another version (a delete or depend naming a queue
  the task is not in counts as missing), or a change or delete touches a task held by another
  claimant (``at > now``, claimant non-empty and not the modifier: CLAIM); depends never check
  the claimant;
- applied: deletes, then changes (version + 1; queue, value, attempt, err unless a lease
  change; claims 0 for reset_claims; claimant = the modifier if the new ``at > now``, else
  empty), then inserts (version 0, claims 0, claimant = the inserter);
- queue stats: available ``at <= now``; claimed ``at > now`` with claims > 0 and a claimant;
  future the rest; max_claims exact.

Times the model cannot know to the millisecond (the store's ``now`` during a call) are taken
from the store's reply after checking that they lie between two readings of the store's clock
taken around the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence


@dataclasses.dataclass
class ModelTask:
    id: str
    queue: str
    version: int
    at: int
    claimant: str
    value: bytes
    created: int
    modified: int
    claims: int
    attempt: int
    err: str

    def fields(self) -> tuple[object, ...]:
        return dataclasses.astuple(self)


@dataclasses.dataclass(frozen=True)
class Insert:
    queue: str
    id: str | None
    delay_ms: int
    value: bytes
    attempt: int = 0
    err: str = ""


@dataclasses.dataclass(frozen=True)
class Change:
    id: str
    version: int
    queue: str
    mode: str  # full | lease | reset_claims
    delay_ms: int
    value: bytes = b""
    attempt: int = 0
    err: str = ""


@dataclasses.dataclass(frozen=True)
class Ref:
    id: str
    version: int
    queue: str = ""


Failure = tuple[str, str, str]  # kind, reason, id


@dataclasses.dataclass
class Model:
    tasks: dict[str, ModelTask] = dataclasses.field(default_factory=dict)

    def held_by_other(self, task: ModelTask, claimant: str, now: int) -> bool:
        return task.at > now and task.claimant != "" and task.claimant != claimant

    def claimable(self, queues: Iterable[str], now: int) -> list[ModelTask]:
        wanted = set(queues)
        return [t for t in self.tasks.values() if t.queue in wanted and t.at <= now]

    def failures(
        self,
        claimant: str,
        now: int,
        inserts: Sequence[Insert],
        changes: Sequence[Change],
        deletes: Sequence[Ref],
        depends: Sequence[Ref],
    ) -> list[Failure]:
        found: list[Failure] = []
        for item in inserts:
            if item.id is not None and item.id in self.tasks:
                found.append(("INSERT", "collision", item.id))
        for change in changes:
            task = self.tasks.get(change.id)
            if task is None:
                found.append(("CHANGE", "missing", change.id))
            elif task.version != change.version:
                found.append(("CHANGE", "mismatch", change.id))
            elif self.held_by_other(task, claimant, now):
                found.append(("CLAIM", "claimed", change.id))
        for kind, refs in (("DELETE", deletes), ("DEPEND", depends)):
            for ref in refs:
                task = self.tasks.get(ref.id)
                if task is None or (ref.queue and ref.queue != task.queue):
                    found.append((kind, "missing", ref.id))
                elif task.version != ref.version:
                    found.append((kind, "mismatch", ref.id))
                elif kind == "DELETE" and self.held_by_other(task, claimant, now):
                    found.append(("CLAIM", "claimed", ref.id))
        return found

    def stats(self, now: int) -> dict[str, tuple[int, int, int, int, int]]:
        """queue -> (num_tasks, num_available, num_claimed, num_future, max_claims)."""
        result: dict[str, tuple[int, int, int, int, int]] = {}
        for queue in sorted({t.queue for t in self.tasks.values()}):
            tasks = [t for t in self.tasks.values() if t.queue == queue]
            available = sum(t.at <= now for t in tasks)
            claimed = sum(t.at > now and t.claims > 0 and t.claimant != "" for t in tasks)
            result[queue] = (
                len(tasks),
                available,
                claimed,
                len(tasks) - available - claimed,
                max(t.claims for t in tasks),
            )
        return result
