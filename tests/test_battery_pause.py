"""Battery row d: a holder frozen past its lease (the GC-pause nemesis) can never commit late.

A worker process (tests/battery/pauser.py) claims a round of tasks and is frozen with
SIGSTOP before it commits. While it is frozen the leases run out and a rival claims every
task; then the frozen worker resumes and commits each task it still believes it holds.
Every one of those late commits must be refused with a typed dependency error (never a
5xx), whatever the rival did meanwhile: committed the task (it is gone: DELETE/missing),
still holds it (DELETE/mismatch), or gave it back (DELETE/mismatch, released). Each task is
one trial; rounds of 50 keep the run short.

The other half of the rule (docs/design.md 2.9, EntroQ's): when nobody claimed the task while its
holder was frozen, the late commit is accepted, exactly once: the version did not move, so
that commit is still the only one.

The history of both processes then goes through the checker (C1-C7 = 0).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
from typing import Any

import pytest
import trio
from battery.checker import check
from battery.harness import snapshot
from battery.history import EffectLog, HistoryWriter, claimed, final_record, load, task_out
from conftest import ServiceProcess, start_service

import entroq_redis
from entroq_redis import TaskChange, TaskData

PAUSER = pathlib.Path(__file__).parent / "battery" / "pauser.py"
ROUND = 50
# Long enough that the pauser takes a whole round before its first lease runs out.
LEASE_MS = 1000
# (contested trials, uncontested trials)
TRIALS = {"ci": (150, 50), "full": (1_000, 200)}


class Pauser:
    """The frozen worker: a separate process driven line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PAUSER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, command: str, timeout_s: float = 30) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        assert ready, f"pauser did not answer {command!r} in {timeout_s} s"
        return dict(json.loads(self.process.stdout.readline()))

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        if self.process.poll() is None:
            with contextlib.suppress(AssertionError, ValueError, OSError):
                self.ask("exit", timeout_s=5)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()


async def commit(
    eq: entroq_redis.EntroQ, history: HistoryWriter, effects: EffectLog, task: entroq_redis.Task
) -> None:
    """The rival's commit: delete the task, insert its commit marker."""
    marker = json.dumps({"src": task.id, "v": task.version, "stage": "done", "p": "rival"})
    done = TaskData("done", id=f"r-{task.id}-{task.version}", value=marker.encode())
    fields: dict[str, Any] = {"batch": done.id, "claimant": eq.claimant_id}
    with history.op("modify", ins=[[done.id, "done"]], dels=[[task.id, task.version]], **fields) as record:
        inserted, _ = await eq.modify(inserts=[done], deletes=[task.as_id()])
        record["out"] = [task_out(t) for t in inserted]
    effects.committed(task)


