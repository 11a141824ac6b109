"""Holding a claimed task: renew its lease in the background, cancel the work if it is lost.

This is the one renewal policy (``Lease._renew_step``), with two schedulers: ``hold_lease``
(a renewing task per held task; the EntroQ-style ``renewing()`` / ``EntroQWorker`` layer) and
``LeaseKeeper`` (one task renewing every lease a :class:`entroq_redis.Worker` holds).

Renewal runs in a task other than the work's, so work that keeps its own thread busy (CPU-bound code run
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

    # Slots: a Worker makes one per task it runs.
    __slots__ = (
        "_due",
        "_eq",
        "_lease_ms",
        "_renewing",
        "_scope",
        "_settled",
        "_uncertain",
        "_wait_s",
        "lost",
        "renewals",
        "sets",
        "task",
    )

    def __init__(self, eq: EntroQ, task: Task, lease_ms: int, sets: Sequence[Doc] = ()) -> None:
        self.task = task
        # Doc set locks held with the task (set references): renewed in the same modify as
        # the task, so they end together; like ``task``, the versions to commit with.
        self.sets = list(sets)
        self.lost: DependencyError | None = None
        self.renewals = 0
        self._eq = eq
        self._lease_ms = lease_ms
        self._uncertain = False
        self._wait_s = lease_ms / 2000
        # Used by LeaseKeeper: the scope a loss cancels, when the next renewal is due, whether
        # one is in flight, and the event a release waits on for it.
        self._scope: anyio.CancelScope | None = None
        self._due = 0.0
        self._renewing = False
        self._settled: anyio.Event | None = None

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

    async def _renew_step(self) -> float | None:
        """One renewal; returns the seconds until the next one, or None when the lease is lost.

        The policy both schedulers (``hold_lease``'s own task, ``LeaseKeeper``) follow.
        """
        interval_s = self._lease_ms / 2000
        try:
            if self._uncertain and not await self._adopt_current():
                raise DependencyError([], f"task {self.task.id} is no longer held by this worker")
            await self._renew_once()
            self._uncertain = False
            self._wait_s = interval_s
        except DependencyError as exc:
            if not self._uncertain:
                # A mismatch may be our own earlier renewal that timed out after applying.
                self._uncertain = True
                self._wait_s = 0
                return 0.0
            log.warning("lost the lease on task %s (%s): cancelling its work", self.task.id, exc)
            self.lost = exc
            return None
        except Exception as exc:
            # Transient (store or service unreachable, timeout): the claim is not lost until
            # another claimant takes the task, which the next successful call will tell.
            self._uncertain = True
            wait_s = self._wait_s
            self._wait_s = min(
                interval_s, max(wait_s * 2 if wait_s else 0, interval_s * _FIRST_RETRY_FRACTION)
            )
            log.warning("renewing task %s failed (%s); retrying in %.2f s", self.task.id, exc, self._wait_s)
        return self._wait_s


class LeaseKeeper:
    """Renews the leases of many held tasks from one background task (a Worker's).

    The same renewal policy as ``hold_lease`` without a task, an event and a cancel scope per
    held task: holding a lease is a set insertion, and a task finished before its first
    renewal comes due costs nothing more. Only a due renewal gets a task of its own, so a
    slow one does not hold up the others. Run :meth:`run` in a task group for as long as
    leases may be held.
    """

    def __init__(self, lease_ms: int) -> None:
        if lease_ms <= 0:
            raise ValueError("lease_ms must be positive")
        self._lease_ms = lease_ms
        self.leases: set[Lease] = set()
        self._target = float("inf")
        self._wakeup: anyio.Event | None = None

    def hold(
        self, eq: EntroQ, task: Task, scope: anyio.CancelScope, due: float, sets: Sequence[Doc] = ()
    ) -> Lease:
        """Starts renewing ``task`` (and ``sets``), held by ``eq``'s claimant, from ``due`` on.

        ``due`` is on the event loop's clock. A loss cancels ``scope``; :meth:`release` then
        reports it.
        """
        lease = Lease(eq, task, self._lease_ms, sets)
        lease._scope = scope
        lease._due = due
        self.leases.add(lease)
        if due < self._target and self._wakeup is not None:
            self._wakeup.set()
        return lease

    async def release(self, lease: Lease) -> DependencyError | None:
        """Stops renewing ``lease``; returns the error that lost it, if one did.

        A renewal in flight is waited for (shielded), so ``lease.task`` is then the stable
        version to commit with (or release).
        """
        self.leases.discard(lease)
        if lease._renewing:  # rare: most tasks end before their first renewal is due
            lease._settled = anyio.Event()
            with anyio.CancelScope(shield=True):
                await lease._settled.wait()
        return lease.lost

    def cancel_all(self) -> None:
        """Cancels the scope of every lease held (the work under it)."""
        for lease in list(self.leases):
            assert lease._scope is not None
            lease._scope.cancel()

    async def run(self) -> None:
        async with anyio.create_task_group() as renewals:
            while True:
                now = anyio.current_time()
                target = float("inf")
                for lease in self.leases:
                    if lease._renewing:
                        continue
                    if lease._due <= now:
                        lease._renewing = True
                        renewals.start_soon(self._renew, lease)
                    elif lease._due < target:
                        target = lease._due
                self._target = target
                self._wakeup = wakeup = anyio.Event()
                with anyio.move_on_after(target - now):
                    await wakeup.wait()
                self._wakeup = None

    async def _renew(self, lease: Lease) -> None:
        try:
            wait_s = await lease._renew_step()
        finally:
            lease._renewing = False
            if lease._settled is not None:
                lease._settled.set()
        if wait_s is None:
            assert lease._scope is not None
            lease._scope.cancel()
        elif lease in self.leases:
            lease._due = anyio.current_time() + wait_s
            if lease._due < self._target and self._wakeup is not None:
                self._wakeup.set()


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
    stop = anyio.Event()
    body_scope = anyio.CancelScope()

    async def renew_loop() -> None:
        interval_s = lease_ms / 2000
        wait_s = interval_s if first_renewal_s is None else max(0.0, min(first_renewal_s, interval_s))
        lease._wait_s = wait_s
        while True:
            with anyio.move_on_after(wait_s):
                await stop.wait()
            if stop.is_set():
                return
            next_wait_s = await lease._renew_step()
            if next_wait_s is None:
                body_scope.cancel()
                return
            wait_s = next_wait_s

    error: Exception | None = None
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(renew_loop)
        with body_scope:
            try:
                yield lease
            except Exception as exc:
                # Raised again below, outside the task group, so it is not wrapped.
                error = exc
            finally:
                stop.set()
    if lease.lost is not None:
        raise lease.lost from error
    if error is not None:
        raise error
