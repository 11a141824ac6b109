"""The Worker against a real store (and, through ``eq``, every backend in BACKENDS)."""

from __future__ import annotations

import time

import anyio
import pytest
import trio

import entroq_redis
from entroq_redis import (
    Backoff,
    Finish,
    MoveTaskError,
    RetryTaskError,
    Task,
    TaskData,
    Worker,
    WorkerEvent,
)


def busy(seconds: float) -> None:
    """Keeps a thread on the CPU (pure Python, so it holds the GIL most of the time)."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1


async def test_mix_of_outcomes_ends_every_task_where_it_should(eq: entroq_redis.EntroQ) -> None:
    names = ["ok", "flaky", "poison", "move", "boom", "finish", "keep", "badresult"]
    inserted, _ = await eq.modify(inserts=[TaskData("jobs", value=n.encode()) for n in names])
    by_name = {t.value.decode(): t for t in inserted}
    runs: dict[str, int] = dict.fromkeys(names, 0)
    events: list[WorkerEvent] = []
    all_settled = trio.Event()

    def record(event: WorkerEvent) -> None:
        events.append(event)
        if worker.counts["done"] == 4 and worker.counts["quarantined"] == 4:
            all_settled.set()

    async def handle(task: Task) -> Finish | None:
        name = task.value.decode()
        runs[name] += 1
        if name == "flaky" and task.attempt < 2:
            raise RetryTaskError(f"not yet {task.attempt}")
        if name == "poison":
            raise RetryTaskError("always bad")
        if name == "move":
            raise MoveTaskError("cannot ever work")
        if name == "boom":
            raise ValueError("kaboom")
        if name == "finish":
            return Finish(inserts=[TaskData("out", value=b"made by finish")])
        if name == "keep":
            return Finish(changes=[task.as_change(queue="kept", at=None, value=b"kept!")])
        if name == "badresult":
            return "not a Finish"  # type: ignore[return-value]
        return None

    worker = Worker(
        eq,
        "jobs",
        handle,
        lease_ms=2_000,
        concurrency=4,
        max_attempts=3,
        backoff=Backoff.fixed(20),
        on_event=record,
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await all_settled.wait()
            worker.stop()

    assert await eq.tasks("jobs") == []
    assert [t.value for t in await eq.tasks("out")] == [b"made by finish"]
    [kept] = await eq.tasks("kept")
    assert (kept.id, kept.value, kept.claimant) == (by_name["keep"].id, b"kept!", "")

    quarantined = {t.value.decode(): t for t in await eq.tasks("jobs/err")}
    assert set(quarantined) == {"poison", "move", "boom", "badresult"}
    poison = quarantined["poison"]
    assert (poison.id, poison.attempt) == (by_name["poison"].id, 3)
    assert poison.err == "always bad\nalways bad\nalways bad"
    assert (quarantined["move"].attempt, quarantined["move"].err) == (1, "cannot ever work")
    assert quarantined["boom"].attempt == 3
    assert quarantined["boom"].err == "\n".join(["ValueError: kaboom"] * 3)
    assert quarantined["badresult"].err.startswith("TypeError: a handler returns None or Finish")
    now = await eq.time()
    assert all(t.at_ms <= now and t.claimant == "" for t in quarantined.values())

    assert runs == {
        "ok": 1,
        "flaky": 3,
        "poison": 3,
        "move": 1,
        "boom": 3,
        "finish": 1,
        "keep": 1,
        "badresult": 3,
    }
    assert worker.counts["retried"] == 2 + 2 + 2 + 2
    assert worker.counts["lost"] == worker.counts["failed"] == 0
    flaky_retries = [e.message for e in events if e.task.id == by_name["flaky"].id and e.kind == "retried"]
    assert flaky_retries == ["not yet 0", "not yet 1"]


async def test_retry_delay_comes_from_the_error_or_the_backoff(
    eq: entroq_redis.EntroQ,
) -> None:
    await eq.modify(inserts=[TaskData("jobs", value=b"explicit"), TaskData("jobs", value=b"policy")])

    async def handle(task: Task) -> None:
        if task.value == b"explicit":
            raise RetryTaskError("later", delay_ms=60_000)
        raise RetryTaskError("policy")

    worker = Worker(eq, "jobs", handle, lease_ms=2_000, backoff=Backoff.fixed(30_000), max_tasks=2)
    before = await eq.time()
    with trio.fail_after(10):
        await worker.run()
    after = await eq.time()
    tasks = {t.value: t for t in await eq.tasks("jobs")}
    assert before + 60_000 <= tasks[b"explicit"].at_ms <= after + 60_000
    assert before + 30_000 <= tasks[b"policy"].at_ms <= after + 30_000
    # A delayed retry stays with its worker's claimant (docs/design.md 2.7), attempt counted.
    assert {t.claimant for t in tasks.values()} == {worker.claimant_id}
    assert {t.attempt for t in tasks.values()} == {1}


def test_backoff_policies() -> None:
    fixed = Backoff.fixed(500)
    assert [fixed.delay_ms(n) for n in (1, 2, 10)] == [500, 500, 500]
    exponential = Backoff.exponential(100, 1_000, jitter=0)
    assert [exponential.delay_ms(n) for n in (1, 2, 3, 4, 5, 10_000)] == [100, 200, 400, 800, 1_000, 1_000]
    jittered = Backoff.exponential(1_000, 10_000, jitter=0.5)
    delays = [jittered.delay_ms(2) for _ in range(200)]
    assert all(1_000 <= d <= 2_000 for d in delays) and len(set(delays)) > 1
    with pytest.raises(ValueError):
        Backoff(jitter=2)


@pytest.mark.parametrize("style", ["sync handler", "async handler with to_thread"])
async def test_cpu_bound_handler_does_not_starve_renewal(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ, style: str
) -> None:
    # Long enough that a renewal (every lease / 2) survives a loaded 2-core CI machine with
    # the busy thread holding the GIL; the handler still outlives three leases.
    lease_ms = 1000
    [task], _ = await eq.modify(inserts=[TaskData("cpu", value=b"crunch")])
    started = trio.Event()

    def crunch_sync(task: Task) -> None:
        trio.from_thread.run_sync(started.set)
        busy(lease_ms * 3 / 1000)

    async def crunch_async(task: Task) -> None:
        started.set()
        await anyio.to_thread.run_sync(busy, lease_ms * 3 / 1000)

    handler = crunch_sync if style == "sync handler" else crunch_async
    events: list[WorkerEvent] = []
    worker = Worker(eq, "cpu", handler, lease_ms=lease_ms, max_tasks=1, on_event=events.append)
    stolen: list[Task] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            # For 3 leases' time another claimant keeps trying: renewal must keep it out.
            while not events:
                if (got := await other.try_claim("cpu", 10_000)) is not None:
                    stolen.append(got)
                await trio.sleep(lease_ms / 6000)
    assert stolen == []
    assert [e.kind for e in events] == ["done"]
    assert await eq.tasks("cpu") == []
    assert events[0].task.id == task.id


async def test_lost_lease_cancels_the_handler_and_commits_nothing(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    lease_ms = 400
    [task], _ = await eq.modify(inserts=[TaskData("jobs", value=b"contested")])
    started, cancelled = trio.Event(), trio.Event()

    async def handle(task: Task) -> Finish:
        started.set()
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled.set()
            raise
        return Finish(inserts=[TaskData("out", value=b"must never appear")])

    events: list[WorkerEvent] = []
    worker = Worker(eq, "jobs", handle, lease_ms=lease_ms, max_tasks=1, on_event=events.append)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            # An operator force-releases the task (as its holder, like `mod --force`) and
            # another worker claims it: the version moves on and the first holder is fenced.
            [held] = await eq.tasks(ids=[task.id])
            await other.modify(changes=[held.as_change(at=None)], unsafe_claimant_id=held.claimant)
            thief = await other.claim("jobs", 60_000, timeout_s=5)
            await cancelled.wait()
    assert [e.kind for e in events] == ["lost"]
    assert await eq.tasks("out") == []
    [now_held] = await eq.tasks("jobs")
    assert (now_held.version, now_held.claimant) == (thief.version, other.claimant_id)


async def test_lease_adopts_its_own_applied_renewal(eq: entroq_redis.EntroQ) -> None:
    # A renewal whose reply is lost leaves the holder one version behind its own task; the
    # next renewal must notice the task is still ours and carry on, not declare it lost.
    await eq.modify(inserts=[TaskData("jobs", value=b"v")])
    task = await eq.claim("jobs", 300, timeout_s=5)
    with trio.fail_after(10):
        async with entroq_redis.hold_lease(eq, task, 300) as lease:
            behind_our_back = await eq.renew_for(task, 300)
            await trio.sleep(0.5)
            assert lease.task.version > behind_our_back.version
    assert lease.lost is None
    await eq.modify(deletes=[lease.task.as_id()])


async def test_graceful_stop_finishes_quick_work_and_releases_the_rest(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await eq.modify(inserts=[TaskData("jobs", value=v) for v in (b"quick", b"slow1", b"slow2")])
    running: set[bytes] = set()
    all_running, release_quick = trio.Event(), trio.Event()

    async def handle(task: Task) -> None:
        running.add(task.value)
        if len(running) == 3:
            all_running.set()
        if task.value == b"quick":
            await release_quick.wait()
            return
        await trio.sleep(60)

    worker = Worker(eq, "jobs", handle, lease_ms=5_000, concurrency=3)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await all_running.wait()
            stop_at = trio.current_time()
            worker.stop(grace_s=0.3)
            release_quick.set()
        # run() returned: within the grace period plus the release round trips.
        assert trio.current_time() - stop_at < 2.0

    assert (worker.counts["done"], worker.counts["released"]) == (1, 2)
    left = await eq.tasks("jobs")
    assert sorted(t.value for t in left) == [b"slow1", b"slow2"]
    now = await eq.time()
    assert all(t.at_ms <= now and t.claimant == "" and t.attempt == 0 and t.err == "" for t in left)
    # Released means another worker gets them at once, not after the 5 s lease.
    claimed = [await other.try_claim("jobs", 1_000) for _ in range(2)]
    assert sorted(t.value for t in claimed if t) == [b"slow1", b"slow2"]


async def test_cancelling_run_releases_running_tasks(eq: entroq_redis.EntroQ) -> None:
    await eq.modify(inserts=[TaskData("jobs", value=b"x")])
    started = trio.Event()

    async def handle(task: Task) -> None:
        started.set()
        await trio.sleep(60)

    worker = Worker(eq, "jobs", handle, lease_ms=10_000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            nursery.cancel_scope.cancel()
    [task] = await eq.tasks("jobs")
    assert task.at_ms <= await eq.time() and task.claimant == ""
    assert worker.counts["released"] == 1


async def test_max_claims_quarantines_without_running(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await eq.modify(inserts=[TaskData("jobs", value=b"crashes its workers")])
    for _ in range(2):  # two workers that died holding it (claims count, nothing recorded)
        assert await other.try_claim("jobs", 0) is not None
    ran: list[Task] = []

    async def handle(task: Task) -> None:
        ran.append(task)

    worker = Worker(eq, "jobs", handle, lease_ms=2_000, max_claims=2, max_tasks=1)
    with trio.fail_after(10):
        await worker.run()
    assert ran == []
    [task] = await eq.tasks("jobs/err")
    assert (task.claims, task.attempt) == (3, 1)
    assert task.err == "claimed 3 times without finishing (max_claims 2)"


async def test_err_queue_mapping_is_configurable(eq: entroq_redis.EntroQ) -> None:
    await eq.modify(inserts=[TaskData("in/a", value=b"x")])

    async def handle(task: Task) -> None:
        raise MoveTaskError("bad input")

    worker = Worker(eq, "in/a", handle, lease_ms=2_000, err_queue=lambda q: "dead/" + q, max_tasks=1)
    with trio.fail_after(10):
        await worker.run()
    [task] = await eq.tasks("dead/in/a")
    assert task.err == "bad input"
