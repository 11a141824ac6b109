"""``Worker``: claims tasks, runs a handler on each under a renewed lease, commits the outcome.

Outcomes (EntroQ's Go worker, docs/reference/entroq-protocol.md 3.1, with two deliberate differences: any
exception is a retry rather than fatal, and a quarantined task is available at once):

- the handler returns None: the task is deleted; it returns a :class:`Finish`: that modify
  is applied with the held version;
- :class:`RetryTaskError`, or **any other exception** (its message is ``"<Type>: <text>"``):
  attempt + 1, the message appended to err, available again after a backoff; quarantined
  to the error queue once attempt reaches ``max_attempts``;
- :class:`MoveTaskError`: attempt + 1, err appended, moved to the error queue now;
- the lease is lost (a renewal finds the task taken): the handler is cancelled and nothing
  is committed;
- the worker stops: handlers get ``grace_s`` to finish, then are cancelled and their tasks
  released (available to everyone at once, attempt unchanged).

With ``take_docs`` (EntroQ's ``WithTakeDocs``) the worker also claims the doc sets a task
names, right after the task and tied to its lease, renews them with the task in one modify,
hands them to the handler, and releases them in the modify that writes the task's outcome
(``_worker_docs.py``). A named doc that is absent quarantines the task; a set held by
someone else puts the task back for a moment (``doc_contention_backoff``), not counted as a
failed attempt.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Literal, TypeAlias, cast

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

from ._client import EntroQ
from ._contract import MAX_CLAIM_SLOTS
from ._doc_types import Doc
from ._errors import DependencyError, InvalidArgumentError
from ._types import Task
from ._worker_docs import (
    DocNeed,
    DocNeedLike,
    TakenDocs,
    claim_request,
    missing_docs,
    normalize_needs,
    set_release,
)
from ._worker_lease import LeaseKeeper
from ._worker_outcomes import (
    Backoff,
    Commit,
    ErrQueueMap,
    Finish,
    MoveTaskError,
    RetryTaskError,
    contention_change,
    default_err_queue,
    exception_message,
    finish_commit,
    quarantine_change,
    release_change,
    releasing,
    retry_change,
)

log = logging.getLogger("entroq_redis.worker")

HandlerResult: TypeAlias = Finish | None
Handler: TypeAlias = Callable[[Task], Awaitable[HandlerResult]] | Callable[[Task], HandlerResult]
# A handler of a worker with take_docs: called with the task and the docs taken for it.
DocsHandler: TypeAlias = (
    Callable[[Task, TakenDocs], Awaitable[HandlerResult]] | Callable[[Task, TakenDocs], HandlerResult]
)
TakeDocs: TypeAlias = (
    Callable[[Task], Iterable[DocNeedLike]] | Callable[[Task], Awaitable[Iterable[DocNeedLike]]]
)

EventKind = Literal["done", "retried", "quarantined", "released", "lost", "failed"]

# How long a release or commit may take while the worker is being cancelled from outside.
_SHIELDED_CALL_S = 5.0
_TIMED_OUT = "commit timed out; the task returns when its lease runs out"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerEvent:
    """What happened to one claimed task.

    Attributes:
        kind: done (finished by the handler), retried, quarantined, released (given back
            on stop), lost (another claimant took it; nothing committed), failed (the
            outcome could not be written; the task comes back when its lease runs out).
        task: The task as claimed.
        result: The version the worker wrote (None when it deleted the task or wrote nothing).
        message: The error recorded (retried, quarantined) or the reason (lost, failed).
        elapsed_s: From claim to outcome.
    """

    kind: EventKind
    task: Task
    result: Task | None = None
    message: str = ""
    elapsed_s: float = 0.0


class _Job:
    """One claimed task on its way through the worker: the task as claimed, and when."""

    __slots__ = ("claimed_at", "task")

    def __init__(self, task: Task, claimed_at: float) -> None:
        self.task = task
        self.claimed_at = claimed_at


class _Lane:
    """Slots that claim as one claimant, and the successes whose deletes ride on their next claim.

    One lane holds every slot of a worker; with ``take_docs`` each slot is a lane of its own
    (its own claimant, see ``Worker._slot_client``). The lane's dispatcher claims at most
    ``free`` tasks per store call, and a slot is free again only once the task it ran is
    committed or its delete is in ``pending`` (deleted atomically with that next claim), so
    the tasks this lane holds in the store never outnumber its slots.
    """

    __slots__ = ("_wake", "capacity", "claim_waits", "eq", "free", "open", "pending")

    def __init__(self, eq: EntroQ, capacity: int) -> None:
        self.eq = eq
        self.capacity = capacity
        self.free = capacity
        # (job, version to delete) of plain successes, committed with the next claim.
        self.pending: list[tuple[_Job, Task]] = []
        # A blocking claim is in flight (nothing to claim now): successes commit on their own.
        self.claim_waits = False
        # The dispatcher takes successes into pending (False once it has stopped).
        self.open = True
        self._wake: anyio.Event | None = None

    def notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def changed(self) -> None:
        self._wake = anyio.Event()
        try:
            await self._wake.wait()
        finally:
            self._wake = None


def _is_async(handler: object) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 (an async __call__ counts too)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


class Worker:
    """Claims tasks from ``queues`` and runs ``handler`` on up to ``concurrency`` at once.

    Usage::

        async def handle(task: Task) -> None:
            ...  # raise RetryTaskError / MoveTaskError, or return a Finish

        async with entroq_redis.connect(url) as eq:
            await Worker(eq, ["jobs"], handle, lease_ms=30_000, concurrency=4).run()

    A plain (non-async) handler runs in a worker thread, so CPU-bound work does not hold up
    the event loop; it cannot be interrupted, so when its lease is lost or the grace period
    ends the worker stops waiting for it and discards what it returns. An async handler must
    not block the event loop: lease renewal runs on it.

    Args:
        eq: The client to work through (Redis or HTTP backend). The worker claims under its
            own claimant ID (``claimant_id``, random by default), not the client's.
        queues: Queues to claim from (each with a task is equally likely).
        handler: Called with each claimed task (and, with ``take_docs``, the
            :class:`TakenDocs` claimed for it).
        lease_ms: Claim duration; renewed every ``lease_ms / 2`` while the handler runs.
        concurrency: Tasks handled at once.
        max_attempts: Quarantine a task when a failure brings its attempt to this (0 = never).
        max_claims: Quarantine, without running it, a task claimed more than this many times
            (0 = never): a task that keeps killing its worker never records a failure.
        backoff: Delay before a failed task is tried again (default: 30 s doubling to 1 h).
        err_queue: Maps an inbox to its quarantine queue (default ``<queue>/err``).
        grace_s: How long :meth:`stop` lets running handlers finish by default.
        max_tasks: Stop after claiming this many tasks (None = run until stopped).
        claim_error_delay_s: Pause after a claim fails (store or service unreachable).
        on_event: Called (on the event loop) with a :class:`WorkerEvent` per claimed task.
        claimant_id: Claimant ID for this worker's claims and commits (with ``take_docs``,
            each slot claims as ``<claimant_id>/<slot number>``: see ``_slot_client``).
        take_docs: Called with each claimed task (plain or async), returns the doc sets the
            task needs: :class:`DocNeed` (with the doc IDs that must exist), ``DocSet`` or
            ``(doc_namespace, key)`` items. They are claimed with the task (all or nothing,
            sorted by (namespace, key), tied to the task's lease), renewed with it, and the
            handler is then called as ``handler(task, taken_docs)`` with a
            :class:`TakenDocs`. Its :class:`Finish` may change the docs; the sets are
            released in the modify of the task's outcome, whatever it is. An exception
            raised here counts as a failed attempt, as a handler's does.
        doc_contention_backoff: How long a task waits when a doc set it needs is held by
            someone else (default: about 1 s); attempt and err are left as they are.
    """

    def __init__(
        self,
        eq: EntroQ,
        queues: str | Iterable[str],
        handler: Handler | DocsHandler,
        *,
        lease_ms: int = 30_000,
        concurrency: int = 1,
        max_attempts: int = 0,
        max_claims: int = 0,
        backoff: Backoff | None = None,
        err_queue: ErrQueueMap = default_err_queue,
        grace_s: float = 30.0,
        max_tasks: int | None = None,
        claim_error_delay_s: float = 1.0,
        on_event: Callable[[WorkerEvent], None] | None = None,
        claimant_id: str | None = None,
        take_docs: TakeDocs | None = None,
        doc_contention_backoff: Backoff | None = None,
    ) -> None:
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        if not self.queues:
            raise ValueError("a worker needs at least one queue")
        if lease_ms <= 0 or concurrency <= 0:
            raise ValueError("lease_ms and concurrency must be positive")
        # Its own claimant: claimant + version is the fence (docs/design.md 2.9), so two workers
        # sharing one client must still not share a claimant.
        self.claimant_id = claimant_id or f"{eq.claimant_id}/worker-{secrets.token_hex(4)}"
        self.eq = eq.as_claimant(self.claimant_id)
        self.handler = handler
        self.lease_ms = lease_ms
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.max_claims = max_claims
        self.backoff = backoff or Backoff()
        self.err_queue = err_queue
        self.grace_s = grace_s
        self.claim_error_delay_s = claim_error_delay_s
        self.on_event = on_event
        self.take_docs = take_docs
        self.doc_contention_backoff = doc_contention_backoff or Backoff.fixed(1_000, jitter=0.5)
        self._take_docs_is_async = take_docs is not None and _is_async(take_docs)
        self.counts: collections.Counter[EventKind] = collections.Counter()
        self._handler_is_async = _is_async(handler)
        self._budget = max_tasks
        self._stop_requested = False
        self._deadline = float("inf")
        self._cancel_handlers = False
        self._claim_scopes: set[anyio.CancelScope] = set()
        self._lanes: list[_Lane] = []
        self._keeper = LeaseKeeper(lease_ms)
        self._stop_event: anyio.Event | None = None
        self._deadline_moved: anyio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Works until :meth:`stop` (or ``max_tasks``) and every running handler is done.

        If ``run`` itself is cancelled, running handlers are cancelled and their tasks
        released before it returns.
        """
        self._stop_event = anyio.Event()
        self._deadline_moved = anyio.Event()
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        if self.take_docs is None:
            self._lanes = [_Lane(self.eq, self.concurrency)]
        else:
            self._lanes = [_Lane(self._slot_client(index), 1) for index in range(self.concurrency)]
        if self._stop_requested:
            self._stop_event.set()
        async with anyio.create_task_group() as supervisor:
            supervisor.start_soon(self._enforce_grace)
            supervisor.start_soon(self._keeper.run)
            async with anyio.create_task_group() as runners:
                for lane in self._lanes:
                    runners.start_soon(self._dispatch, lane, runners)
                task_status.started()
            supervisor.cancel_scope.cancel()

    def stop(self, grace_s: float | None = None) -> None:
        """Stops claiming; running handlers get ``grace_s`` (default: the worker's) to finish.

        Handlers still running after that are cancelled and their tasks released, so other
        workers take them at once. Calling again with a shorter grace shortens it. Call it
        from the worker's event loop (a signal handler task, another task, or a handler).
        """
        grace = self.grace_s if grace_s is None else grace_s
        self._stop_requested = True
        if self._stop_event is None:
            return
        self._deadline = min(self._deadline, anyio.current_time() + grace)
        self._stop_event.set()
        assert self._deadline_moved is not None
        self._deadline_moved.set()
        for scope in list(self._claim_scopes):
            scope.cancel()
        for lane in self._lanes:
            lane.notify()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    async def _enforce_grace(self) -> None:
        assert self._stop_event is not None
        await self._stop_event.wait()
        if self._deadline == float("inf"):
            self._deadline = anyio.current_time() + self.grace_s
        while (remaining := self._deadline - anyio.current_time()) > 0:
            self._deadline_moved = anyio.Event()
            with anyio.move_on_after(remaining):
                await self._deadline_moved.wait()
        self._cancel_handlers = True
        self._keeper.cancel_all()

    # -- claiming --------------------------------------------------------------------------

    def _slot_client(self, index: int) -> EntroQ:
        """The client a slot claims and commits through.

        With ``take_docs`` each slot is a claimant of its own (``<claimant_id>/<index>``): a
        claimant may re-claim a doc set it holds, so two slots sharing one claimant could
        both take the same set at once (and each invalidate the other's lock versions).
        """
        if self.take_docs is None:
            return self.eq
        return self.eq.as_claimant(f"{self.claimant_id}/{index}")

    async def _dispatch(self, lane: _Lane, runners: anyio.abc.TaskGroup) -> None:
        """Fills ``lane``'s free slots, one store call per round, until stopped or out of budget.

        A round deletes the plain successes finished since the last one and claims up to as
        many tasks as there are free slots, in one call; each claimed task gets a runner.
        With nothing to delete it is a blocking claim, during which successes commit on their
        own (nothing else would commit them while the queues stay empty).
        """
        try:
            while not self._stop_requested:
                limit = min(lane.free, MAX_CLAIM_SLOTS if self._budget is None else self._budget)
                if limit <= 0:
                    if self._budget == 0:
                        # Out of budget: the last successes still go in batches, until none runs.
                        if lane.pending:
                            finish, lane.pending = lane.pending, []
                            await self._commit_deletes(lane.eq, finish)
                            continue
                        if lane.free == lane.capacity:
                            break
                    await lane.changed()
                    # Successes finishing in the same pass of the event loop join this round.
                    await anyio.lowlevel.checkpoint()
                    continue
                # The leases start during the call: their renewals are timed from before it.
                claimed_at = anyio.current_time()
                # Reserved before the call (given back after it): other lanes claim meanwhile,
                # and must not wait for tasks beyond max_tasks.
                if self._budget is not None:
                    self._budget -= limit
                try:
                    if lane.pending:
                        finish, lane.pending = lane.pending, []
                        tasks = await self._finish_and_claim(lane, finish, limit)
                    else:
                        tasks = await self._claim(lane, limit)
                finally:
                    if self._budget is not None:
                        self._budget += limit
                if self._budget is not None:
                    self._budget -= len(tasks)
                if not tasks:
                    continue
                lane.free -= len(tasks)
                for task in tasks:
                    runners.start_soon(self._run, lane, _Job(task, claimed_at))
        finally:
            # Stopping (or cancelled): later successes commit on their own.
            lane.open = False
            if lane.pending:
                finish, lane.pending = lane.pending, []
                await self._commit_deletes(lane.eq, finish)

    async def _claim(self, lane: _Lane, limit: int) -> list[Task]:
        """Waits for up to ``limit`` tasks (at least one); [] after a failure or when stopped."""
        with anyio.CancelScope() as scope:
            self._claim_scopes.add(scope)
            lane.claim_waits = True
            try:
                return await lane.eq.claim_many(self.queues, limit, self.lease_ms)
            except Exception as exc:
                log.warning("claim from %s failed (%s); retrying", self.queues, exc)
                await anyio.sleep(self.claim_error_delay_s)
            finally:
                lane.claim_waits = False
                self._claim_scopes.discard(scope)
        return []

    async def _finish_and_claim(self, lane: _Lane, finish: list[tuple[_Job, Task]], limit: int) -> list[Task]:
        """Deletes ``finish`` and claims up to ``limit`` tasks in one store call (maybe none)."""
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S) as timeout:
                tasks = await lane.eq.try_claim_many(
                    self.queues, limit, self.lease_ms, finish=[held for _, held in finish]
                )
            if timeout.cancelled_caught:
                for job, _ in finish:
                    self._emit("failed", job, message=_TIMED_OUT)
                return []
        except DependencyError as exc:
            if len(finish) == 1:
                self._emit("lost", finish[0][0], message=str(exc))
            else:
                # One stale task refuses the whole batch: the others must still commit.
                for job, held in finish:
                    await self._commit_outcome(lane.eq, job, held, None)
            return []
        except Exception as exc:
            log.warning("finish-and-claim failed (%s); committing on their own", exc)
            await self._commit_deletes(lane.eq, finish)
            return []
        for job, _ in finish:
            self._emit("done", job)
        return tasks

    async def _commit_deletes(self, eq: EntroQ, finish: list[tuple[_Job, Task]]) -> None:
        """Deletes plain successes in one modify; if it is refused, each on its own.

        One stale task (its lease lost) refuses a modify for all: committing the others one
        by one keeps it from costing them their commit.
        """
        if len(finish) > 1:
            try:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S) as timeout:
                    await eq.modify(deletes=[held for _, held in finish])
                if timeout.cancelled_caught:
                    for job, _ in finish:
                        self._emit(
                            "failed",
                            job,
                            message=_TIMED_OUT,
                        )
                    return
            except DependencyError:
                pass
            except Exception as exc:
                for job, _ in finish:
                    self._emit("failed", job, message=f"commit failed: {exc}")
                return
            else:
                for job, _ in finish:
                    self._emit("done", job)
                return
        for job, held in finish:
            await self._commit_outcome(eq, job, held, None)

    # -- one task --------------------------------------------------------------------------

    def _emit(self, kind: EventKind, job: _Job, result: Task | None = None, message: str = "") -> None:
        self.counts[kind] += 1
        # Retries are routine; a quarantine, a lost lease or a failed write deserve attention.
        level = logging.WARNING if kind in ("quarantined", "lost", "failed") else logging.INFO
        if self.on_event is None and not log.isEnabledFor(level):
            return  # nobody looks at the event: do not build it
        event = WorkerEvent(kind, job.task, result, message, anyio.current_time() - job.claimed_at)
        log.log(
            level,
            "%s task %s from %s: %s",
            kind,
            job.task.id,
            job.task.queue,
            message,
            extra={"worker_event": kind},
        )
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    async def _call_handler(self, task: Task, taken: TakenDocs | None) -> HandlerResult:
        args: tuple[object, ...] = (task,) if taken is None else (task, taken)
        result: object
        if self._handler_is_async:
            # String types: a subscripted one is built (a typing cache lookup) on every call.
            result = await cast("Callable[..., Awaitable[object]]", self.handler)(*args)
        else:
            # Abandoned on cancel: a thread cannot be interrupted, but the lease can be given up.
            result = await anyio.to_thread.run_sync(
                cast("Callable[..., object]", self.handler),
                *args,
                abandon_on_cancel=True,
                limiter=self._limiter,
            )
        if result is None or isinstance(result, Finish):
            return result
        raise TypeError(f"a handler returns None or Finish, not {type(result).__name__}")

    async def _run_handler(
        self, task: Task, taken: TakenDocs | None, scope: anyio.CancelScope
    ) -> tuple[bool, HandlerResult | Exception]:
        """(True, the handler's result or exception), or (False, None) if ``scope`` was cancelled
        (stop's grace period ended, or the lease was lost)."""
        with scope:
            try:
                return True, await self._call_handler(task, taken)
            except Exception as exc:
                log.debug("handler raised on task %s", task.id, exc_info=True)
                return True, exc
        return False, None

    async def _run(self, lane: _Lane, job: _Job) -> None:
        """Runs one claimed task in one of ``lane``'s slots, and frees the slot."""
        try:
            held = await self._process(lane.eq, job)
            if held is not None:
                if lane.open and not lane.claim_waits and not self._stop_requested:
                    lane.pending.append((job, held))  # deleted by the next round's claim
                else:
                    await self._commit_outcome(lane.eq, job, held, None)
        except Exception:
            # Never reached by design; a bug here must not end the worker.
            log.exception("internal error handling task %s", job.task.id)
        finally:
            lane.free += 1
            lane.notify()

    async def _process(self, eq: EntroQ, job: _Job) -> Task | None:
        """Takes the task's docs, runs the handler under a renewed lease and commits its outcome.

        Returns the held task when the outcome is a plain delete the caller may combine
        with its next claim (not while stopping, nor with doc sets to release); otherwise
        everything is committed here.
        """
        task = job.task
        if self.max_claims and task.claims > self.max_claims:
            message = f"claimed {task.claims} times without finishing (max_claims {self.max_claims})"
            await self._commit_outcome(eq, job, task, MoveTaskError(message))
            return None
        taken: TakenDocs | None = None
        if self.take_docs is not None:
            taken = await self._take_docs(eq, job)
            if taken is None:
                return None  # its outcome is written already
        scope = anyio.CancelScope()
        if self._cancel_handlers:
            scope.cancel()
        # The lease has run since the claim: the first renewal is due half a lease after it.
        lease = self._keeper.hold(
            eq, task, scope, job.claimed_at + self.lease_ms / 2000, taken.sets if taken is not None else ()
        )
        released = False
        try:
            finished, outcome = await self._run_handler(task, taken, scope)
            lost = await self._keeper.release(lease)
            released = True
            if lost is not None:
                self._emit("lost", job, message=str(lost))
                if lease.sets:
                    await self._release_sets_quietly(eq, lease.sets)
                return None
            held, held_sets = lease.task, lease.sets
            if not finished:
                await self._release(eq, job, held, held_sets)  # stopped past the grace period
                return None
            if outcome is None and not self._stop_requested and not held_sets:
                return held
            await self._commit_outcome(eq, job, held, outcome, held_sets)
            return None
        finally:
            if not released:
                # Cancelled from outside: the lease's versions are the ones we hold.
                if await self._keeper.release(lease) is None:
                    await self._release(eq, job, lease.task, lease.sets)
                else:
                    self._emit("lost", job, message=str(lease.lost))

    async def _take_docs(self, eq: EntroQ, job: _Job) -> TakenDocs | None:
        """Claims the doc sets the job's task needs, tied to its lease.

        Returns what to hand the handler, or None when the task's outcome has been written
        instead: quarantined (a needed doc is missing, or the request cannot be served),
        put back for a moment (a set is held by someone else), retried (take_docs raised),
        or lost (the task is no longer ours).
        """
        assert self.take_docs is not None
        task = job.task
        try:
            items = self.take_docs(task)
            if self._take_docs_is_async:
                items = await cast("Awaitable[Iterable[DocNeedLike]]", items)
            needs: list[DocNeed] = normalize_needs(cast("Iterable[DocNeedLike]", items))
        except Exception as exc:
            await self._commit_outcome(eq, job, task, exc)
            return None
        if not needs:
            return TakenDocs([], [])
        try:
            claimed = await eq.claim_doc_sets(claim_request(needs), self.lease_ms, task_to_match=task)
        except DependencyError as exc:
            if exc.failures:
                # The task itself: no longer held by us at this version (its lease ran out).
                self._emit("lost", job, message=str(exc))
                return None
            await self._put_back(eq, job, f"doc contention: {exc}")
            return None
        except InvalidArgumentError as exc:
            # Too many sets or members, a bad namespace: no retry can make it work.
            await self._commit_outcome(eq, job, task, MoveTaskError(f"cannot take its docs: {exc}"))
            return None
        except Exception as exc:
            await self._put_back(eq, job, f"taking its docs failed: {exc}")
            return None
        taken = TakenDocs(list(claimed.sets), list(claimed.docs))
        missing = missing_docs(needs, taken)
        if missing:
            message = "missing " + "; ".join(missing)
            await self._commit_outcome(eq, job, task, MoveTaskError(message), taken.sets)
            return None
        return taken

    async def _put_back(self, eq: EntroQ, job: _Job, message: str) -> None:
        """Makes the job's task available again after the contention backoff; not a failed attempt."""
        change = contention_change(job.task, self.doc_contention_backoff.delay_ms(1))
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S):
            try:
                _, changed = await eq.modify(changes=[change])
                self._emit("retried", job, changed[0], message)
            except DependencyError as exc:
                self._emit("lost", job, message=str(exc))
            except Exception as exc:
                self._emit("failed", job, message=f"{message}; putting the task back failed: {exc}")

    async def _release(self, eq: EntroQ, job: _Job, held: Task, sets: Sequence[Doc] = ()) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S):
            try:
                _, changed = await eq.modify(
                    changes=[release_change(held)], doc_changes=[set_release(s) for s in sets]
                )
                self._emit("released", job, changed[0], "worker stopping")
            except Exception as exc:
                self._emit("failed", job, message=f"release failed: {exc}")

    async def _release_sets_quietly(self, eq: EntroQ, sets: Sequence[Doc]) -> None:
        """After a lost lease: gives back the set locks we may still hold, if we still do."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S):
            try:
                await eq.modify(doc_changes=[set_release(s) for s in sets])
            except Exception as exc:
                log.info("releasing the doc sets of a lost task failed (%s); they end with its lease", exc)

    def _failure_commit(
        self, held: Task, exc: Exception, sets: Sequence[Doc]
    ) -> tuple[Commit, EventKind, str]:
        err_queue = self.err_queue(held.queue)
        if isinstance(exc, MoveTaskError):
            change = quarantine_change(held, exc.message, exc.queue or err_queue)
            return releasing(Commit(changes=[change]), sets), "quarantined", exc.message
        if isinstance(exc, RetryTaskError):
            message, delay_ms = exc.message, exc.delay_ms
        else:
            message, delay_ms = exception_message(exc), None
        if delay_ms is None:
            delay_ms = self.backoff.delay_ms(held.attempt + 1)
        change, quarantined = retry_change(
            held, message, delay_ms=delay_ms, err_queue=err_queue, max_attempts=self.max_attempts
        )
        return releasing(Commit(changes=[change]), sets), "quarantined" if quarantined else "retried", message

    async def _commit_outcome(
        self,
        eq: EntroQ,
        job: _Job,
        held: Task,
        outcome: HandlerResult | Exception,
        sets: Sequence[Doc] = (),
    ) -> None:
        """Writes the outcome; ``sets`` (doc set locks held with the task) are released in it."""
        if isinstance(outcome, Exception):
            commit, kind, message = self._failure_commit(held, outcome, sets)
        else:
            commit, kind, message = finish_commit(outcome, held, sets), "done", ""
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S) as timeout:
                _, changed = await eq.modify(
                    commit.inserts,
                    commit.changes,
                    commit.deletes,
                    commit.depends,
                    doc_inserts=commit.doc_inserts,
                    doc_changes=commit.doc_changes,
                    doc_deletes=commit.doc_deletes,
                    doc_depends=commit.doc_depends,
                )
            if timeout.cancelled_caught:
                self._emit("failed", job, message=_TIMED_OUT)
                return
        except DependencyError as exc:
            held_sets = {(s.namespace, s.key) for s in sets}
            ours_lost = any(f.id == held.id for f in exc.failures) or any(
                not f.id and (f.namespace, f.key) in held_sets for f in exc.doc_failures
            )
            if ours_lost or kind != "done":
                self._emit("lost", job, message=str(exc))
                return
            # The handler's own items conflicted, not our claim: count it as a failed attempt.
            await self._commit_outcome(eq, job, held, RetryTaskError(str(exc)), sets)
            return
        except Exception as exc:
            self._emit("failed", job, message=f"commit failed: {exc}")
            return
        mine = [t for t in changed if t.id == held.id]
        self._emit(kind, job, mine[0] if mine else None, message)
