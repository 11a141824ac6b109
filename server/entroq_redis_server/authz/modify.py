"""Authorizing a modify (and a claim's ``finish``) on the queues the tasks are really in. I/O free.

EntroQ authorizes a change on ``old_id.queue``: CHANGE when it equals the new queue, else
DELETE there plus INSERT in the new queue. But EntroQ's clients send ``old_id.queue`` empty,
as the source, or as the destination, and the store never checks it for a change (lua
README: informational only). Trusting it would let a caller move a task out of a queue it
may not touch by naming a queue it may. So the service first looks the tasks up
(``plan_lookups``), authorizes on the queue each task is in (``plan_modify``), and makes the
store itself re-check that queue inside the modify, atomically, with a *guard*: a depend on
``(id, version, source queue)`` added to the request. A depend whose queue is not the task's
fails the whole modify, so:

- if the task moved (or was deleted and re-created elsewhere) after the lookup, the guard
  fails and nothing is written, whatever the versions say;
- if the lookup found the task at another version than the change names, the change fails
  anyway (version mismatch) and the guard with it;
- if the lookup found nothing, the source is taken as the caller named it (or, when empty,
  the destination, i.e. a change in place), and the guard holds the store to that.

No check-then-act window is left: the decision rests on the lookup, and the write happens
only if the store still agrees with the lookup at the instant of the write. Guard failures
are reported to the caller as the change failing (``translate_failures``), never as depends
the caller did not send.

Deletes and depends already name their queue and the store checks a non-empty one; one with
an empty queue ("wherever the task is") is given the looked-up queue, which the store then
checks the same way. One whose task does not exist keeps its empty queue and is authorized
as EntroQ does it: an entry with no queue, which policies deny.

Queues found only by a lookup are kept out of denial messages (``hidden``): a 403 must not
tell a caller where someone else's task lives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import entroq_redis

from ..core import schema as _schema
from .input import CHANGE, DELETE, INSERT, READ, QueueEntry, entry

_LEASE = 1  # ChangeMode CHANGE_LEASE: the task keeps its queue whatever new_data says


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    id: str
    version: int
    queue: str
    old_queue: str  # what the caller named as the source, for the failure it sees


@dataclasses.dataclass(frozen=True, slots=True)
class ModifyPlan:
    """What to authorize and what to run.

    Attributes:
        request: The ModifyRequest to run: the caller's, with empty delete/depend queues
            filled in and one guard depend per change appended.
        entries: The input queue entries, in request order (EntroQ's order: inserts,
            changes, deletes, depends).
        guards: The appended depends, in order.
        client_depends: How many depends the caller sent (the guards follow them).
        hidden: Queues found by lookups that the caller never named.
    """

    request: Any
    entries: list[QueueEntry]
    guards: list[Guard]
    client_depends: int
    hidden: frozenset[str]


def plan_lookups(changes: Sequence[Any], deletes: Sequence[Any], depends: Sequence[Any]) -> list[str]:
    """IDs whose queue the service must look up: every change, and deletes and depends
    that name no queue."""
    ids = [c.old_id.id for c in changes]
    ids += [d.id for d in (*deletes, *depends) if not d.queue]
    return list(dict.fromkeys(ids))


def plan_modify(request: Any, found: Mapping[str, entroq_redis.Task]) -> ModifyPlan:
    """The entries and the guarded request of a ModifyRequest, given the looked-up tasks."""
    named = _named_queues(request)
    planned = _schema.ModifyRequest()
    planned.CopyFrom(request)
    entries = [entry(d.queue, INSERT) for d in request.inserts]
    guards = []
    for change in request.changes:
        old = change.old_id
        task = found.get(old.id)
        dest = change.new_data.queue
        source = task.queue if task is not None else (old.queue or dest)
        if change.mode == _LEASE:
            dest = source
        if source == dest:
            entries.append(entry(source, CHANGE))
        else:
            entries += [entry(source, DELETE), entry(dest, INSERT)]
        guards.append(Guard(old.id, old.version, source, old.queue))
    for item, action in ((planned.deletes, DELETE), (planned.depends, READ)):
        for task_id in item:
            task = found.get(task_id.id) if not task_id.queue else None
            if task is not None:
                task_id.queue = task.queue
            entries.append(entry(task_id.queue, action))
    client_depends = len(planned.depends)
    for guard in guards:
        planned.depends.add(id=guard.id, version=guard.version, queue=guard.queue)
    resolved = {g.queue for g in guards} | {t.queue for t in found.values()}
    return ModifyPlan(planned, entries, guards, client_depends, frozenset(resolved - named))


def plan_finish(finish: Sequence[Any], found: Mapping[str, entroq_redis.Task]) -> tuple[list[str], list[Any]]:
    """The queues of a claim's finished tasks (as deletes), and the finish items to run, with
    empty queues filled in from the lookup (the store checks a non-empty one)."""
    queues, items = [], []
    for task_id in finish:
        queue = task_id.queue
        if not queue and task_id.id in found:
            queue = found[task_id.id].queue
        queues.append(queue)
        items.append(_schema.TaskID(id=task_id.id, version=task_id.version, queue=queue))
    return queues, items


def _named_queues(request: Any) -> set[str]:
    names = {d.queue for d in request.inserts}
    for change in request.changes:
        names |= {change.old_id.queue, change.new_data.queue}
    names |= {d.queue for d in (*request.deletes, *request.depends)}
    return names - {""}


def translate_failures(error: entroq_redis.DependencyError, plan: ModifyPlan) -> entroq_redis.DependencyError:
    """The caller's view of a refused guarded modify: a failing guard becomes its change
    failing ("missing": the task is not where the change was authorized), or disappears
    when the change failed by itself; the caller's own items are reported as they are,
    except that a queue the caller was not authorized on is not named (an insert colliding
    with a task in someone else's queue reports the collision, not that queue)."""
    authorized = {e.exact for e in plan.entries}
    changes_failed = {f.id for f in error.failures if f.kind in ("CHANGE", "CLAIM")}
    depends = [(d.id, d.version, d.queue) for d in plan.request.depends]
    position = 0
    failures = []
    for failure in error.failures:
        if failure.kind == "DEPEND":
            # Failures come in request order, so each one belongs to the next depend that fits it.
            while position < len(depends) and not _fits(failure, depends[position]):
                position += 1
            guard_index = position - plan.client_depends
            position += 1
            if 0 <= guard_index < len(plan.guards):
                guard = plan.guards[guard_index]
                if guard.id in changes_failed:
                    continue
                failure = entroq_redis.DependencyFailure(
                    kind="CHANGE",
                    reason="missing",
                    id=guard.id,
                    version=guard.version,
                    queue=guard.old_queue,
                    current_version=failure.current_version,
                )
        if failure.queue not in authorized:
            failure = dataclasses.replace(failure, queue="")
        failures.append(failure)
    return entroq_redis.DependencyError(failures, doc_failures=error.doc_failures)


def _fits(failure: entroq_redis.DependencyFailure, depend: tuple[str, int, str]) -> bool:
    task_id, version, queue = depend
    # A "missing" failure names the queue the item named; others name the task's real queue.
    return (
        failure.id == task_id
        and failure.version == version
        and (failure.reason != "missing" or failure.queue == queue)
    )
