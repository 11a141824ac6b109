"""Real concurrency: separate processes claiming and deleting from one queue."""

from __future__ import annotations

import collections
import json
import pathlib
import sys

import trio

from entroq_redis import EntroQ, TaskData

WORKER = pathlib.Path(__file__).parent / "programs" / "claim_delete_worker.py"


async def test_eight_processes_process_each_task_exactly_once(
    redis_eq: EntroQ, store_url: str, namespace: str, tmp_path: pathlib.Path
) -> None:
    ids: set[str] = set()
    for _ in range(2):
        inserted, _ = await redis_eq.modify(inserts=[TaskData("work", value=b"job") for _ in range(1000)])
        ids |= {t.id for t in inserted}
    outputs = [tmp_path / f"worker{i}.jsonl" for i in range(8)]
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for i, output in enumerate(outputs):
                command = [sys.executable, str(WORKER), store_url, namespace, "work", str(output), str(i)]
                nursery.start_soon(trio.run_process, command)

    events = [json.loads(line) for output in outputs for line in output.read_text().splitlines()]
    deleted = collections.Counter(e["id"] for e in events if e["event"] == "deleted")
    claimed_versions: dict[str, list[int]] = collections.defaultdict(list)
    for event in events:
        if event["event"] == "claimed":
            claimed_versions[event["id"]].append(event["version"])
    delete_versions = {e["id"]: e["version"] for e in events if e["event"] == "deleted"}

    assert not [e for e in events if e["event"] == "stale_accepted"]
    assert set(deleted) == ids, "every task deleted"
    assert max(deleted.values()) == 1, "no task deleted twice"
    # The delete that won always named the newest claim: a superseded holder never committed.
    for task_id, version in delete_versions.items():
        assert version == max(claimed_versions[task_id])
    reclaimed = sum(1 for versions in claimed_versions.values() if len(versions) > 1)
    refused = sum(1 for e in events if e["event"] == "refused")
    assert reclaimed > 0 and refused > 0, "the run must exercise lease overruns"
    assert await redis_eq.queues() == {}
