"""Holding a claimed task: renew its lease in the background, cancel the work if it is lost.

This is the one renewal mechanism; :class:`entroq_redis.Worker` and the EntroQ-style
``renewing()`` / ``EntroQWorker`` layer both use it.

Renewal runs in its own task, so work that keeps its own thread busy (CPU-bound code run
with ``anyio.to_thread``) cannot starve it. Async work must still not block the event loop:
nothing on that loop, renewal included, runs while it does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

import anyio

from ._client import EntroQ
from ._doc_types import Doc, DocSet
from ._errors import DependencyError
from ._types import Task, TaskChange
from ._worker_docs import set_renewal

log = logging.getLogger("entroq_redis.worker")

# After a renewal fails for a reason other than a dependency error (store or service
# unreachable, timeout), the next try comes after this fraction of the lease, doubling up to
# the normal interval: a short blip must not cost the lease.
_FIRST_RETRY_FRACTION = 1 / 8


class Lease:
    """The live claim on one task, kept fresh by a background renewer.

    ``task`` is always the latest version this holder owns; once the ``hold_lease`` block has
    exited, it is stable and is the version to commit with. ``sets`` are the doc set locks
    held with the task, kept fresh the same way. ``lost`` is the dependency error
    that ended the lease, if one did.
    """

    def __init__(self, eq: EntroQ, task: Task, lease_ms: int, sets: Sequence[Doc] = ()) -> None:
        self.task = task
        # Doc set locks held with the task (set references): renewed in the same modify as
        # the task, so they end together; like ``task``, the versions to commit with.
        self.sets = list(sets)
        self.lost: DependencyError | None = None
        self.renewals = 0
        self._eq = eq
        self._lease_ms = lease_ms
        self._stop = anyio.Event()
        self._body_scope = anyio.CancelScope()
        self._first_wait_s: float | None = None

    async def _renew_once(self) -> None:
        # Shielded, and bounded by the lease itself: a renewal already sent must finish so we
        # know the version it produced (committing with an older one would fail as a loss).
        with anyio.CancelScope(shield=True), anyio.fail_after(max(self._lease_ms / 1000, 1.0)):
            if not self.sets:
                self.task = await self._eq.renew_for(self.task, self._lease_ms)
            else:
                # One modify: the task and its sets get the same arrival on the same clock,
                # or neither is renewed (a set taken by someone else fails it as a loss).
                result = await self._eq.modify(
                    changes=[lease_change(self.task, self._lease_ms)],
                    doc_changes=[set_renewal(s, self._lease_ms) for s in self.sets],
                )
                self.task, self.sets = result.changed[0], list(result.changed_docs)
        self.renewals += 1

    async def _adopt_current(self) -> bool:
        """After an uncertain renewal, takes the stored version if this holder still owns it.

        A renewal whose reply was lost (timeout, dropped connection) may have been applied,
        leaving us one version behind our own task. Claimant IDs are unique per holder, so a
        task whose stored claimant is ours was last written by us.
        """
        with anyio.CancelScope(shield=True), anyio.fail_after(max(self._lease_ms / 1000, 1.0)):
            found = await self._eq.tasks(ids=[self.task.id], omit_values=True)
        if not found or found[0].claimant != self._eq.claimant_id:
            return False
        current = found[0]
        if current.version != self.task.version:
            # Keep the value we already hold: the listing omitted it.
            self.task = dataclasses.replace(current, value=self.task.value)
        if self.sets:
            await self._adopt_sets()
        return True

    async def _adopt_sets(self) -> None:
        """Takes the current versions of our set locks, tied to the task again.

        A set lock's version can only be learnt by writing it: claiming a set one already
        holds is allowed, so this claim (members omitted) returns the versions to renew with.
        It fails (DependencyError, a loss) if another claimant holds a set now.
        """
        with anyio.CancelScope(shield=True), anyio.fail_after(max(self._lease_ms / 1000, 1.0)):
            claimed = await self._eq.claim_doc_sets(
                [DocSet(s.namespace, s.key, omit_members=True) for s in self.sets],
                self._lease_ms,
                task_to_match=self.task,
            )
        self.sets = list(claimed.sets)

    async def _renew_loop(self) -> None:
        interval_s = self._lease_ms / 2000
        wait_s = interval_s if self._first_wait_s is None else max(0.0, min(self._first_wait_s, interval_s))
        uncertain = False
        while True:
            with anyio.move_on_after(wait_s):
                await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                if uncertain and not await self._adopt_current():
                    raise DependencyError([], f"task {self.task.id} is no longer held by this worker")
                await self._renew_once()
                uncertain = False
                wait_s = interval_s
            except DependencyError as exc:
                if not uncertain:
                    # A mismatch may be our own earlier renewal that timed out after applying.
                    uncertain = True
                    wait_s = 0
                    continue
                log.warning("lost the lease on task %s (%s): cancelling its work", self.task.id, exc)
                self.lost = exc
                self._body_scope.cancel()
                return
            except Exception as exc:
                # Transient (store or service unreachable, timeout): the claim is not lost until
                # another claimant takes the task, which the next successful call will tell.
                uncertain = True
                wait_s = min(interval_s, max(wait_s * 2 if wait_s else 0, interval_s * _FIRST_RETRY_FRACTION))
                log.warning("renewing task %s failed (%s); retrying in %.2f s", self.task.id, exc, wait_s)


def lease_change(task: Task, lease_ms: int) -> TaskChange:
    """Extends ``task``'s claim to ``lease_ms`` from now (as ``EntroQ.renew_for`` does)."""
    return TaskChange(task.id, task.version, task.queue, delay_ms=lease_ms, mode="lease")


@contextlib.asynccontextmanager
async def hold_lease(
    eq: EntroQ,
    task: Task,
    lease_ms: int,
    *,
    sets: Sequence[Doc] = (),
    first_renewal_s: float | None = None,
) -> AsyncIterator[Lease]:
    """Renews ``task`` (and the doc set locks ``sets``) every ``lease_ms / 2`` while the block runs.

    If a renewal finds the task taken by someone else, the block is cancelled and, on exit,
    that DependencyError is raised: nothing after the block may commit. On a normal exit the
    renewer has stopped (a renewal in flight is waited for) and ``lease.task`` is the stable
    version to commit with.

    Exceptions raised by the block propagate unchanged (not wrapped in an ExceptionGroup).

    Args:
        eq: The client that claimed the task (its claimant is the holder).
        task: The claimed task.
        lease_ms: The lease each renewal asks for, measured on the store's clock.
        sets: Doc set locks (set references) held with the task, renewed in the same modify.
        first_renewal_s: When the first renewal comes (default ``lease_ms / 2``): sooner when
            the claim was made a while before the block starts.
    """
    if lease_ms <= 0:
        raise ValueError("lease_ms must be positive")
    lease = Lease(eq, task, lease_ms, sets)
    lease._first_wait_s = first_renewal_s
    error: Exception | None = None
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(lease._renew_loop)
        with lease._body_scope:
            try:
                yield lease
            except Exception as exc:
                # Raised again below, outside the task group, so it is not wrapped.
                error = exc
            finally:
                lease._stop.set()
    if lease.lost is not None:
        raise lease.lost from error
    if error is not None:
        raise error
