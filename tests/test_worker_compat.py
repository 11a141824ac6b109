"""EntroQ's Python worker style: EntroQWorker with async renew/finalize, and renewing()."""

from __future__ import annotations

import pytest
import trio

import entroq_redis
from entroq_redis import EntroQWorker, StopWorker, Task, TaskData, renewing
from entroq_redis._worker_compat import Finalize, Renew


async def test_entroq_worker_renews_then_finalizes(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await eq.modify(inserts=[TaskData("jobs", value=str(n).encode()) for n in range(3)])
    seen: list[tuple[Task, Task]] = []
    stolen: list[Task | None] = []

    async def do(renew: Renew, finalize: Finalize) -> None:
        async with renew as task:
            await trio.sleep(1.0)  # longer than the 0.6 s lease: renewal (every 0.3 s) must cover it
            stolen.append(await other.try_claim("jobs", 10_000) if len(seen) == 2 else None)
        async with finalize as stable:
            await eq.modify(deletes=[stable.as_id()])
        seen.append((task, stable))
        if len(seen) == 3:
            raise StopWorker

    with trio.fail_after(10):
        await EntroQWorker(eq).work("jobs", do, claim_duration=0.6)
    assert sorted(t.value for t, _ in seen) == [b"0", b"1", b"2"]
    assert all(stable.version > task.version for task, stable in seen)
    assert stolen == [None, None, None]
    assert await eq.tasks("jobs") == []


async def test_finalize_before_renew_is_an_error(eq: entroq_redis.EntroQ) -> None:
    await eq.modify(inserts=[TaskData("jobs")])
    task = await eq.claim("jobs", 1_000, timeout_s=5)
    renew = Renew(eq, task, 1_000)
    with pytest.raises(RuntimeError):
        async with Finalize(renew):
            pass


async def test_renewing_yields_the_latest_version(eq: entroq_redis.EntroQ) -> None:
    await eq.modify(inserts=[TaskData("jobs", value=b"v")])
    task = await eq.claim("jobs", 1_000, timeout_s=5)
    with trio.fail_after(10):
        async with renewing(eq, task, duration_s=1.0) as latest:
            # The first renewal is due after 0.5 s; a loaded machine may take a little longer
            # (a fixed 0.35 s wait with a 0.2 s lease once saw none over HTTP), never 5 s.
            for _ in range(250):  # 5 s at most; latest() offers nothing to wait on
                if latest().version != task.version:
                    break
                await trio.sleep(0.02)
            assert latest().version > task.version
            assert latest().value == b"v"
    await eq.modify(deletes=[latest().as_id()])
