"""The queues page's table: the queues a caller may read as a ``/`` tree, each ``<queue>/err``
beside its inbox, filtered by name and capped. I/O free.

A page never draws more than MAX_ROWS rows, whatever the number of queues (10,000 are fine:
the work is one pass over the names); a filter narrows the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

ERR_SUFFIX = "/err"
MAX_ROWS = 500


@dataclasses.dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue, with its error queue's size when it has one.

    Attributes:
        depth: How many ``/``-separated levels above the name the tree shows (indentation).
        label: The name's last part (the group rows show the rest).
        stuck: Tasks are available but nobody holds any: no worker seems to claim from it.
    """

    name: str
    label: str
    depth: int
    tasks: int
    available: int
    claimed: int
    future: int
    max_claims: int
    err_queue: str
    err_tasks: int

    @property
    def stuck(self) -> bool:
        return self.available > 0 and self.claimed == 0


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRow:
    """A ``/`` prefix shared by the queues below it."""

    prefix: str
    depth: int


@dataclasses.dataclass(frozen=True, slots=True)
class QueueTable:
    rows: list[QueueRow | GroupRow]
    shown: int
    matching: int
    total: int
    err_queues: int


def err_inbox(name: str) -> str | None:
    """The inbox of an error queue (``jobs/err`` -> ``jobs``), None for other queues."""
    if name.endswith(ERR_SUFFIX) and len(name) > len(ERR_SUFFIX):
        return name[: -len(ERR_SUFFIX)]
    return None


def build(stats: Iterable[Any], name_filter: str = "", max_rows: int = MAX_ROWS) -> QueueTable:
    """The table of ``stats`` (``api.QueueStats`` messages, sorted by name)."""
    by_name = {s.name: s for s in stats}
    total = len(by_name)
    # An error queue is shown beside its inbox; on a row of its own only when its inbox is empty.
    beside = {n for n in by_name if (inbox := err_inbox(n)) is not None and inbox in by_name}
    wanted = name_filter.casefold()
    names = [n for n in sorted(by_name) if n not in beside and wanted in n.casefold()]
    rows: list[QueueRow | GroupRow] = []
    open_groups: list[str] = []
    for name in names[:max_rows]:
        parts = name.split("/")
        prefixes = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts) - 1)]
        prefixes = [p for p in prefixes if p != "/"]
        shared = 0
        while shared < min(len(open_groups), len(prefixes)) and open_groups[shared] == prefixes[shared]:
            shared += 1
        open_groups = open_groups[:shared]
        for prefix in prefixes[shared:]:
            rows.append(GroupRow(prefix, len(open_groups)))
            open_groups.append(prefix)
        s = by_name[name]
        err = by_name.get(name + ERR_SUFFIX)
        rows.append(
            QueueRow(
                name=name,
                label=name[len(prefixes[-1]) :] if prefixes else name,
                depth=len(prefixes),
                tasks=s.num_tasks,
                available=s.num_available,
                claimed=s.num_claimed,
                future=s.num_future,
                max_claims=s.max_claims,
                err_queue=name + ERR_SUFFIX if err is not None else "",
                err_tasks=err.num_tasks if err is not None else 0,
            )
        )
    err_queues = sum(1 for n in by_name if err_inbox(n) is not None)
    return QueueTable(rows, min(len(names), max_rows), len(names), total, err_queues)
