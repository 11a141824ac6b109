"""Batched claims over a wire that claims one task per call (the HTTP service's, gRPC's).

EntroQ's TryClaim and Claim return one task, so a backend speaking them gives
``try_claim_many`` / ``claim_many`` as a run of single claims: each task is still a claim of
its own (its own pick, lease and version bump), but the batch is not one atomic store call as
on the Redis backend. Shared here so every such backend keeps the same hand-over rules.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ._errors import StoreError
from ._types import Task, TaskID


class OneClaimPerTask(abc.ABC):
    """``try_claim_many`` / ``claim_many`` built on a backend's single-task claims."""

    @abc.abstractmethod
    async def _try_claim_one(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID] = ()
    ) -> Task | None:
        """One non-blocking claim (deleting ``finish`` first), or None."""

    @abc.abstractmethod
    async def _claim_one(
        self,
        claimant: str,
        queues: Sequence[str],
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> Task:
        """One blocking claim (deleting ``finish`` first)."""

    async def try_claim_many(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        finish: Sequence[TaskID] = (),
    ) -> list[Task]:
        """Up to ``limit`` claims, one per task: the first deletes ``finish``; stops at the
        first that finds nothing (or, with a 0 ms lease, takes a task it already holds again)."""
        tasks: list[Task] = []
        while len(tasks) < limit:
            try:
                task = await self._try_claim_one(claimant, queues, duration_ms, () if tasks else finish)
            except StoreError:
                if not tasks:
                    raise
                # The tasks already claimed are held: hand them over rather than strand them
                # until their leases run out; the caller's next call meets the trouble.
                break
            if task is None:
                break
            seen = next((i for i, t in enumerate(tasks) if t.id == task.id), None)
            if seen is not None:
                # A 0 ms lease leaves a claimed task available, and this claim took it again
                # (its earlier version is stale now): keep the newer one, and stop.
                tasks[seen] = task
                break
            tasks.append(task)
        return tasks

    async def claim_many(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> list[Task]:
        """A blocking claim for the first task, then up to ``limit - 1`` more without waiting,
        one claim per task."""
        first = await self._claim_one(claimant, queues, duration_ms, timeout_s, finish)
        try:
            more = await self.try_claim_many(claimant, queues, limit - 1, duration_ms)
        except StoreError:
            more = []  # the first task is held: hand it over (see try_claim_many)
        return [first, *more]
