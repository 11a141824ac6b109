"""The peers part: this library's ``Worker`` next to BullMQ for Node and taskiq, in one run.

Each system gets the same job: ``peer_jobs`` no-op jobs added beforehand in bulk, then W worker
processes x 16 concurrent jobs each, started together (every process connects first and
reports ready; then all get the go at once). jobs/s counts from the first completion to the
last, across the processes; store CPU per job is the store's ``INFO cpu`` (user + sys) from
the go until every process has stopped, over the jobs; client CPU per job is the worker
processes' own CPU time between their first and last completion.

- ``Worker``: ``entroq_redis.Worker(concurrency=16)`` with a no-op async handler, through
  ``connect(redis://...)`` (claim, then the delete riding on the next claim: fenced, leased),
  on trio and on asyncio + uvloop; the queue is filled with the library's modify batches.
- BullMQ for Node: its own ``Worker`` (concurrency 16, no-op processor, completed jobs
  removed), benchmarks/node/bullmq_bench.mjs; the jobs are added with ``Queue.addBulk``.
  Skipped with the reason when node or npm is missing.
- taskiq: its receiver (``max_async_tasks=16``) on taskiq-redis's ``RedisStreamBroker``
  (consumer group, 100 messages per XREADGROUP, XACK after the task: at-least-once by idle
  timeout, not fenced), asyncio + uvloop. Skipped when taskiq-redis is not installed.

Every system's keys carry a ``{bench-...}`` hash-tag prefix on the run's store (BullMQ's
``prefix``, taskiq's stream name), so they are deleted like every other part's.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from _harness import HERE
from _node import NodeUnavailable, bullmq_program, bullmq_version
from _parts import Context, _has_uvloop
from _workloads import fill

CONCURRENCY = 16
WORKER = "entroq-redis Worker"


def part_peers(ctx: Context) -> None:
    """Worker (trio, uvloop), BullMQ for Node and taskiq at W x 16, in turns for each W."""
    sizes = ctx.sizes
    count = sizes.peer_jobs
    loops = ["trio", "uvloop"] if _has_uvloop() else ["trio"]
    try:
        node: list[str] | None = bullmq_program()
        bullmq = f"BullMQ {bullmq_version()} (Node)"
    except NodeUnavailable as exc:
        node, bullmq = None, "BullMQ (Node)"
        ctx.results.add("peers", system=bullmq, skipped=str(exc))
    taskiq = _taskiq_name()
    if taskiq is None:
        ctx.results.add(
            "peers", system="taskiq", skipped="taskiq-redis is not installed (pip install -e '.[bench]')"
        )
    for procs in sizes.procs:
        rows: list[dict[str, Any]] = []
        for loop in loops:
            rows.append(_run_worker(ctx, loop, procs, count))
        if node is not None:
            rows.append(_run_bullmq(ctx, node, bullmq, procs, count))
        if taskiq is not None:
            rows.append(_run_taskiq(ctx, taskiq, procs, count))
        # Our Worker against BullMQ's, same W, same run (the target: at least 1.3).
        reference = next((r["jobs_per_s"] for r in rows if r["system"] == bullmq), None)
        for row in rows:
            ratio = row["jobs_per_s"] / reference if reference and row["system"] == WORKER else None
            ctx.results.add("peers", **row, worker_vs_bullmq=ratio)


def _taskiq_name() -> str | None:
    try:
        from importlib.metadata import version

        import taskiq_redis  # noqa: F401
    except ImportError:
        return None
    return f"taskiq {version('taskiq')} (taskiq-redis {version('taskiq-redis')} streams)"


def _run_worker(ctx: Context, loop: str, procs: int, count: int) -> dict[str, Any]:
    ns, queue = "bench-peers", "jobs"
    ctx.store.clear(ns)
    rate = fill(ctx.store.url, ns, queue, count)
    spec = {"url": ctx.store.url, "namespace": ns, "queue": queue, "loop": loop, "concurrency": CONCURRENCY}
    command = [sys.executable, str(HERE / "_peer_clients.py"), "worker"]
    row = _measure(ctx, [command] * procs, spec, count)
    ctx.store.clear(ns)
    return {
        "system": WORKER,
        "loop": loop,
        "procs": procs,
        "concurrency": CONCURRENCY,
        "fill_per_s": rate,
        **row,
    }


def _run_bullmq(ctx: Context, node: list[str], name: str, procs: int, count: int) -> dict[str, Any]:
    ns = "bench-bullmq"
    ctx.store.clear(ns)
    spec = {"url": ctx.store.url, "prefix": "{" + ns + "}", "queue": "jobs", "concurrency": CONCURRENCY}
    added = _one_shot([*node, "fill", json.dumps({**spec, "count": count})])
    row = _measure(ctx, [[*node, "work"]] * procs, spec, count)
    ctx.store.clear(ns)
    rate = added["added"] / added["seconds"]
    return {
        "system": name,
        "loop": "node",
        "procs": procs,
        "concurrency": CONCURRENCY,
        "fill_per_s": rate,
        **row,
    }


def _run_taskiq(ctx: Context, name: str, procs: int, count: int) -> dict[str, Any]:
    ns = "bench-taskiq"
    ctx.store.clear(ns)
    loop = "uvloop" if _has_uvloop() else "asyncio"
    spec = {"url": ctx.store.url, "queue": "{" + ns + "}:jobs", "loop": loop, "concurrency": CONCURRENCY}
    script = str(HERE / "_peer_clients.py")
    added = _one_shot([sys.executable, script, "taskiq-fill", json.dumps({**spec, "count": count})])
    row = _measure(ctx, [[sys.executable, script, "taskiq"]] * procs, spec, count)
    ctx.store.clear(ns)
    rate = added["added"] / added["seconds"]
    return {
        "system": name,
        "loop": loop,
        "procs": procs,
        "concurrency": CONCURRENCY,
        "fill_per_s": rate,
        **row,
    }


def _one_shot(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _measure(ctx: Context, commands: list[list[str]], spec: dict[str, Any], count: int) -> dict[str, Any]:
    """Starts the worker processes, waits until each is ready, starts them together, waits
    until ``count`` jobs are done, stops them and returns the row's figures."""
    progress = [
        str(ctx.scratch / f"peer-{os.getpid()}-{time.monotonic_ns()}-{i}") for i in range(len(commands))
    ]
    processes = [
        subprocess.Popen(
            [*command, json.dumps({**spec, "progress": path})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for command, path in zip(commands, progress, strict=True)
    ]
    try:
        _wait_for(lambda: all(os.path.exists(p) for p in progress), processes, 120, "the workers to connect")
        before = ctx.store.snapshot()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        # Generous: a stalled system fails the part rather than hanging the run.
        _wait_for(
            lambda: sum(_read(p) for p in progress) >= count, processes, 60 + count / 200, f"{count} jobs"
        )
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        reports = []
        for process in processes:
            assert process.stdout is not None
            out = process.stdout.read()  # it prints its report and exits once its stdin is closed
            if process.wait(timeout=60) != 0:
                raise RuntimeError(f"a peer worker process failed (exit {process.returncode})")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        delta = before.delta(ctx.store.snapshot())
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for path in progress:
            pathlib.Path(path).unlink(missing_ok=True)
    jobs = sum(r["jobs"] for r in reports)
    ran = [r for r in reports if r["first"] is not None]
    seconds = max(r["last"] for r in ran) - min(r["first"] for r in ran)
    client_cpu = sum(r["cpu_s"] or 0.0 for r in ran)
    return {
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds if seconds > 0 else math.nan,
        "store_cpu_us_per_job": delta["cpu_usec"] / jobs if jobs else math.nan,
        "client_cpu_us_per_job": client_cpu * 1e6 / jobs if jobs else math.nan,
        "per_process_jobs": [r["jobs"] for r in reports],
    }


def _read(path: str) -> int:
    try:
        return int(pathlib.Path(path).read_text() or 0)
    except (OSError, ValueError):
        return 0


def _wait_for(done: Any, processes: list[subprocess.Popen[str]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"a peer worker process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
