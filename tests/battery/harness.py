"""Running the battery's workloads: seeding, worker processes, nemeses, the final snapshot."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

import entroq_redis
from entroq_redis import TaskData

from .checker import Report, check
from .history import HistoryWriter, final_record, load, task_out

WORKLOAD = pathlib.Path(__file__).with_name("workload.py")


@dataclasses.dataclass
class Run:
    """One workload run's files and processes."""

    directory: pathlib.Path
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    sources: list[str] = dataclasses.field(default_factory=list)
    pauses: int = 0
    started: float = 0.0
    elapsed_s: float = 0.0

    def history_paths(self) -> list[pathlib.Path]:
        return sorted(self.directory.glob("history-*.jsonl"))

    def effect_paths(self) -> list[pathlib.Path]:
        return sorted(self.directory.glob("effects-*.jsonl"))

    def worker_events(self) -> dict[str, int]:
        """The Worker events of every process (worker mode), summed."""
        total: dict[str, int] = {}
        for path in self.directory.glob("summary-*.json"):
            for kind, count in json.loads(path.read_text()).items():
                total[kind] = total.get(kind, 0) + count
        return total

    def setup_history(self) -> HistoryWriter:
        return HistoryWriter(self.directory / "history-setup.jsonl", "setup")


async def seed(
    eq: entroq_redis.EntroQ, run: Run, count: int, queues: Sequence[str], value_bytes: int = 16
) -> None:
    """Inserts ``count`` source tasks (client-chosen IDs) over ``queues``, logged as modifies."""
    history = run.setup_history()
    try:
        for start in range(0, count, 1000):
            batch = [
                TaskData(queues[i % len(queues)], id=f"s-{i}", value=b"%d:" % i + b"x" * value_bytes)
                for i in range(start, min(count, start + 1000))
            ]
            with history.op("modify", batch=f"seed-{start}", ins=[[d.id, d.queue] for d in batch]) as record:
                inserted, _ = await eq.modify(inserts=batch)
                record["out"] = [task_out(t) for t in inserted]
            run.sources += [d.id or "" for d in batch]
    finally:
        history.close()


def start_workers(
    run: Run, url: str, namespace: str, count: int, program: pathlib.Path = WORKLOAD, **config: Any
) -> None:
    """Starts ``count`` processes of ``program`` (workload.py, or doc_workload.py; see its
    Config for ``config``)."""
    run.started = time.monotonic()
    for n in range(count):
        settings = {
            "url": url,
            "namespace": namespace,
            "proc": f"w{n}",
            "history": str(run.directory / f"history-w{n}.jsonl"),
            "effects": str(run.directory / f"effects-w{n}.jsonl"),
            "summary": str(run.directory / f"summary-w{n}.json"),
            "seed": n,
            **config,
        }
        log = open(run.directory / f"worker-w{n}.log", "wb")  # noqa: SIM115 (the child owns it)
        run.procs.append(
            subprocess.Popen([sys.executable, str(program), json.dumps(settings)], stdout=log, stderr=log)
        )
        log.close()


async def wait_workers(run: Run, timeout_s: float) -> None:
    """Waits until every worker exits; kills the rest at the timeout and fails."""
    try:
        with trio.fail_after(timeout_s):
            for proc in run.procs:
                while proc.poll() is None:  # noqa: ASYNC110 (another process; nothing to wait on)
                    await trio.sleep(0.05)
    finally:
        stop_workers(run)
        run.elapsed_s = time.monotonic() - run.started
    failed = [(n, p.returncode) for n, p in enumerate(run.procs) if p.returncode != 0]
    if failed:
        logs = {n: (run.directory / f"worker-w{n}.log").read_text()[-2000:] for n, _ in failed}
        raise AssertionError(f"workers failed: {failed}: {logs}")


def stop_workers(run: Run) -> None:
    for proc in run.procs:
        if proc.poll() is None:
            # A paused worker must be resumed to die cleanly from SIGKILL's point of view.
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait()


class CommitProgress:
    """Counts the commits the workers have logged so far (effects files, read incrementally).

    Crash nemeses kill at fractions of the work done rather than after fixed sleeps: on a
    fast machine a fixed schedule outlives a small workload and the last kills never happen.
    """

    def __init__(self, run: Run) -> None:
        self._run = run
        self._offsets: dict[pathlib.Path, int] = {}
        self.count = 0

    def update(self) -> int:
        for path in self._run.effect_paths():
            with open(path, "rb") as file:
                file.seek(self._offsets.get(path, 0))
                chunk = file.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            self.count += complete.count(b'"phase":"committed"')
        return self.count


async def crash_nemesis(
    run: Run,
    crash: Any,
    kills: int,
    expected_commits: int,
    min_gap_s: float,
    kill_times: list[float],
    seed: int = 0,
) -> None:
    """Calls ``crash`` (blocking: kill and restart) ``kills`` times, spread over the first
    ~80% of ``expected_commits`` (jittered), at least ``min_gap_s`` apart, so every kill
    lands while work is in flight however fast the machine runs the workload."""
    rng = random.Random(seed)
    progress = CommitProgress(run)
    for n in range(kills):
        target = expected_commits * 0.8 * (n + rng.uniform(0.5, 1.0)) / kills
        await trio.sleep(min_gap_s)
        while progress.update() < target:
            if all(p.poll() is not None for p in run.procs):
                return
            await trio.sleep(0.02)
        kill_times.append(time.monotonic())
        await trio.to_thread.run_sync(crash)


async def pause_nemesis(run: Run, pause_s: float, every_s: tuple[float, float], seed: int = 0) -> None:
    """Freezes a random live worker (SIGSTOP) for ``pause_s``, again and again (Jepsen's
    "pause"): its leases run out while it cannot notice, and it commits late when resumed."""
    rng = random.Random(seed)
    while True:
        await trio.sleep(rng.uniform(*every_s))
        alive = [p for p in run.procs if p.poll() is None]
        if not alive:
            return
        victim = rng.choice(alive)
        os.kill(victim.pid, signal.SIGSTOP)
        try:
            await trio.sleep(pause_s)
        finally:
            if victim.poll() is None:
                os.kill(victim.pid, signal.SIGCONT)
        run.pauses += 1


async def snapshot(eq: entroq_redis.EntroQ) -> list[entroq_redis.Task]:
    """Every task of the client's namespace (each queue listed in pages)."""
    tasks: list[entroq_redis.Task] = []
    for queue in await eq.queues():
        tasks += await eq.tasks(queue)
    return tasks


async def finish(eq: entroq_redis.EntroQ, run: Run) -> Report:
    """Takes the final snapshot, writes it into the history and checks everything."""
    final = final_record(await snapshot(eq))
    (run.directory / "history-final.jsonl").write_text(json.dumps(final) + "\n")
    return check(load(run.history_paths()), load(run.effect_paths()), sources=run.sources)