async def rival_takes(
    eq: entroq_redis.EntroQ, history: HistoryWriter, effects: EffectLog, queue: str, count: int, then: str
) -> list[entroq_redis.Task]:
    """Claims ``count`` tasks as soon as their leases run out, then commits, holds or releases
    them; returns the ones it holds."""
    taken: list[entroq_redis.Task] = []
    with trio.fail_after(10 + LEASE_MS / 1000):
        while len(taken) < count:
            with history.op("claim", queues=[queue], claimant=eq.claimant_id) as record:
                task = await eq.try_claim(queue, 60_000)
                if task is not None:
                    record["task"] = claimed(task)
            if task is None:
                await trio.sleep(0.01)
                continue
            effects.effect(task)
            taken.append(task)
    if then == "hold":
        return taken
    for task in taken:
        if then == "commit":
            await commit(eq, history, effects, task)
        else:
            change = TaskChange(task.id, task.version, queue, value=task.value)  # at = now: released
            fields = {"batch": f"release-{task.id}", "claimant": eq.claimant_id}
            with history.op("modify", chg=[[task.id, task.version, queue]], **fields) as record:
                _, changed = await eq.modify(changes=[change])
                record["out"] = [task_out(t) for t in changed]
    return []


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)])]
)
@pytest.mark.parametrize("via", ["redis", "http"])
async def test_a_holder_paused_past_its_lease_cannot_commit(
    via: str, size: str, store_url: str, namespace: str, tmp_path: pathlib.Path
) -> None:
    contested, uncontested = TRIALS[size]
    service: ServiceProcess | None = None
    url = store_url
    if via == "http":
        service = start_service(store_url, "--namespace", namespace)
        url = service.url
    history = HistoryWriter(tmp_path / "history-rival.jsonl", "rival")
    effects = EffectLog(tmp_path / "effects-rival.jsonl", "rival")
    paths = [str(tmp_path / "history-pauser.jsonl"), str(tmp_path / "effects-pauser.jsonl")]
    pauser = Pauser(url, namespace, *paths)
    late: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[int] = collections.Counter()
    unopposed: collections.Counter[str] = collections.Counter()
    sources: list[str] = []
    try:
        async with entroq_redis.connect(store_url, namespace=namespace) as eq:
            rounds = (contested + uncontested) // ROUND
            for number in range(rounds):
                queue = f"p{number}"
                ids = [f"{queue}-{i}" for i in range(ROUND)]
                with history.op("modify", batch=f"seed{number}", ins=[[i, queue] for i in ids]) as record:
                    inserted, _ = await eq.modify(inserts=[TaskData(queue, id=i) for i in ids])
                    record["out"] = [task_out(t) for t in inserted]
                sources += ids
                held = await trio.to_thread.run_sync(pauser.ask, f"claim {queue} {ROUND} {LEASE_MS}")
                assert sorted(i for i, _ in held["claimed"]) == sorted(ids)
                pauser.freeze()
                held_by_rival: list[entroq_redis.Task] = []
                try:
                    if number < contested // ROUND:
                        then = ("commit", "hold", "release")[number % 3]
                        held_by_rival = await rival_takes(eq, history, effects, queue, ROUND, then)
                    else:
                        await trio.sleep(LEASE_MS / 1000 + 0.2)  # the leases run out; nobody claims
                finally:
                    pauser.thaw()
                answer = await trio.to_thread.run_sync(pauser.ask, "commit")
                for _id, _version, outcome, status in answer["results"]:
                    (late if number < contested // ROUND else unopposed)[outcome] += 1
                    statuses[status] += 1
                for task in held_by_rival:
                    await commit(eq, history, effects, task)
            # The rival finishes what it released, so every source ends committed once.
            queues = [f"p{number}" for number in range(rounds)]
            while True:
                with history.op("claim", queues=queues, claimant=eq.claimant_id) as record:
                    task = await eq.try_claim(queues, 60_000)
                    if task is not None:
                        record["task"] = claimed(task)
                if task is None:
                    break
                await commit(eq, history, effects, task)
            history.write(final_record(await snapshot(eq)))
    finally:
        pauser.close()
        history.close()
        effects.close()
        if service is not None:
            service.stop()
    report = check(
        load([tmp_path / "history-rival.jsonl", paths[0]]),
        load([tmp_path / "effects-rival.jsonl", paths[1]]),
        sources=sources,
    )
    print(
        f"\n[battery d/{via}/{size}] late commits after a rival claimed: {dict(late)}; "
        f"after nobody did: {dict(unopposed)}; HTTP statuses {dict(statuses)}; {report.summary()}"
    )
    assert sum(late.values()) == contested
    assert set(late) <= {"refused:DELETE/missing", "refused:DELETE/mismatch"}, late
    assert unopposed == {"ok": uncontested}
    if via == "http":
        assert set(statuses) <= {200, 404}, statuses  # refusals are typed 404s, never 5xx
    assert not report.problems(), report.problems()
    assert report.stale_accepted.count == 0 and report.commits_refused == contested
