"""Two worker processes on the same queues: every task is handled, and only once."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys

import trio
from process_support import read_line

import entroq_redis
from entroq_redis import TaskData

# One worker process: handles tasks from queues a and b, logging each task ID it runs the
# handler on, and finishing each by inserting a record into "done" in the same modify.
WORKER_SCRIPT = """
import signal, sys, trio, entroq_redis
from entroq_redis import Finish, TaskData, Worker

url, namespace, log_path = sys.argv[1:4]

async def main():
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        with open(log_path, "a") as log:
            async def handle(task):
                log.write(task.id + "\\n")
                log.flush()
                await trio.sleep(0.001)
                return Finish(inserts=[TaskData("done", value=task.id.encode())])

            worker = Worker(eq, ["a", "b"], handle, lease_ms=3_000, concurrency=4)
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker.run)
                    print("ready", flush=True)
                    async for _ in signals:
                        worker.stop(grace_s=5)
                        break

trio.run(main)
"""

TASKS = 400


async def test_two_processes_handle_each_task_exactly_once(
    backend_url: str, namespace: str, eq: entroq_redis.EntroQ, tmp_path: pathlib.Path
) -> None:
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    procs = [
        await trio.lowlevel.open_process(
            [sys.executable, "-c", WORKER_SCRIPT, backend_url, namespace, str(log)],
            stdout=subprocess.PIPE,
        )
        for log in logs
    ]
    try:
        with trio.fail_after(60):
            for proc in procs:
                assert proc.stdout is not None
                assert await read_line(proc.stdout) == b"ready\n"
            inserted, _ = await eq.modify(
                inserts=[TaskData("ab"[n % 2], value=str(n).encode()) for n in range(TASKS)]
            )
            while True:
                done = (await eq.queues(exact=["done"])).get("done", 0)
                if done >= TASKS:
                    break
                await trio.sleep(0.05)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()

    handled = [log.read_text().split() for log in logs]
    assert all(handled), "both processes should have taken part"
    every_run = handled[0] + handled[1]
    expected = sorted(t.id for t in inserted)
    assert sorted(every_run) == expected  # each task's handler ran once, in one process
    assert sorted(t.value.decode() for t in await eq.tasks("done")) == expected
    assert await eq.queues(prefixes=["a", "b"]) == {}
