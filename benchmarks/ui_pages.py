"""How long the dashboard's pages take at scale: 10,000 queues, and 1,000,000 tasks in one.

Fills a store (embedded Valkey, or --redis URL) straight through the library: --queues small
queues of one task each, one queue of --big tasks with a 1,000-task error queue beside it, and
200 leases held on the big queue; then starts ``entroq-redis serve`` on it and times each page
(median of --repeat loads over one keep-alive connection), plus the first event of the live
queue table. Prints one JSON line per page: milliseconds and bytes. A program, not a test:
nothing here judges a number.

    python benchmarks/ui_pages.py [--queues 10000] [--big 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator

import httpx
import trio

import entroq_redis
from entroq_redis import TaskData
from entroq_redis.testing import running_service

BATCH = 1000  # inserts per modify (the store's limit per call)
ERRORS = ("timeout after 30 s", "ValueError: bad total", "KeyError: 'customer'", "SMTP 550", "OOM killed")


async def fill(url: str, queues: int, big: int) -> str:
    """Fills the store; returns one task ID of the big queue."""
    async with entroq_redis.connect(url) as eq:
        names = [f"/tenant-{i // 100:03d}/jobs-{i % 100:02d}" for i in range(queues)]
        for start in range(0, len(names), BATCH):
            await eq.modify([TaskData(n, value=b"{}") for n in names[start : start + BATCH]])
        started = time.perf_counter()
        for start in range(0, big, BATCH):
            values = [
                b'{"n": %d, "payload": "abcdefghijklmnopqrstuvwxyz"}' % n for n in range(start, start + BATCH)
            ]
            await eq.modify([TaskData("big/inbox", value=v) for v in values[: big - start]])
        print(
            f"# filled big/inbox with {big} tasks in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        await eq.modify(
            [
                TaskData("big/inbox/err", value=b"x", err=ERRORS[i % len(ERRORS)], attempt=3)
                for i in range(1000)
            ]
        )
        worker = eq.as_claimant("bench-worker")
        for _ in range(200):
            await worker.claim("big/inbox", duration_ms=600_000)
        first = await eq.tasks("big/inbox", limit=1)
        return first[0].id


@contextlib.asynccontextmanager
async def store(url: str | None) -> AsyncIterator[str]:
    if url:
        yield url
        return
    async with entroq_redis.open_embedded() as embedded:
        yield embedded


async def time_pages(base: str, task_id: str, repeat: int) -> None:
    pages = {
        "queues": "/ui/",
        "queues filtered": "/ui/?filter=tenant-042",
        "big queue, page 1": "/ui/queue?q=big/inbox",
        "big queue, page 10,000 (by rank)": "/ui/queue?q=big/inbox&page=9999",
        "big queue, last page": "/ui/queue?q=big/inbox&page=99999999",
        "big queue, newest first": "/ui/queue?q=big/inbox&order=newest",
        "task": f"/ui/task?id={task_id}",
        "quarantine index": "/ui/quarantine",
        "quarantine (1,000 tasks, 500 shown)": "/ui/quarantine?q=big/inbox/err",
        "leases": "/ui/leases",
        "find by ID": f"/ui/find?id={task_id}",
        "search 10,000 tasks": "/ui/find?q=big/inbox&text=nomatch&limit=10000",
        "throughput": "/ui/throughput",
    }
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for name, path in pages.items():
            times, size = [], 0
            for _ in range(repeat):
                started = time.perf_counter()
                answer = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
                size = len(answer.content)
            print(
                json.dumps(
                    {
                        "part": "ui",
                        "page": name,
                        "ms_median": round(statistics.median(times), 1),
                        "bytes": size,
                    }
                )
            )
        started = time.perf_counter()
        async with client.stream("GET", "/ui/events/queues") as stream:
            async for chunk in stream.aiter_text():
                if "event: queues" in chunk:
                    break
            ms = round((time.perf_counter() - started) * 1000, 1)
            await stream.aclose()
        print(json.dumps({"part": "ui", "page": "live table, first event", "ms_median": ms, "bytes": 0}))


async def main(args: argparse.Namespace) -> None:
    async with store(args.redis) as url:
        task_id = await fill(url, args.queues, args.big)
        with running_service(url, "--grpc-port", "0") as service:
            await time_pages(service.url, task_id, args.repeat)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis", help="an existing store (default: an embedded Valkey of its own)")
    trio.run(main, parser.parse_args())
