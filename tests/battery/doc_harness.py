"""Running the battery's document workloads: seeding docs and tasks, the final snapshot, the check.

The worker processes are doc_workload.py, started by harness.start_workers; the history
they write is checked by doc_checker.py.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Sequence

import entroq_redis
from entroq_redis import DocData, TaskData

from .doc_checker import DocReport, check, final_state
from .doc_workload import RECEIPTS
from .harness import Run
from .history import HistoryWriter, load

DOC_WORKLOAD = pathlib.Path(__file__).with_name("doc_workload.py")


def doc_keys(count: int) -> list[str]:
    return [f"k{i}" for i in range(count)]


async def seed_docs(
    eq: entroq_redis.EntroQ, run: Run, namespace: str, keys: Sequence[str], per_key: int
) -> list[str]:
    """Inserts ``per_key`` docs (counter 0) for each key; logged as one ``dseed`` record."""
    history = HistoryWriter(run.directory / "history-docseed.jsonl", "docseed")
    items = [
        DocData(namespace, id=f"{key}-{s}", key=key, secondary_key=f"s{s}", content=b'{"n": 0, "last": ""}')
        for key in keys
        for s in range(per_key)
    ]
    try:
        for start in range(0, len(items), 500):
            batch = items[start : start + 500]
            with history.op("dseed") as record:
                inserted = (await eq.modify(doc_inserts=batch)).inserted_docs
                record["out"] = [[d.id, d.version, d.at_ms, d.modified_ms, d.claimant, 0] for d in inserted]
    finally:
        history.close()
    return [item.id or "" for item in items]


async def seed_tasks(eq: entroq_redis.EntroQ, queue: str, count: int) -> None:
    for start in range(0, count, 1000):
        await eq.modify(
            inserts=[
                TaskData(queue, id=f"s-{i}", value=b"source") for i in range(start, min(count, start + 1000))
            ]
        )


async def state(eq: entroq_redis.EntroQ, namespace: str, done: str) -> dict[str, object]:
    """The store's counted docs, receipts and done tasks (listed with no writer running)."""
    return final_state(await eq.docs(namespace), await eq.docs(RECEIPTS), await eq.tasks(done))


async def finish_docs(eq: entroq_redis.EntroQ, run: Run, namespace: str, done: str) -> DocReport:
    """Takes the final snapshot, writes it into the history and checks the whole run."""
    final = await state(eq, namespace, done)
    final["ti"] = final["td"] = time.monotonic()
    (run.directory / "history-final.jsonl").write_text(json.dumps(final) + "\n")
    return check(load(run.history_paths()))
