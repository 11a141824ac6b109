"""The benchmark parts. Each takes the run's Context and adds result rows."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from typing import Any

import anyio
from _harness import HERE, Results, Store, percentile
from _workloads import (
    VALUE,
    fill,
    fill_docs,
    interleaved_claims,
    run_throughput,
    spy,
    timed_claims,
    top_up,
)

import entroq_redis
from entroq_redis import TaskData
from entroq_redis._scripts import script_sha
from entroq_redis.testing import start_service


@dataclasses.dataclass
class Sizes:
    """How big each part runs: --quick is a smoke-sized run, the default the reported one."""

    seconds: float = 5.0
    warmup: float = 1.0
    startup: float = 2.0
    procs: tuple[int, ...] = (1, 2)
    claimers: tuple[int, ...] = (1, 16, 64)
    loops: tuple[str, ...] = ("trio", "uvloop")
    extra_loops: tuple[str, ...] = ("asyncio",)  # only at the target's 2 x 16
    modes: tuple[str, ...] = ("two-call", "finish")
    depths: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    depth_trials: int = 3_000
    queue_counts: tuple[int, ...] = (1, 10, 100, 1_000)
    queue_trials: int = 2_000
    wake_trials: int = 300
    wake_loops: tuple[str, ...] = ("trio", "uvloop")
    redis_benchmark_requests: int = 200_000
    http_workers: tuple[int, ...] = (1, 2)
    http_library_claimers: tuple[int, ...] = (16,)
    wrk_connections: tuple[int, ...] = (16, 64)
    authz_decisions: int = 5_000
    doc_claimers: tuple[int, ...] = (16,)
    docs_per_key: tuple[int, ...] = (1, 10)
    peer_jobs: int = 20_000  # the peers part: jobs added beforehand, per system and W
    batch_claimers: int = 16  # the batch_claim part: C = 16 loops ...
    batch_size: int = 16  # ... each claiming batches of 16

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            seconds=1.0,
            warmup=0.3,
            startup=1.5,
            procs=(1, 2),
            claimers=(16,),
            loops=("trio",),
            extra_loops=("uvloop",),
            depths=(1_000, 10_000),
            depth_trials=200,
            queue_counts=(1, 1_000),
            queue_trials=200,
            wake_trials=30,
            wake_loops=("trio",),
            redis_benchmark_requests=20_000,
            http_workers=(1,),
            wrk_connections=(16,),
            authz_decisions=300,
            docs_per_key=(1,),
            peer_jobs=2_000,
        )


@dataclasses.dataclass
class Context:
    store: Store
    results: Results
    sizes: Sizes
    scratch: pathlib.Path
    profile_dir: pathlib.Path | None = None
    throughput_rate_guess: float = 15_000.0  # jobs/s, to size fills so no run drains its queue

    def backlog(self) -> int:
        """Tasks to hold before a throughput run: enough that the queue never runs dry."""
        sizes = self.sizes
        return int(10_000 + self.throughput_rate_guess * (sizes.seconds + sizes.warmup + sizes.startup))


# --- library -------------------------------------------------------------------------------


def part_library(ctx: Context) -> None:
    """claim -> delete through the library: W processes x C claimers, both modes, per loop."""
    ns, queue = "bench-lib", "jobs"
    ctx.store.clear(ns)
    sizes = ctx.sizes
    configs = [(loop, w, c) for loop in sizes.loops for w in sizes.procs for c in sizes.claimers]
    configs += [(loop, 2, 16) for loop in sizes.extra_loops if (loop, 2, 16) not in configs]
    for loop, procs, claimers in configs:
        for mode in sizes.modes:
            depth = top_up(ctx.store.url, ns, queue, ctx.backlog())
            row = run_throughput(
                ctx.store,
                url=ctx.store.url,
                namespace=ns,
                queue=queue,
                loop=loop,
                procs=procs,
                claimers=claimers,
                mode=mode,
                seconds=sizes.seconds,
                warmup=sizes.warmup,
                startup=sizes.startup,
            )
            ctx.results.add(
                "library", loop=loop, procs=procs, claimers=claimers, mode=mode, depth_before=depth, **row
            )
    ctx.store.clear(ns)


def part_batch_claim(ctx: Context) -> None:
    """The batch target (docs/performance.md) per loop: one process of C = 16 loops, each
    claim_many(limit=16, finish=its previous batch), against the one-task path
    (try_claim(finish=its previous task), one call per job) on the same store in the same run.
    The one-task path runs right before and right after the batches; the ratio sets the batches
    against the mean of the two."""
    ns, queue = "bench-batch", "jobs"
    ctx.store.clear(ns)
    sizes = ctx.sizes
    window = sizes.seconds + sizes.warmup + sizes.startup
    for loop in sizes.loops:
        one_task: list[float] = []
        batch_rate = None
        for mode, when in (("finish", "before"), ("batch", ""), ("finish", "after")):
            # Batches go faster: size their backlog by four times the one-task rate seen.
            guess = 4 * max(one_task) if mode == "batch" and one_task else ctx.throughput_rate_guess
            depth = top_up(ctx.store.url, ns, queue, int(10_000 + guess * window))
            row = run_throughput(
                ctx.store, url=ctx.store.url, namespace=ns, queue=queue, loop=loop, procs=1,
                claimers=sizes.batch_claimers, mode=mode, seconds=sizes.seconds, warmup=sizes.warmup,
                startup=sizes.startup, extra={"batch": sizes.batch_size},
            )  # fmt: skip
            ctx.results.add(
                "batch-claim", loop=loop, procs=1, claimers=sizes.batch_claimers,
                path="one-task" if mode == "finish" else "batch",
                batch=1 if mode == "finish" else sizes.batch_size, when=when, depth_before=depth, **row,
            )  # fmt: skip
            if mode == "finish":
                one_task.append(row["jobs_per_s"])
            else:
                batch_rate = row["jobs_per_s"]
        mean = sum(one_task) / len(one_task)
        ctx.results.add(
            "batch-claim-ratio", loop=loop, procs=1, claimers=sizes.batch_claimers, batch=sizes.batch_size,
            one_task_jobs_per_s=mean, batch_jobs_per_s=batch_rate,
            ratio=batch_rate / mean if batch_rate is not None and mean else None,
        )  # fmt: skip
    ctx.store.clear(ns)


def part_docs(ctx: Context) -> None:
    """The doc loops next to the task loop, W processes x C claimers, each claimer on a key of its
    own: ``tasks`` try_claim -> delete; ``docs`` claim_docs -> change and release every doc of the
    key in one modify; ``task+docs`` try_claim -> claim_docs -> one modify deleting the task and
    changing and releasing the docs (a worker taking its task's docs). Store CPU per job as for
    the library part."""
    ns, queue, doc_ns = "bench-docs", "jobs", "bench"
    sizes = ctx.sizes
    loop = sizes.loops[0]
    for procs in sizes.procs:
        for claimers in sizes.doc_claimers:
            keys = [f"p{p}-c{c}" for p in range(procs) for c in range(claimers)]
            runs = [("tasks", 0)] + [(w, n) for n in sizes.docs_per_key for w in ("docs", "task+docs")]
            for workload, per_key in runs:
                ctx.store.clear(ns)
                if per_key:
                    fill_docs(ctx.store.url, ns, doc_ns, keys, per_key)
                if workload != "docs":
                    top_up(ctx.store.url, ns, queue, ctx.backlog())
                row = run_throughput(
                    ctx.store, url=ctx.store.url, namespace=ns, queue=queue, loop=loop, procs=procs,
                    claimers=claimers, mode="two-call" if workload == "tasks" else workload,
                    seconds=sizes.seconds, warmup=sizes.warmup, startup=sizes.startup,
                    kind="throughput" if workload == "tasks" else "docs", extra={"doc_namespace": doc_ns},
                )  # fmt: skip
                ctx.results.add(
                    "docs", workload=workload, docs_per_key=per_key or None, loop=loop, procs=procs,
                    claimers=claimers, **row,
                )  # fmt: skip
    ctx.store.clear(ns)


def part_saq(ctx: Context) -> None:
    """saq 0.26's worker (16 no-op jobs per process) in this same run, and the library at the same
    W x 16 right before and after each saq run, so the comparison is not across minutes of a
    machine whose load drifts (if saq is installed)."""
    try:
        import saq  # noqa: F401
    except ImportError:
        ctx.results.add("saq", skipped="saq is not installed (pip install saq)")
        return
    sizes = ctx.sizes
    # saq keys are not namespaced by a hash tag: its own logical database keeps them apart.
    url = ctx.store.url.rstrip("/") + "/1"
    Store(url).client.flushdb()
    ns, queue = "bench-versus", "jobs"
    ctx.store.clear(ns)
    # Each library configuration runs right before and right after saq (its mean is compared).
    groups = {"asyncio": ["trio", "asyncio"]}
    if _has_uvloop():
        groups["uvloop"] = ["uvloop"]
    procs = max(sizes.procs)

    def library(loop: str, mode: str, when: str) -> None:
        top_up(ctx.store.url, ns, queue, ctx.backlog())
        row = run_throughput(
            ctx.store, url=ctx.store.url, namespace=ns, queue=queue, loop=loop, procs=procs, claimers=16,
            mode=mode, seconds=sizes.seconds, warmup=sizes.warmup, startup=sizes.startup,
        )  # fmt: skip
        ctx.results.add("versus-saq", loop=loop, procs=procs, claimers=16, mode=mode, when=when, **row)

    for saq_loop, loops in groups.items():
        configs = [(loop, mode) for loop in loops for mode in sizes.modes]
        for loop, mode in configs:
            library(loop, mode, "before saq")
        # saq's own rate, not ours, sizes its backlog (its enqueue is far slower than a fill).
        count = int(2_000 + 5_000 * (sizes.seconds + sizes.warmup + sizes.startup))
        began = time.perf_counter()
        anyio.run(_saq_enqueue, url, count, backend="asyncio")
        enqueue_rate = count / (time.perf_counter() - began)
        saq_store = Store(url)
        row = run_throughput(
            saq_store, url=url, namespace="", queue="bench", loop=saq_loop, procs=procs, claimers=16,
            mode="saq", seconds=sizes.seconds, warmup=sizes.warmup, startup=sizes.startup, kind="saq",
        )  # fmt: skip
        for key in ("claim_p50_us", "claim_p99_us", "evalsha_us_per_job", "evalsha_calls_per_job"):
            row.pop(key)
        left = saq_store.client.llen("saq:bench:queued")
        ctx.results.add("saq", loop=saq_loop, procs=procs, claimers=16, enqueue_per_s=enqueue_rate,
                        left_queued=left, **row)  # fmt: skip
        saq_store.client.flushdb()
        for loop, mode in reversed(configs):
            library(loop, mode, "after saq")
    ctx.store.clear(ns)


async def _saq_enqueue(url: str, count: int) -> None:
    import saq

    queue = saq.Queue.from_url(url, name="bench")
    remaining = [count]

    async def enqueuer() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await queue.enqueue("noop")

    async with anyio.create_task_group() as group:
        for _ in range(32):
            group.start_soon(enqueuer)
    await queue.disconnect()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# --- queue depth, memory -------------------------------------------------------------------


def part_depth(ctx: Context) -> None:
    """Claim latency at each depth (fast preload, insert rate), memory per task, and the store
    CPU per claim -> delete job at the deepest queue.

    One queue per depth, all loaded at once. Client-side latency comes from claims that take
    turns between the queues call by call; the store-side percentiles (INFO latencystats) and
    script time per claim from a block of claims per queue."""
    ns = "bench-depth"
    ctx.store.clear(ns)
    queues = {depth: f"depth-{depth}" for depth in ctx.sizes.depths}
    rows = {}
    for depth, queue in queues.items():
        time.sleep(0.2)
        memory_before = ctx.store.snapshot().used_memory
        rate = fill(ctx.store.url, ns, queue, depth)
        memory = ctx.store.snapshot().used_memory - memory_before
        rows[depth] = {"insert_per_s": rate, "memory_bytes_per_task": memory / depth,
                       "memory_beyond_value": memory / depth - len(VALUE)}  # fmt: skip
    for depth, queue in queues.items():
        block = timed_claims(ctx.store, ns, [queue], ctx.sizes.depth_trials)
        rows[depth].update({k: v for k, v in block.items() if not k.startswith("claim_")})
        rows[depth].update(block_claim_p50_us=block["claim_p50_us"], block_claim_p99_us=block["claim_p99_us"])
    turns = interleaved_claims(ctx.store.url, ns, {d: [q] for d, q in queues.items()}, ctx.sizes.depth_trials)
    for depth in queues:
        p50, p99 = turns[depth]
        ctx.results.add("depth", depth=depth, claim_p50_us=p50, claim_p99_us=p99, **rows[depth])
    queue = queues[ctx.sizes.depths[-1]]
    deepest = ctx.sizes.depths[-1]
    sizes = ctx.sizes
    for mode in sizes.modes:
        top_up(ctx.store.url, ns, queue, deepest)
        row = run_throughput(
            ctx.store,
            url=ctx.store.url,
            namespace=ns,
            queue=queue,
            loop=sizes.loops[0],
            procs=max(sizes.procs),
            claimers=16,
            mode=mode,
            seconds=sizes.seconds,
            warmup=sizes.warmup,
            startup=sizes.startup,
        )
        ctx.results.add(
            "depth-cpu",
            depth=deepest,
            loop=sizes.loops[0],
            procs=max(sizes.procs),
            claimers=16,
            mode=mode,
            **row,
        )
    ctx.store.clear(ns)


# --- many queues -----------------------------------------------------------------------------


def part_queues(ctx: Context) -> None:
    """Claim over N named queues of which only one holds tasks (client side: the N take turns
    call by call; store side: a block of claims per N)."""
    ns = "bench-queues"
    ctx.store.clear(ns)
    names = [f"queue-{i:04d}" for i in range(max(ctx.sizes.queue_counts))]
    fill(ctx.store.url, ns, names[-1], 1_000)
    lists = {count: names[-count:] for count in ctx.sizes.queue_counts}
    blocks = {
        count: timed_claims(ctx.store, ns, queues, ctx.sizes.queue_trials) for count, queues in lists.items()
    }
    turns = interleaved_claims(ctx.store.url, ns, lists, ctx.sizes.queue_trials)
    for count, block in blocks.items():
        p50, p99 = turns[count]
        block["block_claim_p50_us"] = block.pop("claim_p50_us")
        block["block_claim_p99_us"] = block.pop("claim_p99_us")
        ctx.results.add("queues", queues=count, holding_tasks=1, claim_p50_us=p50, claim_p99_us=p99, **block)
    ctx.store.clear(ns)


# --- wake-up ---------------------------------------------------------------------------------


def part_wake(ctx: Context) -> None:
    """A blocking claim in one process; another process inserts; time until the claim returns."""
    ns, queue = "bench-wake", "wake"
    for loop in ctx.sizes.wake_loops:
        ctx.store.clear(ns)
        latencies = anyio.run(
            _wake_trials, ctx.store.url, ns, queue, loop, ctx.sizes.wake_trials, backend="trio"
        )
        ctx.results.add(
            "wake",
            loop=loop,
            trials=len(latencies),
            wake_p50_us=percentile(latencies, 50),
            wake_p99_us=percentile(latencies, 99),
            wake_max_us=max(latencies),
        )
    floor = anyio.run(_idle_round_trips, ctx.store.url, ctx.sizes.wake_trials, backend="trio")
    ctx.results.add(
        "wake",
        loop="floor: one EVALSHA `return 1` after the same 20 ms idle gap (trio, coredis)",
        trials=len(floor),
        wake_p50_us=percentile(floor, 50),
        wake_p99_us=percentile(floor, 99),
        wake_max_us=max(floor),
    )
    ctx.store.clear(ns)


async def _idle_round_trips(url: str, trials: int) -> list[float]:
    """What a single round trip costs when both processes were idle (VM wake-up latency)."""
    import coredis

    latencies = []
    async with coredis.Redis.from_url(url) as redis:
        sha = await redis.script_load("return 1")
        for _ in range(trials):
            await anyio.sleep(0.02)
            began = time.perf_counter()
            await redis.evalsha(sha, [], [])
            latencies.append((time.perf_counter() - began) * 1e6)
    return latencies


async def _wake_trials(url: str, ns: str, queue: str, loop: str, trials: int) -> list[float]:
    spec = {"kind": "wake", "url": url, "namespace": ns, "queue": queue, "loop": loop, "trials": trials}
    async with await anyio.open_process(
        [sys.executable, str(HERE / "_clients.py"), json.dumps(spec)], stderr=None
    ) as waiter:
        assert waiter.stdout is not None
        lines = _lines(waiter.stdout)
        assert await anext(lines) == "ready"
        async with entroq_redis.connect(url, namespace=ns) as eq:
            for _ in range(trials):
                # Long enough for the waiter to delete, call claim(), find nothing and wait.
                await anyio.sleep(0.02)
                await eq.modify(inserts=[TaskData(queue, value=str(time.monotonic_ns()).encode())])
                assert await anext(lines) == "got"
            report = json.loads(await anext(lines))
    return [(returned - sent) / 1e3 for sent, returned in report["received"]]


async def _lines(stream: Any) -> Any:
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()


# --- ceilings (no Python in the loop) ------------------------------------------------------


def redis_benchmark(url: str, requests: int, clients: int, *command: str, keyspace: int = 0) -> float:
    """Requests per second of one command from redis-benchmark (--csv)."""
    where = urllib.parse.urlsplit(url)
    args = ["redis-benchmark", "-h", str(where.hostname), "-p", str(where.port)]
    if where.password:  # the embedded store requires one (-u would send an empty user name)
        args += ["-a", urllib.parse.unquote(where.password)]
    args += ["-c", str(clients), "-n", str(requests), "--csv"]
    if keyspace:
        args += ["-r", str(keyspace)]
    out = subprocess.run([*args, *command], capture_output=True, text=True, check=True).stdout
    row = out.strip().splitlines()[-1]
    return float(row.split(",")[1].strip('"'))


def part_ceilings(ctx: Context) -> None:
    """The store's ceilings, driven by redis-benchmark: EVALSHA `return 1`, claim.lua alone,
    a 1-insert modify.lua alone."""
    if shutil.which("redis-benchmark") is None:
        ctx.results.add("ceiling", skipped="redis-benchmark is not installed")
        return
    client, store, n, clients = ctx.store.client, ctx.store, ctx.sizes.redis_benchmark_requests, 50
    ns, queue = "bench-ceiling", "jobs"
    prefix, index = "{" + ns + "}:", "{" + ns + "}:queues"
    ctx.store.clear(ns)
    fill(store.url, ns, queue, 1_000)
    one = client.script_load("return 1")
    client.script_load(entroq_redis._scripts.script_source("claim"))
    client.script_load(entroq_redis._scripts.script_source("modify"))
    cases = [
        (
            "EVALSHA `return 1`",
            "the store's script-call ceiling (parse, dispatch, reply)",
            ["EVALSHA", one, "0"],
        ),
        (
            "claim.lua alone",
            "one claim from a queue of 1,000 available tasks, 0 ms lease (the task stays available), "
            "random rank per call (__rand_int__)",
            [
                "EVALSHA",
                script_sha("claim"),
                "1",
                index,
                prefix,
                entroq_redis.CONTRACT_VERSION,
                "rb-claimant",
                "0",
                # n_finish, n_queues, k, form; the queue; the one slot's rank and order randoms.
                "0",
                "1",
                "1",
                "shared",
                queue,
                "__rand_int__",
                "__rand_int__",
            ],
        ),
        (
            "modify.lua, 1 insert",
            "one modify inserting one task (100-byte value, store-generated ID, PUBLISH wake); "
            "the queue grows by one per call",
            [
                "EVALSHA",
                script_sha("modify"),
                "1",
                index,
                prefix,
                entroq_redis.CONTRACT_VERSION,
                "rb-claimant",
                "rb-seed-__rand_int__",
                "PUBLISH",
                "1",
                "0",
                "0",
                "0",
                # No doc items (n_doc_inserts, n_doc_changes, n_doc_deletes, n_doc_depends).
                "0",
                "0",
                "0",
                "0",
                "",
                "inserted",
                "at",
                "0",
                VALUE.decode(),
                "0",
                "",
            ],
        ),
    ]
    for name, measures, command in cases:
        before = store.snapshot()
        rate = redis_benchmark(store.url, n, clients, *command, keyspace=2_000_000_000)
        delta = before.delta(store.snapshot())
        ctx.results.add(
            "ceiling",
            name=name,
            measures=measures,
            generator=f"redis-benchmark -c {clients}",
            calls_per_s=rate,
            script_us_per_call=delta["evalsha_usec"] / max(1, delta["evalsha_calls"]),
            store_cpu_us_per_call=delta["cpu_usec"] / max(1, delta["evalsha_calls"]),
        )
    ctx.store.clear(ns)


# --- HTTP ------------------------------------------------------------------------------------


class Service:
    """``entroq-redis serve`` on the store under test."""

    def __init__(self, store_url: str, namespace: str, workers: int) -> None:
        # HTTP only here (--grpc-port 0): never the default 37706 another run may hold.
        args = ("--namespace", namespace, "--workers", str(workers), "--grpc-port", "0")
        self.service = start_service(store_url, *args)
        self.process = self.service.process
        self.url = self.service.url
        time.sleep(0.5 + 0.5 * workers)  # spawned workers import and connect

    def close(self) -> None:
        self.service.stop(timeout=30)


def wrk(url: str, seconds: float, threads: int, connections: int, script: str, *args: str) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(HERE / "wrk" / script),
        url,
    ]
    if args:
        command += ["--", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    for line in out.splitlines():
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            return result
    raise RuntimeError(f"wrk printed no result: {out[-500:]}")


def part_http(ctx: Context) -> None:
    """The HTTP service (1 and 2 workers): wrk no-op vs wrk claim -> delete (and finish), and
    the library's HTTP backend in W processes x C."""
    ns, queue = "bench-http", "jobs"
    sizes = ctx.sizes
    have_wrk = shutil.which("wrk") is not None
    for workers in sizes.http_workers:
        ctx.store.clear(ns)
        service = Service(ctx.store.url, ns, workers)
        pids = [service.process.pid]
        try:
            if have_wrk:
                wrk_runs(ctx, service, ns, queue, workers, pids)
            for procs in sizes.procs:
                for claimers in sizes.http_library_claimers:
                    for mode in sizes.modes:
                        depth = top_up(ctx.store.url, ns, queue, ctx.backlog() // 3)
                        row = run_throughput(
                            ctx.store,
                            url=service.url,
                            namespace=ns,
                            queue=queue,
                            loop="trio",
                            procs=procs,
                            claimers=claimers,
                            mode=mode,
                            seconds=sizes.seconds,
                            warmup=sizes.warmup,
                            startup=sizes.startup,
                            extra_pids=pids,
                        )
                        ctx.results.add(
                            "http-library",
                            service_workers=workers,
                            procs=procs,
                            claimers=claimers,
                            mode=mode,
                            loop="trio",
                            depth_before=depth,
                            **row,
                        )
        finally:
            service.close()
    if not have_wrk:
        ctx.results.add("http-wrk", skipped="wrk is not installed")
    ctx.store.clear(ns)


def wrk_runs(ctx: Context, service: Service, ns: str, queue: str, workers: int, pids: list[int]) -> None:
    """No-op, claim -> delete per mode, then the no-op again (its mean is the ratio's base, so a
    drift of the machine's load during the runs shows and partly cancels)."""
    for connections in ctx.sizes.wrk_connections:
        rows = [wrk_run(ctx, service, ns, queue, workers, pids, connections, None)]
        rows += [wrk_run(ctx, service, ns, queue, workers, pids, connections, m) for m in ctx.sizes.modes]
        rows.append(wrk_run(ctx, service, ns, queue, workers, pids, connections, None))
        noop = (rows[0]["requests_per_s"] + rows[-1]["requests_per_s"]) / 2
        for row in rows:
            if "jobs_per_s" in row:
                row["ratio_vs_noop"] = row["requests_per_s"] / noop
                row["noop_mean_requests_per_s"] = noop
            ctx.results.add("http-wrk", **row)


def wrk_run(
    ctx: Context,
    service: Service,
    ns: str,
    queue: str,
    workers: int,
    pids: list[int],
    connections: int,
    mode: str | None,
) -> dict[str, Any]:
    import psutil
    from _workloads import _tree_cpu

    threads = 2
    if mode is None:
        name, script, args, url = "no-op GET /healthz", "noop.lua", [], service.url + "/healthz"
    else:
        name, script, args, url = (
            f"claim->delete ({mode})",
            "claim_delete.lua",
            [queue, ns, mode],
            service.url,
        )
        top_up(ctx.store.url, ns, queue, ctx.backlog() // 3)
    watched = [psutil.Process(pid) for pid in pids]
    cpu_before = sum(_tree_cpu(p) for p in watched)
    before = ctx.store.snapshot()
    result = wrk(url, ctx.sizes.seconds, threads, connections, script, *args)
    delta = before.delta(ctx.store.snapshot())
    service_cpu = sum(_tree_cpu(p) for p in watched) - cpu_before
    seconds = result["seconds"]
    row: dict[str, Any] = {
        "service_workers": workers,
        "name": name,
        "generator": f"wrk -t{threads} -c{connections}",
        "requests_per_s": result["requests"] / seconds,
        "request_p50_us": result["latency_p50_us"],
        "request_p99_us": result["latency_p99_us"],
        "failed": result["failed"],
        "socket_errors": result["socket_errors"],
    }
    if mode is not None:
        jobs = result["finishes_sent" if mode == "finish" else "deletes_sent"] - result["failed"]
        row.update(
            jobs_per_s=jobs / seconds,
            store_cpu_us_per_job=delta["cpu_usec"] / max(1, jobs),
            evalsha_us_per_job=delta["evalsha_usec"] / max(1, jobs),
            # Store calls per job: 2 (claim, delete) or 1 (finish) unless the service batches
            # concurrent claims into one call (core/claim_batcher.py).
            evalsha_calls_per_job=delta["evalsha_calls"] / max(1, jobs),
        )
    row["service_cpu_cores"] = service_cpu / seconds
    row["service_cpu_us_per_request"] = service_cpu * 1e6 / max(1, result["requests"])
    return row


# --- profiles ------------------------------------------------------------------------------


def part_profile(ctx: Context) -> None:
    """py-spy over the library claim -> delete path (1 process x 16, trio and uvloop), and over
    the HTTP service under wrk claim -> delete; own CPU time by package."""
    if shutil.which("py-spy") is None:
        ctx.results.add("profile", skipped="py-spy is not installed")
        return
    out_dir = ctx.profile_dir or ctx.scratch
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = ctx.sizes
    ns, queue = "bench-profile", "jobs"
    ctx.store.clear(ns)
    for loop in dict.fromkeys((sizes.loops[0], "uvloop" if _has_uvloop() else "asyncio")):
        for mode in sizes.modes:
            top_up(ctx.store.url, ns, queue, ctx.backlog())
            out = out_dir / f"library-{loop}-{mode}.txt"
            row = run_throughput(
                ctx.store,
                url=ctx.store.url,
                namespace=ns,
                queue=queue,
                loop=loop,
                procs=1,
                claimers=16,
                mode=mode,
                seconds=max(2.0, sizes.seconds),
                warmup=sizes.warmup,
                startup=sizes.startup,
                profile_out=str(out),
            )
            ctx.results.add(
                "profile",
                target=f"library {loop} 1x16 {mode}",
                jobs_per_s=row["jobs_per_s"],
                client_cpu_cores=row["client_cpu_cores"],
                profile=out.name,
                **summarize_profile(out),
            )
    if shutil.which("wrk") is not None:
        profile_service(ctx, out_dir, ns, queue)
    ctx.store.clear(ns)


# Frames whose inclusive share of the service's CPU says where a request's time goes.
SERVICE_FRAMES = {
    "route handler (server/entroq_redis_server/http_front.py observe wrapper)": (
        "observe.<locals>.decorate.<locals>.wrapper (server/"
    ),
    "  library call (RedisBackend._call)": "RedisBackend._call (entroq_redis/",
    "  JSON (protobuf json_format)": "protobuf/json_format.py",
    "  authorization hook (server/entroq_redis_server/core/hooks.py)": (
        "(server/entroq_redis_server/core/hooks.py"
    ),
    "  metrics (prometheus_client)": "(prometheus_client/",
    "response send (hypercorn app_send)": "HTTPStream.app_send (hypercorn/",
    "request read and parse (hypercorn _read_data)": "TCPServer._read_data (hypercorn/",
    "Quart request context push": "RequestContext.push (quart/",
    "socket syscalls (trio _nonblocking_helper)": "_SocketType._nonblocking_helper (trio/",
}


def profile_service(ctx: Context, out_dir: pathlib.Path, ns: str, queue: str) -> None:
    """py-spy on the service (1 worker) under wrk: no-op, claim -> delete, finish; CPU per request
    from the process's CPU time, split by the inclusive share of a few frames."""
    import psutil
    from _workloads import _tree_cpu

    seconds = max(2.0, ctx.sizes.seconds)
    ctx.store.clear(ns)
    service = Service(ctx.store.url, ns, 1)
    try:
        runs = [("no-op", "noop.lua", service.url + "/healthz", [])]
        runs += [(mode, "claim_delete.lua", service.url, [queue, ns, mode]) for mode in ctx.sizes.modes]
        for name, script, url, args in runs:
            if args:
                top_up(ctx.store.url, ns, queue, ctx.backlog() // 3)
            out = out_dir / f"http-service-{name}.txt"
            process = psutil.Process(service.process.pid)
            cpu_before = _tree_cpu(process)
            profiler = spy(service.process.pid, seconds, str(out))
            result = wrk(url, seconds, 2, 16, script, *args)
            cpu = _tree_cpu(process) - cpu_before
            if profiler is not None:
                profiler.wait(60)
            rate = result["requests"] / result["seconds"]
            shares = inclusive_shares(out, SERVICE_FRAMES)
            per_request = cpu * 1e6 / max(1, result["requests"])
            ctx.results.add(
                "profile", target=f"HTTP service (1 worker) under wrk {name}", requests_per_s=rate,
                service_cpu_us_per_request=per_request, profile=out.name,
                us_per_request_by_frame={k: round(v * per_request / 100) for k, v in shares.items()},
                **summarize_profile(out),
            )  # fmt: skip
    finally:
        service.close()


def inclusive_shares(path: pathlib.Path, frames: dict[str, str]) -> dict[str, float]:
    """Percent of samples whose stack holds each named frame."""
    counts = dict.fromkeys(frames, 0)
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        total += int(count_text)
        for name, needle in frames.items():
            if needle in stack:
                counts[name] += int(count_text)
    return {k: round(100 * v / total, 1) for k, v in counts.items()} if total else {}


# py-spy names a frame "function (path:line)", the path relative to its sys.path entry.
PACKAGES = {
    "entroq_redis": "entroq_redis",
    "server": "entroq_redis_server",
    "entroq_redis_server": "entroq_redis_server",
    "coredis": "coredis",
    "anyio": "anyio",
    "trio": "trio",
    "uvloop": "uvloop",
    "asyncio": "asyncio",
    "quart": "quart",
    "quart_trio": "quart",
    "hypercorn": "hypercorn",
    "h11": "h11",
    "werkzeug": "werkzeug/flask",
    "flask": "werkzeug/flask",
    "google": "protobuf",
    "prometheus_client": "prometheus",
    "httpx": "httpx",
    "httpcore": "httpx",
}


def _package(frame: str) -> str:
    match = re.search(r"\(([^()]*?)(?::\d+)?\)$", frame)
    path = match.group(1) if match else ""
    head = path.split("/", 1)[0] if "/" in path else ""
    if head in PACKAGES:
        return PACKAGES[head]
    if path.startswith("_clients.py"):
        return "benchmark client"
    return "stdlib/other"


def summarize_profile(path: pathlib.Path) -> dict[str, Any]:
    """Own (leaf-frame) samples by package and the hottest leaf functions, from py-spy raw output."""
    if not path.exists():
        return {"profile_error": "no profile written (py-spy needs ptrace)"}
    by_package: dict[str, int] = {}
    by_function: dict[str, int] = {}
    ours_inclusive = 0
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = frames[-1]
        total += count
        package = _package(leaf)
        by_package[package] = by_package.get(package, 0) + count
        function = re.sub(r":\d+\)$", ")", leaf)
        by_function[function] = by_function.get(function, 0) + count
        if any(_package(f) == "entroq_redis" for f in frames):
            ours_inclusive += count
    if not total:
        return {"profile_error": "empty profile"}
    shares = {k: round(100 * v / total, 1) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])}
    top = sorted(by_function.items(), key=lambda kv: -kv[1])[:8]
    return {
        "samples": total,
        "own_percent_by_package": shares,
        "entroq_redis_inclusive_percent": round(100 * ours_inclusive / total, 1),
        "top_leaf_functions": [f"{round(100 * v / total, 1)}% {k}" for k, v in top],
    }
