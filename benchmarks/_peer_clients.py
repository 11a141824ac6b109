"""One worker process of the peers part: ``python benchmarks/_peer_clients.py KIND '<json spec>'``.

Kinds: ``worker`` (this library's ``Worker``, on ``loop`` trio, asyncio or uvloop) and ``taskiq``
(taskiq's own receiver on its Redis stream broker, asyncio + uvloop when installed). Each runs
``concurrency`` no-op jobs at once. It connects, writes 0 to ``progress`` (ready), starts work
when a line arrives on stdin (all processes start together), writes its completion count to
``progress`` every 100 ms, and when its stdin closes stops and prints one JSON line: ``jobs``,
``first`` and ``last`` (Unix seconds of its first and last completion) and ``cpu_s`` (its CPU
time between the two). BullMQ's program (benchmarks/node/bullmq_bench.mjs) follows the same
protocol.

``python benchmarks/_peer_clients.py taskiq-fill '<json spec>'`` sends ``count`` no-op tasks
(taskiq's ``kiq``, 64 in flight) and prints ``added`` and ``seconds``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

NOOP_TASK = "bench-noop"


class Completions:
    """Counts completions, remembers the first and last, and publishes the count to a file."""

    def __init__(self, progress: str) -> None:
        self.progress = progress
        self.jobs = 0
        self.first: float | None = None
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0

    def done(self) -> None:
        now = time.time()
        cpu = time.process_time()
        if self.first is None:
            self.first, self.cpu_first = now, cpu
        self.last, self.cpu_last = now, cpu
        self.jobs += 1

    def publish(self) -> None:
        # Renamed into place so the orchestrator never reads a half-written number.
        with open(self.progress + ".tmp", "w", encoding="utf-8") as out:
            out.write(str(self.jobs))
        os.replace(self.progress + ".tmp", self.progress)

    def report(self) -> dict[str, Any]:
        cpu = self.cpu_last - self.cpu_first if self.first is not None else None
        return {"jobs": self.jobs, "first": self.first, "last": self.last, "cpu_s": cpu}


async def _ready() -> None:
    """Waits for the go line on stdin (the progress file's first 0 said this process is ready)."""
    await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


async def _until_stdin_closes(completions: Completions, stop: Callable[[], Awaitable[None]]) -> None:
    """Publishes progress every 100 ms until stdin closes, then calls ``stop``."""
    async with anyio.create_task_group() as group:

        async def ticker() -> None:
            while True:
                completions.publish()
                await anyio.sleep(0.1)

        group.start_soon(ticker)
        # abandon_on_cancel: nothing cancels it, but a blocked read must not pin the loop at exit.
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        group.cancel_scope.cancel()
    completions.publish()
    await stop()


async def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import entroq_redis

    completions = Completions(spec["progress"])

    async def noop(task: entroq_redis.Task) -> None:
        completions.done()

    async with entroq_redis.connect(spec["url"], namespace=spec["namespace"]) as eq:
        await eq.time()  # connected before the first claim
        work = entroq_redis.Worker(eq, [spec["queue"]], noop, concurrency=spec["concurrency"])
        completions.publish()
        await _ready()
        async with anyio.create_task_group() as group:
            await group.start(work.run)

            async def stop() -> None:
                work.stop(grace_s=5.0)

            await _until_stdin_closes(completions, stop)
    return completions.report()


def _taskiq_broker(spec: dict[str, Any]) -> Any:
    from taskiq_redis import RedisStreamBroker

    # Its defaults: a consumer group per queue, 100 messages per XREADGROUP, ack after the task ran.
    return RedisStreamBroker(spec["url"], queue_name=spec["queue"], consumer_group_name="bench")


async def taskiq_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from taskiq.receiver import Receiver

    completions = Completions(spec["progress"])
    broker = _taskiq_broker(spec)

    @broker.task(task_name=NOOP_TASK)
    async def noop() -> None:
        completions.done()

    broker.is_worker_process = True
    await broker.startup()
    finished = anyio.Event()
    receiver = Receiver(broker, max_async_tasks=spec["concurrency"], run_startup=False)
    completions.publish()
    await _ready()
    async with anyio.create_task_group() as group:

        async def listen() -> None:
            await receiver.listen(finished)  # type: ignore[arg-type]

        group.start_soon(listen)

        async def stop() -> None:
            group.cancel_scope.cancel()

        await _until_stdin_closes(completions, stop)
    await broker.shutdown()
    return completions.report()


async def taskiq_fill(spec: dict[str, Any]) -> dict[str, Any]:
    broker = _taskiq_broker(spec)

    @broker.task(task_name=NOOP_TASK)
    async def noop() -> None:
        pass

    await broker.startup()
    remaining = [spec["count"]]
    began = time.perf_counter()

    async def sender() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await noop.kiq()

    async with anyio.create_task_group() as group:
        for _ in range(64):
            group.start_soon(sender)
    seconds = time.perf_counter() - began
    await broker.shutdown()
    return {"added": spec["count"], "seconds": seconds}


def main() -> None:
    kind, spec = sys.argv[1], json.loads(sys.argv[2])
    kinds = {"worker": worker, "taskiq": taskiq_worker, "taskiq-fill": taskiq_fill}
    loop = spec.get("loop", "trio")
    if loop == "trio":
        report = anyio.run(kinds[kind], spec, backend="trio")
    else:
        options = {"use_uvloop": loop == "uvloop"}
        report = anyio.run(kinds[kind], spec, backend="asyncio", backend_options=options)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
