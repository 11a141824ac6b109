"""The library's ``Worker`` on no-op jobs: W processes x C in flight, claim to finish.

    python benchmarks/worker_noop.py [--jobs 20000] [--procs 1] [--concurrency 16]
        [--loops trio,uvloop] [--repeats 2] [--url redis://...] [--profile DIR]
        [--variant NAME=SOURCE_DIR]...

Starts the embedded Valkey (unless --url), fills a queue with ``--jobs`` tasks (100-byte
values) before each run, starts W worker processes (each a ``Worker`` with ``concurrency``
C and a handler that returns None at once) and times them from a common start until the
queue is empty. Loops and repeats alternate in one run, so their figures share the machine's
load. Prints one JSON line per run: jobs/s, client CPU us per job (the worker processes),
store CPU us per job and script calls per job (INFO commandstats, EVALSHA).

With --variant, each run is repeated with the worker processes importing ``entroq_redis``
from another source tree (``git archive <commit> entroq_redis lua | tar -x -C DIR``), so an
older Worker and this one are measured in the same run; ``NAME=`` is the installed library.

With --profile DIR, py-spy samples the first worker process of each run (raw collapsed
stacks in DIR) and the heaviest frames, by own time and by time under them, are printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import anyio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _harness import Store
from _workloads import fill, spy

import entroq_redis
from entroq_redis import Task, Worker

NAMESPACE, QUEUE = "bench-worker", "jobs"


async def _noop(task: Task) -> None:
    return None


async def _child(spec: dict[str, Any]) -> dict[str, Any]:
    offset = time.time() - time.perf_counter()
    async with entroq_redis.connect(spec["url"], namespace=NAMESPACE) as eq:
        await eq.time()  # connected (scripts loaded) before the clock starts
        worker = Worker(eq, QUEUE, _noop, lease_ms=30_000, concurrency=spec["concurrency"])
        await anyio.sleep(max(0.0, spec["start_at"] - offset - time.perf_counter()))
        cpu_before = time.process_time()
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            # The store alone knows when every process's jobs are done.
            give_up = time.perf_counter() + spec["timeout_s"]
            while await eq.queues(exact=[QUEUE]) and time.perf_counter() < give_up:  # noqa: ASYNC110
                await anyio.sleep(0.02)
            left = (await eq.queues(exact=[QUEUE])).get(QUEUE, 0)
            ended = time.perf_counter() + offset
            cpu_s = time.process_time() - cpu_before
            worker.stop(grace_s=5)
    return {"done": worker.counts["done"], "ended": ended, "cpu_s": cpu_s, "left": left}


def _run_child(spec: dict[str, Any]) -> None:
    loop = spec["loop"]
    if loop == "trio":
        report = anyio.run(_child, spec, backend="trio")
    else:
        report = anyio.run(_child, spec, backend="asyncio", backend_options={"use_uvloop": loop == "uvloop"})
    print(json.dumps(report), flush=True)


def _top_frames(path: str, count: int = 12) -> dict[str, list[tuple[str, float]]]:
    """The frames with the most samples of their own, and the library's with the most under them."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as stacks:
        for line in stacks:
            stack, _, samples = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(samples)
            frames = stack.split(";")
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                if "entroq_redis/" in frame:  # the rest of each stack is the loop's plumbing
                    under[frame] += n

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / total, 1)) for frame, n in counter.most_common(count)]

    return {"own_pct": share(own), "under_pct": share(under)}


def _one_run(
    store: Store, args: argparse.Namespace, loop: str, variant: tuple[str, str], profile: str | None
) -> dict[str, Any]:
    name, source = variant
    env = {**os.environ, "PYTHONPATH": source} if source else None
    store.clear(NAMESPACE)
    fill(store.url, NAMESPACE, QUEUE, args.jobs)
    start_at = time.time() + 2.0
    spec = {
        "url": store.url,
        "concurrency": args.concurrency,
        "loop": loop,
        "start_at": start_at,
        "timeout_s": 120.0,
    }
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(args.procs)
    ]
    profiler = None
    if profile:
        time.sleep(max(0.0, start_at - time.time()))
        # An over-estimate of the run's length; py-spy stops early when its process ends.
        profiler = spy(children[0].pid, args.jobs / 2_000, profile)
    time.sleep(max(0.0, start_at - time.time() - 0.05))
    before = store.snapshot()
    reports = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        if child.returncode != 0:
            raise RuntimeError(f"a worker process failed (exit {child.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    delta = before.delta(store.snapshot())
    if profiler is not None:
        profiler.wait(120)
    seconds = max(r["ended"] for r in reports) - start_at
    done = sum(r["done"] for r in reports)
    row: dict[str, Any] = {
        "variant": name,
        "loop": loop,
        "procs": args.procs,
        "concurrency": args.concurrency,
        "jobs": done,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(done / seconds),
        "client_cpu_us_per_job": round(sum(r["cpu_s"] for r in reports) * 1e6 / done, 1),
        # Counted from just before the start to after the last worker stopped: the fill is out.
        "store_cpu_us_per_job": round(delta["cpu_usec"] / done, 1),
        "script_calls_per_job": round(delta["evalsha_calls"] / done, 3),
        # Tasks still in the queue when a worker gave up waiting (120 s): a stuck run.
        "left": max(r["left"] for r in reports),
    }
    if profile and os.path.exists(profile):
        row["profile"] = profile
        row.update(_top_frames(profile))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help="a store to use (default: start the embedded Valkey)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--loops", default="trio,uvloop", help="comma-separated: trio, asyncio, uvloop")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", metavar="DIR", help="py-spy the first worker process of each run")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SOURCE_DIR",
        help="another entroq_redis to run",
    )
    args = parser.parse_args()
    if args.child:
        _run_child(json.loads(args.child))
        return
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(args.url) if args.url else Store.embedded(scratch)
        try:
            variants = [tuple(v.split("=", 1)) for v in args.variant] or [("", "")]
            for repeat in range(args.repeats):
                for loop in args.loops.split(","):
                    for variant in variants:
                        profile = None
                        if args.profile:
                            os.makedirs(args.profile, exist_ok=True)
                            profile = os.path.join(args.profile, f"worker-{variant[0]}-{loop}-{repeat}.txt")
                        row = _one_run(store, args, loop, (variant[0], variant[1]), profile)
                        print(json.dumps(row), flush=True)
        finally:
            store.clear(NAMESPACE)
            store.close()


if __name__ == "__main__":
    main()
