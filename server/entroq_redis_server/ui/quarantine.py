"""Quarantine actions: requeue or delete exactly the task versions a page showed. I/O free.

Each action is ONE versioned modify over the (ID, version) pairs the form sends, which are the
versions the page drew. If any of those tasks changed since (another version, gone, held by
a worker), the store refuses the whole modify with a DependencyError naming each one, and
nothing is written. The page then reports those tasks as "changed since you looked" and offers
the others, with the same versions, as a second action the user confirms: nothing is applied
that the user did not see in its current state (chosen over applying the rest at once, which
would act on a selection the user made for a batch that no longer exists as drawn).

A requeue moves a task from ``<queue>/err`` to ``<queue>``, available now, with attempt,
claims and err reset, as ``entroq-redis requeue`` does (``entroq_redis.cli._requeue``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ..core import schema as _schema
from ..core.errors import bad_request
from .queue_table import err_inbox

Action = Literal["requeue", "delete"]
ACTIONS: tuple[Action, ...] = ("requeue", "delete")
# At most this many tasks per action (and per quarantine page, so "select all" always fits):
# with --authz every change gets a guard depend (authz.modify), and a modify holds at most
# 1,000 items (lua/README.md, MAX_ITEMS), so 500 requeues are the most one modify can carry.
MAX_SELECTED = 500
_RESET_CLAIMS = 2  # ChangeMode CHANGE_RESET_CLAIMS


@dataclasses.dataclass(frozen=True, slots=True)
class Selected:
    """A task as the page showed it."""

    id: str
    version: int

    @property
    def field(self) -> str:
        """The form value: ``<version>:<id>`` (IDs may hold any character, versions none)."""
        return f"{self.version}:{self.id}"


@dataclasses.dataclass(frozen=True, slots=True)
class ErrGroup:
    """Tasks of one error queue that failed with the same first line of err."""

    err: str
    tasks: list[Any]


def parse_selection(values: Sequence[str]) -> list[Selected]:
    """The form's ``task`` fields; a 400 for anything malformed, too many, or repeated."""
    if not values:
        raise bad_request("no tasks selected")
    if len(values) > MAX_SELECTED:
        raise bad_request(f"at most {MAX_SELECTED} tasks per action, got {len(values)}")
    selected = []
    for value in values:
        version, colon, task_id = value.partition(":")
        if not colon or not task_id or not version.isdigit() or len(version) > 10:
            raise bad_request(f"malformed task field {value[:100]!r}: expected <version>:<id>")
        selected.append(Selected(task_id, int(version)))
    if len({s.id for s in selected}) != len(selected):
        raise bad_request("a task is selected twice")
    return selected


def action_of(value: str, queue: str) -> Action:
    if value not in ACTIONS:
        raise bad_request(f"unknown action {value[:50]!r}: requeue or delete")
    if value == "requeue" and err_inbox(queue) is None:
        raise bad_request(f"only tasks of an error queue (<queue>/err) are requeued; {queue!r} is not one")
    return "requeue" if value == "requeue" else "delete"


def modify_request(
    action: Action, queue: str, selected: Sequence[Selected], current: Mapping[str, Any]
) -> Any:
    """The one ModifyRequest of an action on ``selected`` in ``queue``.

    A requeue is a full change and so must carry each task's value: it is taken from
    ``current`` (the tasks as read just now), and the change still names the version the
    page showed, so a task that changed since fails the whole modify.
    """
    request = _schema.ModifyRequest()
    for item in selected:
        if action == "delete":
            request.deletes.add(id=item.id, version=item.version, queue=queue)
            continue
        task = current.get(item.id)
        change = request.changes.add(mode=_RESET_CLAIMS)
        change.old_id.id, change.old_id.version, change.old_id.queue = item.id, item.version, queue
        change.new_data.queue = err_inbox(queue) or queue
        change.new_data.value = task.value if task is not None else b""
    return request


def probe_request(action: Action, queue: str) -> Any:
    """A modify whose authorization is that of ``action`` on any task of ``queue`` (DELETE
    there, plus INSERT in the inbox for a requeue): asked, never run, to decide whether
    the page shows the action's button."""
    request = _schema.ModifyRequest()
    request.deletes.add(id="probe", version=0, queue=queue)
    if action == "requeue":
        request.inserts.add(queue=err_inbox(queue) or queue)
    return request


def group_by_err(tasks: Iterable[Any]) -> list[ErrGroup]:
    """Tasks grouped by the first line of their err, the largest group first."""
    groups: dict[str, list[Any]] = {}
    for task in tasks:
        groups.setdefault(first_line(task.err), []).append(task)
    return [ErrGroup(err, items) for err, items in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))]


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:300]
