"""The interface both backends (Redis scripts, HTTP service) implement.

The public client (``_client.EntroQ``) normalizes arguments and delegates here, so the
two backends cannot drift apart in what they accept; the shared behaviour test suite
runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from ._types import QueueStats, Task, TaskChange, TaskData, TaskID

Detail = Literal["size", "stats"]


class Backend(Protocol):
    """Primitive operations; every call is one atomic operation on the store (or a page of one)."""

    async def time_ms(self) -> int:
        """The store's clock, ms since the epoch."""
        ...

    async def ping(self) -> None:
        """Checks that the store answers and is ready for use (readiness)."""
        ...

    async def try_claim(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID] = ()
    ) -> Task | None:
        """Deletes ``finish`` (all or none), then claims one available task or returns None at once."""
        ...

    async def try_claim_id(self, claimant: str, queue: str, task_id: str, duration_ms: int) -> Task | None:
        """Claims the task ``task_id`` (in ``queue``; "" = any) if it is available now, else None."""
        ...

    async def claim(
        self,
        claimant: str,
        queues: Sequence[str],
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> Task:
        """Deletes ``finish``, then claims one task, waiting for one; raises ClaimTimeoutError."""
        ...

    async def modify(
        self,
        claimant: str,
        inserts: Sequence[TaskData],
        changes: Sequence[TaskChange],
        deletes: Sequence[TaskID],
        depends: Sequence[TaskID],
    ) -> tuple[list[Task], list[Task]]:
        """Applies everything or nothing; raises DependencyError listing every failure."""
        ...

    async def tasks(
        self, queue: str, ids: Sequence[str], claimant: str, limit: int, omit_values: bool
    ) -> list[Task]:
        """Tasks of a queue (limit 0 = all) or the given IDs from any queue."""
        ...

    async def queues(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int, detail: Detail
    ) -> list[QueueStats]:
        """Matching non-empty queues in name order (limit 0 = all)."""
        ...

    async def aclose(self) -> None:
        """Releases connections and background tasks."""
        ...
