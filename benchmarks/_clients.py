"""One benchmark client process: ``python benchmarks/_clients.py '<json spec>'``.

Prints one JSON line (its report) on stdout when done. Kinds:

- ``throughput``: C concurrent claimers through the library (redis:// or http:// URL), each
  looping claim -> delete (``two-call``: try_claim, then modify deleting the task) or
  finish-and-claim (``finish``: try_claim(finish=[previous task]), one call per job), or
  batches (``batch``: claim_many(limit=``batch``, finish=the previous batch), one call per
  batch; a job is counted when the call that deletes it returns). Counts
  the jobs completed and the claim latencies of calls started inside the measured window,
  and the process's own CPU time over it.
- ``wake``: a blocking claimer for the wake-up benchmark: claims N tasks one at a time with
  ``claim()`` (blocking), deleting each, and reports the monotonic clock when each claim
  returned together with the task's value (the inserter's clock at send time).
- ``saq``: saq's own worker with C concurrent no-op jobs (comparison; needs saq installed).
- ``docs``: C concurrent claimers through the library, each on a doc key of its own
  (``p<process index>-c<claimer>``) in doc namespace ``doc_namespace``, looping claim_docs ->
  one modify changing every claimed doc and releasing it (``docs``), or try_claim a task ->
  claim_docs -> one modify deleting the task and changing and releasing the docs
  (``task+docs``, a worker that takes its task's docs). Counted as ``throughput`` is; the
  latencies are the claim_docs calls'.

The event loop is trio, asyncio, or asyncio on uvloop (``loop``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

import entroq_redis


def _run(loop: str, main: Any, *args: Any) -> Any:
    if loop == "trio":
        return anyio.run(main, *args, backend="trio")
    return anyio.run(main, *args, backend="asyncio", backend_options={"use_uvloop": loop == "uvloop"})


async def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    offset = time.time() - time.perf_counter()
    start = spec["start_at"] + spec["warmup"] - offset
    end = start + spec["seconds"]
    queue, duration = spec["queue"], spec["duration_ms"]
    finish_mode = spec["mode"] == "finish"
    batch_size = int(spec.get("batch", 0)) if spec["mode"] == "batch" else 0
    counts = {"jobs": 0, "claims": 0, "empty": 0, "errors": 0}
    latencies: list[float] = []
    cpu: list[float] = []

    async with entroq_redis.connect(spec["url"], namespace=spec["namespace"]) as eq:
        await eq.time()  # connected before the clock starts

        async def batch_claimer() -> None:
            held: list[entroq_redis.Task] = []
            perf = time.perf_counter
            while True:
                began = perf()
                if began >= end:
                    break
                try:
                    tasks = await eq.claim_many(
                        queue, batch_size, duration, timeout_s=max(0.001, end - began), finish=held
                    )
                except entroq_redis.ClaimTimeoutError:
                    tasks = []  # the window ended; the finish was deleted by the first attempt
                except entroq_redis.EntroQError:
                    counts["errors"] += 1
                    held = []
                    continue
                claimed = perf()
                inside = start <= began
                if inside:
                    latencies.append(claimed - began)
                    counts["claims"] += 1
                    counts["empty"] += not tasks
                if held and inside and claimed <= end:
                    counts["jobs"] += len(held)
                held = tasks

        async def claimer() -> None:
            if batch_size:
                await batch_claimer()
                return
            held: entroq_redis.Task | None = None
            perf = time.perf_counter
            while True:
                began = perf()
                if began >= end:
                    break
                try:
                    if finish_mode:
                        task = await eq.try_claim(queue, duration, finish=(held,) if held else ())
                    else:
                        task = await eq.try_claim(queue, duration)
                except entroq_redis.EntroQError:
                    counts["errors"] += 1
                    held = None
                    continue
                claimed = perf()
                inside = start <= began
                if inside:
                    latencies.append(claimed - began)
                    counts["claims"] += 1
                if finish_mode:
                    if held is not None and inside and claimed <= end:
                        counts["jobs"] += 1
                    held = task
                    if task is None:
                        counts["empty"] += inside
                        await anyio.sleep(0.001)
                    continue
                if task is None:
                    counts["empty"] += inside
                    await anyio.sleep(0.001)
                    continue
                try:
                    await eq.modify(deletes=[task])
                except entroq_redis.EntroQError:
                    counts["errors"] += 1
                    continue
                if inside and perf() <= end:
                    counts["jobs"] += 1

        async def process_cpu() -> None:
            await anyio.sleep(max(0.0, start - time.perf_counter()))
            cpu.append(time.process_time())
            await anyio.sleep(max(0.0, end - time.perf_counter()))
            cpu.append(time.process_time())

        await anyio.sleep(max(0.0, spec["start_at"] - offset - time.perf_counter()))
        async with anyio.create_task_group() as group:
            group.start_soon(process_cpu)
            for _ in range(spec["claimers"]):
                group.start_soon(claimer)
    return {
        **counts,
        "seconds": spec["seconds"],
        "cpu_s": cpu[1] - cpu[0] if len(cpu) == 2 else None,
        "latencies_us": [round(x * 1e6, 1) for x in latencies],
    }


async def doc_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    offset = time.time() - time.perf_counter()
    start = spec["start_at"] + spec["warmup"] - offset
    end = start + spec["seconds"]
    queue, duration, doc_namespace = spec["queue"], spec["duration_ms"], spec["doc_namespace"]
    with_task = spec["mode"] == "task+docs"
    counts = {"jobs": 0, "claims": 0, "empty": 0, "errors": 0}
    latencies: list[float] = []
    cpu: list[float] = []
    content = b"c" * 100

    async with entroq_redis.connect(spec["url"], namespace=spec["namespace"]) as eq:
        await eq.time()  # connected before the clock starts

        async def claimer(n: int) -> None:
            key = f"p{spec['index']}-c{n}"
            perf = time.perf_counter
            while True:
                began = perf()
                if began >= end:
                    break
                inside = start <= began
                task: entroq_redis.Task | None = None
                try:
                    if with_task:
                        task = await eq.try_claim(queue, duration)
                        if task is None:
                            counts["empty"] += inside
                            await anyio.sleep(0.001)
                            continue
                    asked = perf()
                    docs = await eq.claim_docs(doc_namespace, key, duration)
                    if inside:
                        latencies.append(perf() - asked)
                        counts["claims"] += 1
                    await eq.modify(
                        deletes=[task] if task is not None else [],
                        doc_changes=[d.as_change(content=content, at=None) for d in docs],
                    )
                except entroq_redis.EntroQError:
                    counts["errors"] += 1
                    continue
                if inside and perf() <= end:
                    counts["jobs"] += 1

        async def process_cpu() -> None:
            await anyio.sleep(max(0.0, start - time.perf_counter()))
            cpu.append(time.process_time())
            await anyio.sleep(max(0.0, end - time.perf_counter()))
            cpu.append(time.process_time())

        await anyio.sleep(max(0.0, spec["start_at"] - offset - time.perf_counter()))
        async with anyio.create_task_group() as group:
            group.start_soon(process_cpu)
            for n in range(spec["claimers"]):
                group.start_soon(claimer, n)
    return {
        **counts,
        "seconds": spec["seconds"],
        "cpu_s": cpu[1] - cpu[0] if len(cpu) == 2 else None,
        "latencies_us": [round(x * 1e6, 1) for x in latencies],
    }


async def wake(spec: dict[str, Any]) -> dict[str, Any]:
    received: list[tuple[int, int]] = []
    async with entroq_redis.connect(spec["url"], namespace=spec["namespace"]) as eq:
        print("ready", flush=True)
        for _ in range(spec["trials"]):
            task = await eq.claim(spec["queue"], 30_000, timeout_s=30)
            returned = time.monotonic_ns()
            received.append((int(task.value), returned))
            await eq.modify(deletes=[task])
            print("got", flush=True)
    return {"received": received}


async def saq_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    import saq

    # Its shutdown warns about the in-flight no-op jobs it cancels; that is expected here.
    logging.getLogger("saq").setLevel(logging.ERROR)
    done: list[float] = []
    offset = time.time() - time.perf_counter()
    start = spec["start_at"] + spec["warmup"] - offset
    end = start + spec["seconds"]

    async def noop(ctx: Any) -> None:
        done.append(time.perf_counter())

    queue = saq.Queue.from_url(spec["url"], name=spec["queue"])
    worker = saq.Worker(queue, functions=[("noop", noop)], concurrency=spec["claimers"])
    cpu: list[float] = []
    await anyio.sleep(max(0.0, spec["start_at"] - offset - time.perf_counter()))
    async with anyio.create_task_group() as group:
        group.start_soon(worker.start)
        await anyio.sleep(max(0.0, start - time.perf_counter()))
        cpu.append(time.process_time())
        await anyio.sleep(max(0.0, end - time.perf_counter()))
        cpu.append(time.process_time())
        await worker.stop()
        group.cancel_scope.cancel()
    await queue.disconnect()
    jobs = sum(1 for t in done if start <= t <= end)
    return {
        "jobs": jobs,
        "claims": jobs,
        "empty": 0,
        "errors": 0,
        "seconds": spec["seconds"],
        "cpu_s": cpu[1] - cpu[0],
        "latencies_us": [],
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    kinds = {"throughput": throughput, "wake": wake, "saq": saq_throughput, "docs": doc_throughput}
    report = _run(spec.get("loop", "trio"), kinds[spec["kind"]], spec)
    if "report" in spec:
        # A file, not stdout: the latency lists run to megabytes.
        with open(spec["report"], "w", encoding="utf-8") as out:
            json.dump(report, out)
    else:
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
