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
import anyio.to_thread

from ._client import EntroQ
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
from ._worker_lease import Lease, hold_lease
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


@dataclasses.dataclass(frozen=True, slots=True)
class _PendingDelete:
    """A successful task whose delete waits to ride on the slot's next claim."""

    held: Task
    event: Callable[..., None]


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
        self._handler_scopes: set[anyio.CancelScope] = set()
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
        if self._stop_requested:
            self._stop_event.set()
        async with anyio.create_task_group() as supervisor:
            supervisor.start_soon(self._enforce_grace)
            async with anyio.create_task_group() as slots:
                for index in range(self.concurrency):
                    slots.start_soon(self._slot, self._slot_client(index))
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
        for scope in list(self._handler_scopes):
            scope.cancel()

    # -- claiming --------------------------------------------------------------------------

    def _take_budget(self) -> bool:
        if self._budget is None:
            return True
        if self._budget <= 0:
            return False
        self._budget -= 1
        return True

    def _slot_client(self, index: int) -> EntroQ:
        """The client a slot claims and commits through.

        With ``take_docs`` each slot is a claimant of its own (``<claimant_id>/<index>``): a
        claimant may re-claim a doc set it holds, so two slots sharing one claimant could
        both take the same set at once (and each invalidate the other's lock versions).
        """
        if self.take_docs is None:
            return self.eq
        return self.eq.as_claimant(f"{self.claimant_id}/{index}")

    async def _slot(self, eq: EntroQ) -> None:
        # A plain success (the handler returned None) is not committed on its own: the
        # delete rides on this slot's next claim (finish-and-claim, one store call).
        pending: _PendingDelete | None = None
        while not self._stop_requested and self._take_budget():
            task: Task | None = None
            if pending is not None:
                task = await self._finish_and_try_claim(eq, pending)
                pending = None
            if task is None:
                with anyio.CancelScope() as scope:
                    self._claim_scopes.add(scope)
                    try:
                        task = await eq.claim(self.queues, self.lease_ms)
                    except Exception as exc:
                        log.warning("claim from %s failed (%s); retrying", self.queues, exc)
                        await anyio.sleep(self.claim_error_delay_s)
                    finally:
                        self._claim_scopes.discard(scope)
            if task is None:
                if self._budget is not None:
                    self._budget += 1
                continue
            try:
                pending = await self._process(eq, task)
            except Exception:
                # Never reached by design; a bug here must not end the worker.
                log.exception("internal error handling task %s", task.id)
        if pending is not None:
            # Stopping or out of budget: commit the last success on its own.
            await self._commit_outcome(eq, pending.held, None, pending.event)

    async def _finish_and_try_claim(self, eq: EntroQ, pending: _PendingDelete) -> Task | None:
        """Deletes a finished task and claims the next one in one call (None: nothing claimed)."""
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S) as timeout:
                task = await eq.try_claim(self.queues, self.lease_ms, finish=[pending.held])
            if timeout.cancelled_caught:
                pending.event("failed", message="commit timed out; the task returns when its lease runs out")
                return None
        except DependencyError as exc:
            pending.event("lost", message=str(exc))
            return None
        except Exception as exc:
            log.warning("finish-and-claim failed (%s); committing on its own", exc)
            await self._commit_outcome(eq, pending.held, None, pending.event)
            return None
        pending.event("done")
        return task

    # -- one task --------------------------------------------------------------------------

    def _emit(self, event: WorkerEvent) -> None:
        self.counts[event.kind] += 1
        # Retries are routine; a quarantine, a lost lease or a failed write deserve attention.
        level = logging.WARNING if event.kind in ("quarantined", "lost", "failed") else logging.INFO
        log.log(
            level,
            "%s task %s from %s: %s",
            event.kind,
            event.task.id,
            event.task.queue,
            event.message,
            extra={"worker_event": event.kind},
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
            result = await cast(Callable[..., Awaitable[object]], self.handler)(*args)
        else:
            # Abandoned on cancel: a thread cannot be interrupted, but the lease can be given up.
            result = await anyio.to_thread.run_sync(
                cast(Callable[..., object], self.handler),
                *args,
                abandon_on_cancel=True,
                limiter=self._limiter,
            )
        if result is None or isinstance(result, Finish):
            return result
        raise TypeError(f"a handler returns None or Finish, not {type(result).__name__}")

    async def _run_handler(
        self, task: Task, taken: TakenDocs | None
    ) -> tuple[bool, HandlerResult | Exception]:
        """(True, the handler's result or exception), or (False, None) if stop() cancelled it."""
        with anyio.CancelScope() as scope:
            self._handler_scopes.add(scope)
            if self._cancel_handlers:
                scope.cancel()
            try:
                return True, await self._call_handler(task, taken)
            except Exception as exc:
                log.debug("handler raised on task %s", task.id, exc_info=True)
                return True, exc
            finally:
                self._handler_scopes.discard(scope)
        return False, None

    async def _process(self, eq: EntroQ, task: Task) -> _PendingDelete | None:
        """Takes the task's docs, runs the handler under a renewed lease and commits its outcome.

        Returns the held task when the outcome is a plain delete the caller may combine
        with its next claim (not while stopping, nor with doc sets to release); otherwise
        everything is committed here.
        """
        started = anyio.current_time()

        def event(kind: EventKind, result: Task | None = None, message: str = "") -> None:
            self._emit(WorkerEvent(kind, task, result, message, anyio.current_time() - started))

        if self.max_claims and task.claims > self.max_claims:
            message = f"claimed {task.claims} times without finishing (max_claims {self.max_claims})"
            await self._commit_outcome(eq, task, MoveTaskError(message), event)
            return None
        taken: TakenDocs | None = None
        first_renewal_s: float | None = None
        if self.take_docs is not None:
            taken = await self._take_docs(eq, task, event)
            if taken is None:
                return None  # its outcome is written already
            # The task's lease has run since the claim: renew half a lease after it.
            first_renewal_s = self.lease_ms / 2000 - (anyio.current_time() - started)
        held, held_sets = task, taken.sets if taken is not None else []
        lease: Lease | None = None
        needs_release = True
        try:
            try:
                async with hold_lease(
                    eq, task, self.lease_ms, sets=held_sets, first_renewal_s=first_renewal_s
                ) as lease:
                    finished, outcome = await self._run_handler(task, taken)
            except DependencyError as exc:
                needs_release = False
                event("lost", message=str(exc))
                if lease is not None and lease.sets:
                    await self._release_sets_quietly(eq, lease.sets)
                return None
            held, held_sets = lease.task, lease.sets
            if not finished:
                return None  # stopped past the grace period: released below
            needs_release = False
            if outcome is None and not self._stop_requested and not held_sets:
                return _PendingDelete(held, event)
            await self._commit_outcome(eq, held, outcome, event, held_sets)
            return None
        finally:
            if needs_release:
                if lease is not None:
                    # Cancelled from outside: the lease's versions are the ones we hold.
                    held, held_sets = lease.task, lease.sets
                await self._release(eq, held, event, held_sets)

    async def _take_docs(self, eq: EntroQ, task: Task, event: Callable[..., None]) -> TakenDocs | None:
        """Claims the doc sets ``task`` needs, tied to its lease.

        Returns what to hand the handler, or None when the task's outcome has been written
        instead: quarantined (a needed doc is missing, or the request cannot be served),
        put back for a moment (a set is held by someone else), retried (take_docs raised),
        or lost (the task is no longer ours).
        """
        assert self.take_docs is not None
        try:
            items = self.take_docs(task)
            if self._take_docs_is_async:
                items = await cast(Awaitable[Iterable[DocNeedLike]], items)
            needs: list[DocNeed] = normalize_needs(cast(Iterable[DocNeedLike], items))
        except Exception as exc:
            await self._commit_outcome(eq, task, exc, event)
            return None
        if not needs:
            return TakenDocs([], [])
        try:
            claimed = await eq.claim_doc_sets(claim_request(needs), self.lease_ms, task_to_match=task)
        except DependencyError as exc:
            if exc.failures:
                # The task itself: no longer held by us at this version (its lease ran out).
                event("lost", message=str(exc))
                return None
            await self._put_back(eq, task, f"doc contention: {exc}", event)
            return None
        except InvalidArgumentError as exc:
            # Too many sets or members, a bad namespace: no retry can make it work.
            await self._commit_outcome(eq, task, MoveTaskError(f"cannot take its docs: {exc}"), event)
            return None
        except Exception as exc:
            await self._put_back(eq, task, f"taking its docs failed: {exc}", event)
            return None
        taken = TakenDocs(list(claimed.sets), list(claimed.docs))
        missing = missing_docs(needs, taken)
        if missing:
            message = "missing " + "; ".join(missing)
            await self._commit_outcome(eq, task, MoveTaskError(message), event, taken.sets)
            return None
        return taken

    async def _put_back(self, eq: EntroQ, task: Task, message: str, event: Callable[..., None]) -> None:
        """Makes ``task`` available again after the contention backoff; not a failed attempt."""
        change = contention_change(task, self.doc_contention_backoff.delay_ms(1))
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S):
            try:
                _, changed = await eq.modify(changes=[change])
                event("retried", changed[0], message)
            except DependencyError as exc:
                event("lost", message=str(exc))
            except Exception as exc:
                event("failed", message=f"{message}; putting the task back failed: {exc}")

    async def _release(
        self, eq: EntroQ, held: Task, event: Callable[..., None], sets: Sequence[Doc] = ()
    ) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHIELDED_CALL_S):
            try:
                _, changed = await eq.modify(
                    changes=[release_change(held)], doc_changes=[set_release(s) for s in sets]
                )
                event("released", changed[0], "worker stopping")
            except Exception as exc:
                event("failed", message=f"release failed: {exc}")

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
        held: Task,
        outcome: HandlerResult | Exception,
        event: Callable[..., None],
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
                event("failed", message="commit timed out; the task returns when its lease runs out")
                return
        except DependencyError as exc:
            held_sets = {(s.namespace, s.key) for s in sets}
            ours_lost = any(f.id == held.id for f in exc.failures) or any(
                not f.id and (f.namespace, f.key) in held_sets for f in exc.doc_failures
            )
            if ours_lost or kind != "done":
                event("lost", message=str(exc))
                return
            # The handler's own items conflicted, not our claim: count it as a failed attempt.
            await self._commit_outcome(eq, held, RetryTaskError(str(exc)), event, sets)
            return
        except Exception as exc:
            event("failed", message=f"commit failed: {exc}")
            return
        mine = [t for t in changed if t.id == held.id]
        event(kind, mine[0] if mine else None, message)
