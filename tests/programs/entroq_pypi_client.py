"""Drives one of EntroQ's own PyPI clients (``entroq`` 0.12.4, 0.14.0 or 0.15.0) against a
service: python entroq_pypi_client.py URL -> a JSON report on stdout.

Runs in a throwaway virtualenv holding only that ``entroq`` release and httpx (never this
project), through the client's public API only, as its users write it. Uses only what every
one of those releases has, plus 0.15's lease-only renewal and claim reset when present.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from entroq.json import EntroQJSON
from entroq.types import DependencyError, TaskData
from entroq.types import Modification as M

VALUES: list[Any] = [{"job": 1, "tags": ["a", "ü"], "ratio": 0.5, "none": None}, "text", 42, [1, [2]], True]


def task_json(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "version": task.version,
        "queue": task.queue,
        "value": task.value,
        "claims": task.claims,
        "attempt": task.attempt,
        "err": task.err,
        "claimant": task.claimant,
        "lease_ms": round((task.at - task.modified).total_seconds() * 1000) if task.modified else None,
    }


def ids(items: Any) -> list[list[Any]]:
    return [[i.id, i.version, i.queue] for i in items]


async def drive(url: str) -> dict[str, Any]:
    report: dict[str, Any] = {"entroq": importlib.metadata.version("entroq")}
    eq = EntroQJSON(url)
    producer = EntroQJSON(url)
    try:
        # time (0.15: the first call also probes the server's protocols)
        report["time_ms"] = round((await eq.time()).timestamp() * 1000)
        report["local_ms"] = round(time.time() * 1000)

        # insert: JSON values, and one task an hour from now
        later = datetime.now(UTC) + timedelta(hours=1)
        inserts = [M.inserting(TaskData("gen/work", value=v)) for v in VALUES]
        inserts.append(M.inserting(TaskData("gen/later", at=later, value="later")))
        result = await eq.modify(M(*inserts))
        report["inserted"] = [task_json(t) for t in result.tasks_inserted]

        # try-claim: a task, then nothing from an empty queue
        task = await eq.try_claim("gen/work", duration_ms=30000)
        report["try_claim"] = task_json(task)
        report["claimant_is_mine"] = task.claimant == eq.claimant_id
        report["try_claim_empty"] = await eq.try_claim("gen/empty")

        # 0.15: renew with a lease-only change, as its worker does
        if hasattr(M, "arriving"):
            renewed = (await eq.modify(M(M.arriving(task, 60)))).tasks_changed
            report["renewed"] = [task_json(t) for t in renewed]
            task = renewed[0]

        # a move with a new value, released now
        moved = (
            await eq.modify(M(M.changing(task, queue="gen/done", value={"done": True}, at=None)))
        ).tasks_changed
        report["moved"] = [task_json(t) for t in moved]

        # the stale version again: DependencyError
        try:
            await eq.modify(M(M.changing(task, value="stale")))
            report["stale"] = None
        except DependencyError as exc:
            report["stale"] = {"changes": ids(exc.changes), "message": exc.message}
        try:
            await eq.modify(M(M.deleting(task)))
            report["stale_delete"] = None
        except DependencyError as exc:
            report["stale_delete"] = {"deletes": ids(exc.deletes), "missing": ids(exc.missing)}

        # blocking claim: waits until another client inserts (well inside 0.12's 5 s timeout)
        async def insert_soon() -> None:
            await asyncio.sleep(0.5)
            await producer.modify(M(M.inserting(TaskData("gen/wait", value=["waited"]))))

        started = time.monotonic()
        inserter = asyncio.ensure_future(insert_soon())
        claimed = await eq.claim("gen/wait", duration_ms=10000)
        await inserter
        report["blocking"] = {**task_json(claimed), "waited_s": round(time.monotonic() - started, 3)}

        # 0.15: release with the claim count reset, as its worker releases
        if hasattr(M, "arriving"):
            released = (await eq.modify(M(M.changing(claimed, at=None, reset_claims=True)))).tasks_changed
            report["released"] = [task_json(t) for t in released]

        # 0.15: its worker, whose renewals read the granted lease (at - modified) from the claim
        # and want exactly one changed task back; the handler outlives the 1.5 s lease.
        if hasattr(M, "arriving"):
            from entroq.worker import EntroQWorker

            await producer.modify(M(M.inserting(TaskData("gen/worker", value={"work": 1}))))
            handled: list[Any] = []

            @EntroQWorker.handler
            async def process(task: Any, docs: Any) -> Any:
                await asyncio.sleep(2.0)
                [now] = await producer.tasks("gen/worker")  # renewed meanwhile: a later version
                handled.append(
                    {
                        **task_json(task),
                        "version_now": now.version,
                        "lease_now_ms": task_json(now)["lease_ms"],
                    }
                )
                return M(M.deleting(task), then_stop=True)

            await asyncio.wait_for(EntroQWorker(eq, "gen/worker", claim_duration_s=1.5).run(process), 30)
            report["worker"] = {"handled": handled, "left": len(await eq.tasks("gen/worker"))}

        # task listing and queue stats
        report["tasks_done"] = [task_json(t) for t in await eq.tasks("gen/done")]
        report["tasks_work_omitted"] = [t.value for t in await eq.tasks("gen/work", omit_values=True)]
        report["queues"] = await eq.queues(prefix="gen/")
    finally:
        for client in (eq, producer):
            if hasattr(client, "aclose"):
                await client.aclose()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(drive(sys.argv[1]))))
