"""What a worker's handler can ask for, and the modify each outcome becomes.

I/O free: the worker loop (``_worker.py``) runs the handler and sends these modifies.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from ._doc_types import Doc, DocChange, DocData, DocID
from ._types import Task, TaskChange, TaskData, TaskID
from ._worker_docs import set_release

# Longest err a worker writes. Errors accumulate one line per failed attempt; past this the
# oldest lines are dropped so a task retried forever cannot grow its err without bound (the
# store refuses an err over 1 MiB).
MAX_ERR_CHARS = 64 * 1024

ErrQueueMap = Callable[[str], str]


def default_err_queue(queue: str) -> str:
    """EntroQ's default quarantine queue: ``<queue>/err``."""
    return queue + "/err"


class RetryTaskError(Exception):
    """Raised by a handler: try the task again later.

    The task's attempt goes up by one, ``message`` is appended to its err, and it becomes
    available again after ``delay_ms`` (default: the worker's backoff policy). Once attempt
    reaches the worker's ``max_attempts`` the task is quarantined instead.
    """

    def __init__(self, message: str, *, delay_ms: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.delay_ms = delay_ms


class MoveTaskError(Exception):
    """Raised by a handler: this task cannot succeed, quarantine it now.

    The task's attempt goes up by one, ``message`` is appended to its err, and it moves to
    ``queue`` (default: the worker's error queue for its inbox), available at once.
    """

    def __init__(self, message: str, *, queue: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.queue = queue


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """A handler's own commit, applied atomically when the handler returns it.

    Versions of the handled task (in ``changes``, ``deletes`` and ``depends``) are replaced
    by the version the worker holds after its last renewal, so build them from the task the
    handler received. Unless the handled task is itself changed or deleted here, it is
    deleted in the same modify. A change built with ``task.as_change(...)`` keeps the claim's
    arrival (the task stays invisible until the lease would have run out); pass ``at=None``
    to make it available at once.

    The ``doc_*`` items join the same modify: with a worker that takes docs (``take_docs``),
    change or delete the docs the handler was handed (build the changes with
    ``doc.as_change(...)``). The doc set locks the worker holds are released in that modify
    too, unless a ``doc_changes`` lease change names the set (its version is then set to the
    one held, as for the task).
    """

    inserts: Sequence[TaskData] = ()
    changes: Sequence[TaskChange] = ()
    deletes: Sequence[Task | TaskID] = ()
    depends: Sequence[Task | TaskID] = ()
    doc_inserts: Sequence[DocData] = ()
    doc_changes: Sequence[DocChange] = ()
    doc_deletes: Sequence[Doc | DocID] = ()
    doc_depends: Sequence[Doc | DocID] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before a retried task is tried again.

    The delay after the n-th failed attempt is ``base_ms * factor ** (n - 1)``, capped at
    ``max_ms``, then shortened by a random fraction of up to ``jitter`` (so workers that
    failed together do not retry together, and the cap stays a cap).
    """

    base_ms: int = 30_000
    factor: float = 2.0
    max_ms: int = 3_600_000
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.max_ms < 0:
            raise ValueError("backoff delays must not be negative")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")

    @classmethod
    def fixed(cls, delay_ms: int, *, jitter: float = 0.0) -> Backoff:
        """The same delay after every failure."""
        return cls(delay_ms, 1.0, delay_ms, jitter)

    @classmethod
    def exponential(cls, base_ms: int, max_ms: int, *, factor: float = 2.0, jitter: float = 0.2) -> Backoff:
        """``base_ms`` after the first failure, ``factor`` times longer after each next one."""
        return cls(base_ms, factor, max_ms, jitter)

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        """The delay after failed attempt number ``attempt`` (1 for the first failure)."""
        # The exponent is bounded so a huge attempt count cannot overflow the float.
        exponent = min(max(attempt - 1, 0), 64)
        delay = min(self.base_ms * self.factor**exponent, float(self.max_ms))
        draw = (rng or random).random()
        return int(delay * (1 - self.jitter * draw))


def append_err(old: str, message: str) -> str:
    """EntroQ's AppendingErr: ``old + "\\n" + message``, or just message when old is empty."""
    text = f"{old}\n{message}" if old else message
    if len(text) > MAX_ERR_CHARS:
        text = text[-MAX_ERR_CHARS:]
        newline = text.find("\n")
        if 0 <= newline < len(text) - 1:
            text = text[newline + 1 :]
    return text


def exception_message(exc: BaseException) -> str:
    """The err line for an exception that is neither RetryTaskError nor MoveTaskError."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def quarantine_change(task: Task, message: str, queue: str) -> TaskChange:
    """Moves ``task`` to ``queue`` now, counting the attempt and recording why."""
    return task.as_change(queue=queue, at=None, attempt=task.attempt + 1, err=append_err(task.err, message))


def retry_change(
    task: Task, message: str, *, delay_ms: int, err_queue: str, max_attempts: int
) -> tuple[TaskChange, bool]:
    """The change for a failed attempt: retry after ``delay_ms``, or quarantine.

    As in EntroQ's Go worker, the task is quarantined when ``max_attempts`` is set and this
    failure brings attempt to it, so a task runs at most ``max_attempts`` times.

    Returns:
        (change, quarantined)
    """
    attempt = task.attempt + 1
    if max_attempts and attempt >= max_attempts:
        return quarantine_change(task, message, err_queue), True
    change = task.as_change(attempt=attempt, err=append_err(task.err, message), delay_ms=delay_ms)
    return change, False


def contention_change(task: Task, delay_ms: int) -> TaskChange:
    """Puts ``task`` back for ``delay_ms``: a doc set it needs is held by someone else.

    Not a failure of the task: attempt and err stay as they are. A lease-mode change moves
    only the arrival, so the value need not travel again.
    """
    return TaskChange(
        task.id, task.version, task.queue, old_queue=task.queue, delay_ms=delay_ms, mode="lease"
    )


def release_change(task: Task) -> TaskChange:
    """Gives the claim back: available to every worker now, nothing else changed."""
    # A lease-mode change moves only the arrival, so the value need not travel again.
    return TaskChange(task.id, task.version, task.queue, old_queue=task.queue, mode="lease")


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """The arguments of one modify."""

    inserts: Sequence[TaskData] = ()
    changes: Sequence[TaskChange] = ()
    deletes: Sequence[TaskID] = ()
    depends: Sequence[TaskID] = ()
    doc_inserts: Sequence[DocData] = ()
    doc_changes: Sequence[DocChange] = ()
    doc_deletes: Sequence[DocID] = ()
    doc_depends: Sequence[DocID] = ()


def releasing(commit: Commit, sets: Sequence[Doc]) -> Commit:
    """``commit`` releasing the doc set locks ``sets`` too, in the same modify."""
    if not sets:
        return commit
    return dataclasses.replace(commit, doc_changes=[*commit.doc_changes, *(set_release(s) for s in sets)])


def _doc_id(item: Doc | DocID) -> DocID:
    return item.as_id() if isinstance(item, Doc) else item


def finish_commit(finish: Finish | None, held: Task, sets: Sequence[Doc] = ()) -> Commit:
    """The modify that finishes ``held`` (its stable, last renewed version).

    ``sets`` are the doc set locks held with the task (their last renewed versions): each is
    released in this modify unless the finish names it in a lease change, whose version is
    then set to the held one.
    """
    if finish is None:
        return releasing(Commit(deletes=[held.as_id()]), sets)

    def patched(item: Task | TaskID) -> TaskID:
        task_id = item.as_id() if isinstance(item, Task) else item
        if task_id.id == held.id:
            return TaskID(held.id, held.version, task_id.queue)
        return task_id

    changes = [
        dataclasses.replace(change, version=held.version) if change.id == held.id else change
        for change in finish.changes
    ]
    deletes = [patched(item) for item in finish.deletes]
    touched = any(c.id == held.id for c in changes) or any(d.id == held.id for d in deletes)
    if not touched:
        deletes.append(held.as_id())
    held_sets = {(s.namespace, s.key): s for s in sets}
    doc_changes: list[DocChange] = []
    for doc_change in finish.doc_changes:
        named = (doc_change.namespace, doc_change.key)
        held_set = held_sets.pop(named, None) if doc_change.is_set_ref() else None
        if held_set is not None:
            doc_change = dataclasses.replace(doc_change, version=held_set.version)
        doc_changes.append(doc_change)
    commit = Commit(
        list(finish.inserts),
        changes,
        deletes,
        [patched(item) for item in finish.depends],
        list(finish.doc_inserts),
        doc_changes,
        [_doc_id(item) for item in finish.doc_deletes],
        [_doc_id(item) for item in finish.doc_depends],
    )
    return releasing(commit, list(held_sets.values()))
