"""A soak client: claim->delete cycles through the HTTP service (battery row h).

Usage: python soaker.py URL NAMESPACE QUEUE CYCLES COROUTINES OUTPUT

Keeps its own queue a few hundred tasks deep (inserts of 500) and runs COROUTINES loops,
each finishing the task it holds and claiming the next in one request (the claim's
``finish``), until CYCLES tasks were claimed; then deletes what it still holds. Writes
``{"cycles": n, "latencies": [[t, seconds], ...]}`` (every 10th request's latency, with its
``time.monotonic()``) to OUTPUT.
"""

from __future__ import annotations

import json
import sys
import time

import trio

import entroq_redis
from entroq_redis import TaskData

BATCH = 500
LEASE_MS = 60_000


async def main(url: str, namespace: str, queue: str, cycles: int, coroutines: int, output: str) -> None:
    claimed = 0
    inserted = 0
    latencies: list[list[float]] = []
    need_tasks = trio.Event()
    async with entroq_redis.connect(url, namespace=namespace) as eq:

        async def feeder() -> None:
            nonlocal inserted, need_tasks
            while inserted < cycles:
                if inserted - claimed < BATCH:
                    count = min(BATCH, cycles - inserted)
                    await eq.modify(inserts=[TaskData(queue, value=b"soak") for _ in range(count)])
                    inserted += count
                    continue
                await need_tasks.wait()
                need_tasks = trio.Event()

        async def cycler(n: int) -> None:
            nonlocal claimed
            held: entroq_redis.Task | None = None
            requests = 0
            while claimed < cycles:
                started = time.monotonic()
                held = await eq.try_claim(queue, LEASE_MS, finish=[held] if held else [])
                requests += 1
                if requests % 10 == 0:
                    latencies.append([started, time.monotonic() - started])
                if held is None:
                    need_tasks.set()
                    await trio.sleep(0.005)
                    continue
                claimed += 1
                if inserted - claimed < BATCH // 2:
                    need_tasks.set()
            if held is not None:
                await eq.modify(deletes=[held])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feeder)
            for n in range(coroutines):
                nursery.start_soon(cycler, n)
    await trio.Path(output).write_text(json.dumps({"cycles": claimed, "latencies": latencies}))


if __name__ == "__main__":
    url, namespace, queue, cycles, coroutines, output = sys.argv[1:7]
    trio.run(main, url, namespace, queue, int(cycles), int(coroutines), output)
