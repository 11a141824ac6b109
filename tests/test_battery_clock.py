"""Battery row e: clock skew and clock jumps (docs/design.md 2.1: the store's clock decides).

1. Skewed services and clients: two service processes on one store, one under libfaketime at
   +1 h and one at -1 h, and worker processes at +1 h / -1 h talking to them. Leases must not
   notice: every lease is measured on the store's TIME, so a claim through the +1 h service
   holds exactly as long against the -1 h one, both services tell the store's time, and the
   commit-once workload (tests/battery/workload.py, checked by tests/battery/checker.py) ends
   with C1-C7 = 0 and no duplicate side effect at all (C8 = 0: no lease ran out).
2. The store's own clock jumps (a private Valkey under libfaketime, moved at run time): forward
   by 10 leases in the middle of the run (every lease ends at once: other workers claim again,
   the first holders are fenced off, so duplicates of the side effect are allowed and
   reported, double commits are not), then back by a minute (leases stretch) and forward again;
   C1-C7 = 0 and every task is done by the end. A second test makes the same jumps with one
   task at a time, where the outcome is certain: the forward jump lets another worker take the
   task and the first holder's commit is refused; after the backward jump nobody else can take
   a task whose lease has run out in real time, and its holder commits.

CI size: a few hundred tasks, well under a minute each; --full: thousands and more jumps.
Both use private stores and services, so they run once (skipped in CI's second pass against an
external Redis).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
from collections.abc import Iterator

import httpx
import pytest
import trio
from battery.harness import Run, finish, seed, start_workers, wait_workers
from battery.stores import PrivateValkey, libfaketime_path, private_valkey
from conftest import ServiceProcess, start_service

import entroq_redis
from entroq_redis import DependencyError, TaskData

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("ENTROQ_TEST_REDIS_URL")),
        reason="runs once, on a private store of its own (the same run as without ENTROQ_TEST_REDIS_URL)",
    ),
    pytest.mark.skipif(libfaketime_path() is None, reason="libfaketime is not installed"),
    pytest.mark.timeout(600),
]

QUEUES = ["in0", "in1"]
HOUR = 3600


@contextlib.contextmanager
def skewed(monkeypatch: pytest.MonkeyPatch, offset_s: int) -> Iterator[None]:
    """Processes started inside run ``offset_s`` seconds off (libfaketime, a fixed offset)."""
    with monkeypatch.context() as patch:
        patch.setenv("LD_PRELOAD", str(libfaketime_path()))
        patch.setenv("FAKETIME", f"{offset_s:+d}")
        patch.setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        yield


def store_now_ms(store: PrivateValkey) -> int:
    client = store.client()
    try:
        seconds, micros = client.time()
    finally:
        client.close()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_skewed_services_and_clients_leave_leases_alone(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> None:
    tasks, lease_ms, limit_s = (2000, 5000, 300) if pytestconfig.getoption("--full") else (300, 5000, 100)
    namespace = "skew"
    with private_valkey() as store:
        services: dict[int, ServiceProcess] = {}
        try:
            for offset in (HOUR, -HOUR):
                with skewed(monkeypatch, offset):
                    services[offset] = start_service(store.url, "--namespace", namespace)
            ahead, behind = services[HOUR], services[-HOUR]
            async with httpx.AsyncClient(timeout=30) as http:
                # Both services tell the store's time, not their own.
                for service in (ahead, behind):
                    told = int((await http.get(service.url + "/api/v0/time")).json()["timeMs"])
                    assert abs(told - store_now_ms(store)) < 2000, (told, store_now_ms(store))
                # A lease taken through one is held, for its length exactly, against the other.
                await http.post(
                    ahead.url + "/api/v0/modify", json={"inserts": [{"queue": "lease", "id": "t"}]}
                )
                claim = {"queues": ["lease"], "durationMs": "1500"}
                held = (
                    await http.post(ahead.url + "/api/v0/claim", json={**claim, "claimantId": "a"})
                ).json()
                lease_left = int(held["task"]["atMs"]) - store_now_ms(store)
                assert 500 < lease_left <= 1500, lease_left
                assert (
                    await http.post(behind.url + "/api/v0/claim", json={**claim, "claimantId": "b"})
                ).json() == {}
                await trio.sleep(1.6)
                taken = (
                    await http.post(behind.url + "/api/v0/claim", json={**claim, "claimantId": "b"})
                ).json()
                assert taken["task"]["id"] == "t" and taken["task"]["version"] == 2
                await http.post(
                    behind.url + "/api/v0/modify",
                    json={"claimantId": "b", "deletes": [{"id": "t", "version": 2}]},
                )
            # The commit-once workload: clients +1 h through the +1 h service and -1 h through
            # the -1 h one, nobody overrunning a lease, and no second stage (the checker counts
            # a moved task's second run as a duplicate side effect).
            run = Run(tmp_path)
            async with entroq_redis.connect(store.url, namespace=namespace) as eq:
                await seed(eq, run, tasks, QUEUES)
                for offset, service in services.items():
                    with skewed(monkeypatch, offset):
                        first = len(run.procs)
                        start_workers(
                            run, service.url, namespace, 2, queues=QUEUES, stage2="stage2", coroutines=2,
                            lease_ms=lease_ms, overrun_p=0.0, pair_p=0.1, move_p=0.0, deadline_s=limit_s - 20,
                        )  # fmt: skip
                        # start_workers names processes w0, w1 each time: keep the logs apart.
                        assert len(run.procs) == first + 2
                await wait_workers(run, limit_s)
                report = await finish(eq, run)
        finally:
            for service in services.values():
                service.stop()
    print(f"\n[battery e/skew] services and clients at +1 h and -1 h, {tasks} tasks: {report.summary()}")
    assert not report.problems(), report.problems()
    assert report.duplicates == 0, report.summary()
    for service in services.values():
        assert "Traceback" not in service.log()


async def jump_nemesis(store: PrivateValkey, lease_ms: int, rounds: int, log: list[str]) -> None:
    """Forward by 10 leases (every lease ends), back by a minute (leases stretch), forward by
    the same minute again (so that what the backward jump delayed comes due), per round."""
    for _ in range(rounds):
        await trio.sleep(0.7)
        for jump in (10 * lease_ms / 1000, -60.0, 60.0):
            await trio.to_thread.run_sync(store.advance, jump)
            log.append(f"{jump:+.0f}s")
            await trio.sleep(0.5)


async def test_store_clock_jumps_fence_late_holders_and_finish_every_task(
    tmp_path: pathlib.Path, pytestconfig: pytest.Config
) -> None:
    full = pytestconfig.getoption("--full")
    tasks, rounds, lease_ms, limit_s = (1500, 6, 2000, 400) if full else (400, 2, 2000, 120)
    namespace = "jump"
    jumps: list[str] = []
    with private_valkey(fake_clock=True) as store:
        run = Run(tmp_path)
        async with entroq_redis.connect(store.url, namespace=namespace) as eq:
            await seed(eq, run, tasks, QUEUES)
            start_workers(
                run, store.url, namespace, 3, queues=QUEUES, stage2="stage2", coroutines=2,
                lease_ms=lease_ms, overrun_p=0.3, overrun_factor=0.5, pair_p=0.1, move_p=0.1,
                deadline_s=limit_s - 20,
            )  # fmt: skip
            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(jump_nemesis, store, lease_ms, rounds, jumps)
                await wait_workers(run, limit_s)
                nursery.cancel_scope.cancel()
            report = await finish(eq, run)
            left = await eq.queues()
        elapsed = time.monotonic() - started
    print(
        f"\n[battery e/jumps] store clock jumps {' '.join(jumps)}, {tasks} tasks in {elapsed:.1f} s: "
        f"{report.summary()}"
    )
    assert not report.problems(), report.problems()
    assert set(left) <= {"done"}, left  # every source and second-stage task finished
    assert jumps, "the nemesis never jumped the clock (the run ended first)"


async def test_a_forward_jump_ends_a_lease_and_fences_its_holder_a_backward_one_stretches_it() -> None:
    # The same two jumps, one task at a time, so that the outcome is certain (in the workload a
    # lease ended by a jump is re-claimed only if another worker happens to draw that task).
    with private_valkey(fake_clock=True) as store:
        async with (
            entroq_redis.connect(store.url, namespace="fence", claimant_id="early") as early,
            entroq_redis.connect(store.url, namespace="fence", claimant_id="late") as late,
        ):
            await early.modify(inserts=[TaskData("q", id="t")])
            held = await early.try_claim("q", duration_ms=2000)
            assert held is not None and await late.try_claim("q", duration_ms=2000) is None
            await trio.to_thread.run_sync(store.advance, 20.0)  # ten leases
            taken = await late.try_claim("q", duration_ms=2000)
            assert taken is not None and taken.version == held.version + 1
            with pytest.raises(DependencyError):
                await early.modify(deletes=[held])  # fenced: a duplicate run, never a double commit
            await late.modify(deletes=[taken])
            assert await late.tasks("q") == []

            await early.modify(inserts=[TaskData("q", id="u")])
            held = await early.try_claim("q", duration_ms=2000)
            assert held is not None
            await trio.to_thread.run_sync(store.advance, -60.0)  # the lease now ends 62 s away
            await trio.sleep(2.5)  # past the lease's real length
            assert await late.try_claim("q", duration_ms=2000) is None
            assert (await early.queue_stats())[0].num_claimed == 1
            await early.modify(deletes=[held])  # its holder commits as usual
            await trio.to_thread.run_sync(store.advance, 60.0)
