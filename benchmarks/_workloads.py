"""Workloads the parts are built from: fills, timed throughput runs, sequential claim timing."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import anyio
from _harness import Store, collect, measure_window, percentile, start_clients

import entroq_redis
from entroq_redis import DocData, TaskData

VALUE = b"v" * 100  # docs/design.md 5: 100-byte values


async def _fill(
    url: str, namespace: str, queue: str, count: int, batch: int, concurrency: int, value: bytes
) -> float:
    sizes = [min(batch, count - start) for start in range(0, count, batch)]
    items = [TaskData(queue, value=value)] * batch
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        await eq.time()  # connected (and the scripts loaded) before the clock starts
        began = time.perf_counter()

        async def loader() -> None:
            while sizes:
                size = sizes.pop()
                await eq.modify(inserts=items[:size])

        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(loader)
        return time.perf_counter() - began


def fill(
    url: str,
    namespace: str,
    queue: str,
    count: int,
    batch: int = 1000,
    concurrency: int = 4,
    value: bytes = VALUE,
) -> float:
    """Inserts ``count`` tasks with 100-byte values through the library (modify batches of
    ``batch`` inserts, ``concurrency`` in flight, pipelined on coredis's connections);
    returns inserts per second (connecting not counted)."""
    if count <= 0:
        return math.nan
    seconds = anyio.run(_fill, url, namespace, queue, count, batch, concurrency, value, backend="trio")
    return count / seconds


async def _fill_docs(url: str, namespace: str, doc_namespace: str, keys: list[str], per_key: int) -> None:
    items = [
        DocData(doc_namespace, id=f"{key}/{n}", key=key, secondary_key=str(n), content=VALUE)
        for key in keys
        for n in range(per_key)
    ]
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        for start in range(0, len(items), 1000):
            await eq.modify(doc_inserts=items[start : start + 1000])


def fill_docs(url: str, namespace: str, doc_namespace: str, keys: list[str], per_key: int) -> None:
    """Inserts ``per_key`` docs (100-byte contents) under each key, for the doc loops."""
    anyio.run(_fill_docs, url, namespace, doc_namespace, keys, per_key, backend="trio")


async def _size(url: str, namespace: str, queue: str) -> int:
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        return (await eq.queues(exact=[queue])).get(queue, 0)


def queue_size(url: str, namespace: str, queue: str) -> int:
    return int(anyio.run(_size, url, namespace, queue, backend="trio"))


def top_up(url: str, namespace: str, queue: str, target: int, value: bytes = VALUE) -> int:
    """Fills the queue up to ``target`` tasks; returns the size it has now."""
    size = queue_size(url, namespace, queue)
    if size < target:
        fill(url, namespace, queue, target - size, value=value)
    return max(size, target)


def spy(pid: int, seconds: float, out: str, subprocesses: bool = False) -> subprocess.Popen[bytes] | None:
    """Starts py-spy on a process for ``seconds`` (raw collapsed stacks to ``out``)."""
    binary = shutil.which("py-spy")
    if binary is None:
        return None
    command = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        out,
    ]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_throughput(
    store: Store,
    *,
    url: str,
    namespace: str,
    queue: str,
    loop: str,
    procs: int,
    claimers: int,
    mode: str,
    seconds: float,
    warmup: float,
    kind: str = "throughput",
    startup: float = 2.0,
    profile_out: str | None = None,
    extra_pids: Sequence[int] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs ``procs`` client processes x ``claimers`` and measures one window.

    ``extra_pids`` (e.g. the HTTP service) have their CPU time measured over the window too.
    With ``profile_out``, py-spy samples the first client process over the window. ``extra``
    goes into the client spec as it is (the doc loops' ``doc_namespace``).
    """
    import psutil

    start_at = time.time() + startup
    spec = {
        "kind": kind,
        "url": url,
        "namespace": namespace,
        "queue": queue,
        "loop": loop,
        "claimers": claimers,
        "mode": mode,
        "start_at": start_at,
        "warmup": warmup,
        "seconds": seconds,
        "duration_ms": 30_000,
        **(extra or {}),
    }
    processes = start_clients([spec] * procs, tempfile.gettempdir())
    spies = []
    watched = [psutil.Process(pid) for pid in extra_pids]
    try:
        time.sleep(max(0.0, start_at + warmup - time.time() - 0.2))
        if profile_out:
            spies.append(spy(processes[0].pid, seconds, profile_out))
        extra_before = sum(_tree_cpu(p) for p in watched)
        deltas = measure_window(store, start_at + warmup, seconds)
        extra_after = sum(_tree_cpu(p) for p in watched)
        reports = collect(processes, timeout=seconds + warmup + 120)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for profiler in spies:
        if profiler is not None:
            profiler.wait(60)
    jobs = sum(r["jobs"] for r in reports)
    latencies = [x for r in reports for x in r["latencies_us"]]
    client_cpu = sum(r["cpu_s"] or 0.0 for r in reports)
    result = {
        "jobs_per_s": jobs / seconds,
        "claim_p50_us": percentile(latencies, 50),
        "claim_p99_us": percentile(latencies, 99),
        "store_cpu_us_per_job": deltas["cpu_usec"] / jobs if jobs else math.nan,
        "evalsha_us_per_job": deltas["evalsha_usec"] / jobs if jobs else math.nan,
        "evalsha_calls_per_job": deltas["evalsha_calls"] / jobs if jobs else math.nan,
        "client_cpu_us_per_job": client_cpu * 1e6 / jobs if jobs else math.nan,
        "client_cpu_cores": client_cpu / seconds,
        "store_cpu_cores": deltas["cpu_usec"] / 1e6 / seconds,
        "jobs": jobs,
        "empty_claims": sum(r["empty"] for r in reports),
        "errors": sum(r["errors"] for r in reports),
    }
    if watched:
        service_cpu = extra_after - extra_before
        result["service_cpu_us_per_job"] = service_cpu * 1e6 / jobs if jobs else math.nan
        result["service_cpu_cores"] = service_cpu / seconds
    return result


def _tree_cpu(process: Any) -> float:
    """CPU seconds of a process and its children (the service's worker processes)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except Exception:
            continue
        total += times.user + times.system
    return total


async def _timed_claims(url: str, namespace: str, queues: list[str], trials: int) -> list[float]:
    """Sequential try_claim with a 0 ms lease (the task stays available, so the queue keeps
    its depth); returns each call's latency in us."""
    latencies = []
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        for _ in range(min(50, trials)):  # warm up connections and script cache
            await eq.try_claim(queues, 0)
        perf = time.perf_counter
        for _ in range(trials):
            began = perf()
            task = await eq.try_claim(queues, 0)
            latencies.append((perf() - began) * 1e6)
            if task is None:
                raise RuntimeError(f"nothing to claim in {queues[:3]}...")
    return latencies


def timed_claims(store: Store, namespace: str, queues: list[str], trials: int) -> dict[str, float]:
    """Client-side claim latency p50/p99, the store's script time per claim, and (on a store we
    started) the store's own EVALSHA latency percentiles over the same calls."""
    owned = store.reset_latency()
    before = store.snapshot()
    latencies = anyio.run(_timed_claims, store.url, namespace, queues, trials, backend="trio")
    delta = before.delta(store.snapshot())
    store_side = store.evalsha_latency() if owned else {}
    return {
        **store_side,
        "claim_p50_us": percentile(latencies, 50),
        "claim_p99_us": percentile(latencies, 99),
        "script_us_per_claim": delta["evalsha_usec"] / max(1, delta["evalsha_calls"]),
        "trials": trials,
    }


async def _interleaved_claims(
    url: str, namespace: str, queue_lists: dict[int, list[str]], trials: int
) -> dict[int, list[float]]:
    latencies: dict[int, list[float]] = {key: [] for key in queue_lists}
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        for queues in queue_lists.values():
            for _ in range(20):
                await eq.try_claim(queues, 0)
        perf = time.perf_counter
        for _ in range(trials):
            for key, queues in queue_lists.items():
                began = perf()
                task = await eq.try_claim(queues, 0)
                latencies[key].append((perf() - began) * 1e6)
                if task is None:
                    raise RuntimeError(f"nothing to claim in {queues[:3]}...")
    return latencies


def interleaved_claims(
    url: str, namespace: str, queue_lists: dict[int, list[str]], trials: int
) -> dict[int, Any]:
    """Client-side claim latency per case, the cases taking turns call by call (0 ms leases), so
    a burst of load from elsewhere on the machine hits every case alike and their ratio holds."""
    runs = anyio.run(_interleaved_claims, url, namespace, queue_lists, trials, backend="trio")
    return {key: (percentile(v, 50), percentile(v, 99)) for key, v in runs.items()}
