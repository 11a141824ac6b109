"""EntroQ's Python worker style, async, on top of ``hold_lease``.

EntroQ's worker is docs/reference/entroq-protocol.md 3.2 and 5.1.

For code written against EntroQ's ``EntroQWorker``/``renewing()``: the same shape with
``async with`` instead of ``with``. One difference on purpose: a lost lease cancels the
work inside ``renew`` (EntroQ only logs the failed renewal and lets the work go on).
For retries, backoff and quarantine use :class:`entroq_redis.Worker`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType

import anyio

from ._client import EntroQ
from ._errors import DependencyError
from ._types import Task
from ._worker_lease import Lease, hold_lease

log = logging.getLogger("entroq_redis.worker")


class StopWorker(Exception):
    """Raised by a ``do_func`` to end :meth:`EntroQWorker.work`."""


@contextlib.asynccontextmanager
async def renewing(eq: EntroQ, task: Task, duration_s: float = 30.0) -> AsyncIterator[Callable[[], Task]]:
    """Renews ``task`` every ``duration_s / 2`` while the block runs; yields ``latest()``.

    ``latest()`` returns the newest version held. A lost lease cancels the block and raises
    DependencyError on exit.
    """
    async with hold_lease(eq, task, int(duration_s * 1000)) as lease:
        yield lambda: lease.task


class Renew:
    """``async with renew as task``: the claimed task, renewed in the background meanwhile."""

    def __init__(self, eq: EntroQ, task: Task, duration_ms: int) -> None:
        self._eq = eq
        self._task = task
        self._duration_ms = duration_ms
        self._holding: contextlib.AbstractAsyncContextManager[Lease] | None = None
        self._lease: Lease | None = None
        self.stable: Task | None = None

    async def __aenter__(self) -> Task:
        if self._holding is not None:
            raise RuntimeError("renew can be entered only once")
        self._holding = hold_lease(self._eq, self._task, self._duration_ms)
        self._lease = await self._holding.__aenter__()
        return self._task

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._holding is not None and self._lease is not None
        suppress = await self._holding.__aexit__(exc_type, exc, tb)
        # Reached only when the lease was not lost: that raises above.
        self.stable = self._lease.task
        return suppress


class Finalize:
    """``async with finalize as task``: the last renewed version, stable, to commit with."""

    def __init__(self, renew: Renew) -> None:
        self._renew = renew

    async def __aenter__(self) -> Task:
        if self._renew.stable is None:
            raise RuntimeError("finalize entered before renew was entered and exited")
        return self._renew.stable

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


DoFunc = Callable[[Renew, Finalize], Awaitable[object]]


class EntroQWorker:
    """EntroQ's Python ``EntroQWorker``: claim, then ``await do_func(renew, finalize)``, forever.

    Example::

        async def do(renew, finalize):
            async with renew as task:
                result = await work_on(task)
            async with finalize as task:
                await eq.modify(deletes=[task.as_id()])

        await EntroQWorker(eq).work("jobs", do)

    ``do_func`` raising StopWorker ends ``work``; DependencyError and TimeoutError are logged
    and the next task is claimed; any other exception is logged and work resumes after 1 s.
    """

    def __init__(self, eq: EntroQ) -> None:
        self.eq = eq
        self._stopped = False

    def stop(self) -> None:
        """Ends ``work`` after the current task."""
        self._stopped = True

    async def work(self, queue: str | Iterable[str], do_func: DoFunc, claim_duration: float = 30.0) -> None:
        duration_ms = int(claim_duration * 1000)
        while not self._stopped:
            try:
                task = await self.eq.claim(queue, duration_ms=duration_ms)
                renew = Renew(self.eq, task, duration_ms)
                await do_func(renew, Finalize(renew))
            except StopWorker:
                return
            except (DependencyError, TimeoutError) as exc:
                log.warning("task abandoned: %s", exc)
            except Exception:
                log.exception("worker error; resuming in 1 s")
                await anyio.sleep(1)
