"""Finding tasks (and docs) by ID, and acting on tasks as their current holder (the --force commands)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

from .._client import EntroQ
from .._errors import EntroQError
from .._types import Task


class TaskNotFoundError(EntroQError):
    """A task named on the command line does not exist (exit 3, like a missing dependency)."""


class DocNotFoundError(EntroQError):
    """A doc named on the command line does not exist (exit 3, like a missing dependency)."""


async def find_tasks(eq: EntroQ, ids: Sequence[str], *, omit_values: bool = False) -> list[Task]:
    """The current version of each ID, in the order given; TaskNotFoundError names missing ones."""
    found = {t.id: t for t in await eq.tasks(ids=ids, omit_values=omit_values)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise TaskNotFoundError(f"no task with ID {', '.join(missing)}")
    return [found[i] for i in ids]


def holder(eq: EntroQ, task: Task, now_ms: int) -> str | None:
    """Who must modify ``task``: None for us, else the claimant holding it.

    Only a live claim (arrival in the future, a claimant set) blocks others; forcing means
    acting as that claimant, as EntroQ's ``eqc --force`` does.
    """
    held = task.at_ms > now_ms and task.claimant and task.claimant != eq.claimant_id
    return task.claimant if held else None


def by_holder(eq: EntroQ, tasks: Iterable[Task], now_ms: int) -> dict[str | None, list[Task]]:
    """Groups tasks by :func:`holder`."""
    groups: dict[str | None, list[Task]] = collections.defaultdict(list)
    for task in tasks:
        groups[holder(eq, task, now_ms)].append(task)
    return groups
