"""A worker process for the multi-process tests: claims, maybe overruns its lease, deletes.

Usage: python claim_delete_worker.py URL NAMESPACE QUEUE OUTPUT SEED

Writes one JSON line per event to OUTPUT: {"event": "claimed"|"deleted"|"refused"|
"stale_accepted", "id", "version"}. Exits when the queue has stayed empty for 1 s.
"""

from __future__ import annotations

import json
import random
import sys

import trio

import entroq_redis
from entroq_redis import DependencyError, TaskChange

LEASE_MS = 100


async def main(url: str, namespace: str, queue: str, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    events: list[dict[str, object]] = []

    def record(event: str, task_id: str, version: int) -> None:
        events.append({"event": event, "id": task_id, "version": version})

    async with entroq_redis.connect(url, namespace=namespace) as eq:
        idle_since = trio.current_time()
        while trio.current_time() - idle_since < 1.0:
            task = await eq.try_claim(queue, duration_ms=LEASE_MS)
            if task is None:
                await trio.sleep(0.01)
                continue
            idle_since = trio.current_time()
            record("claimed", task.id, task.version)
            if rng.random() < 0.1:
                # Overrun the lease, so another process may take the task meanwhile.
                await trio.sleep(LEASE_MS * 1.5 / 1000)
            # A commit naming an older version must always be refused.
            try:
                await eq.modify(changes=[TaskChange(task.id, task.version - 1, queue, value=b"stale")])
                record("stale_accepted", task.id, task.version - 1)
            except DependencyError:
                pass
            try:
                await eq.modify(deletes=[task.as_id()])
                record("deleted", task.id, task.version)
            except DependencyError:
                record("refused", task.id, task.version)
                continue
            # Deleting the same version again must be refused too.
            try:
                await eq.modify(deletes=[task.as_id()])
                record("stale_accepted", task.id, task.version)
            except DependencyError:
                pass
    return events


if __name__ == "__main__":
    url, namespace, queue, output, seed = sys.argv[1:6]
    recorded = trio.run(main, url, namespace, queue, int(seed))
    with open(output, "w") as log:
        log.writelines(json.dumps(event) + "\n" for event in recorded)
