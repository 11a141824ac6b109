"""Battery row c: kill -9 the HTTP service mid-request.

The row is docs/reference/reliability-battery.md 3.

The commit-once workload runs over HTTP against one ``entroq-redis serve`` process, which is
SIGKILLed at fractions of the work done (spread over its first 80%) and restarted on the
same port. Clients see their requests fail (connection reset or refused: ``info``
operations, since a request the service read may have run), retry with the same versions,
and finish the job. Afterwards the checker must find C1-C7 = 0, the store's indexes must
agree with its records, and no task may be left behind.

Why a service crash can never leave partial state: each API mutation is exactly one script
call on the store (a script runs whole or not at all, whatever happens to its caller).
The second test counts the store's EVALSHA calls per HTTP mutation to hold the service to
that.
"""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import pytest
import redis
import trio
from battery.crash import CrashableService, CrashableStore
from battery.harness import Run, crash_nemesis, finish, seed, start_workers, wait_workers
from battery.history import load
from battery.store_check import read_namespace

import entroq_redis

QUEUES = ["in0", "in1", "in2", "in3"]
# (worker processes, tasks, kills, least seconds between kills)
SIZES = {"ci": (3, 1_200, 4, 0.5), "full": (4, 30_000, 20, 2.0)}


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)])]
)
async def test_kill_9_of_the_service_leaves_the_store_consistent(
    size: str, store_url: str, namespace: str, tmp_path: pathlib.Path
) -> None:
    procs, tasks, kills, min_gap_s = SIZES[size]
    service = CrashableService(store_url, "--namespace", namespace, log_dir=tmp_path)
    service.start()
    run = Run(tmp_path)
    kill_times: list[float] = []
    try:
        async with entroq_redis.connect(store_url, namespace=namespace) as eq:
            await seed(eq, run, tasks, QUEUES)
            start_workers(
                run,
                service.url,
                namespace,
                procs,
                queues=QUEUES,
                stage2="stage2",
                coroutines=3,
                lease_ms=1000,
                overrun_p=0.02,
                retry_s=60,
                deadline_s=500 if size == "full" else 100,
            )
            async with trio.open_nursery() as nursery:

                def crash() -> None:
                    service.kill()
                    service.start()

                nursery.start_soon(crash_nemesis, run, crash, kills, tasks, min_gap_s, kill_times, 1)
                await wait_workers(run, 600 if size == "full" else 110)
                nursery.cancel_scope.cancel()
            report = await finish(eq, run)
            left = await eq.queues()
        client = redis.Redis.from_url(store_url)
        try:
            _, index_problems = read_namespace(client, namespace)
        finally:
            client.close()
    finally:
        service.stop()

    records = load(run.history_paths())
    recoveries = _recoveries(records, kill_times)
    print(
        f"\n[battery c/{size}] {len(kill_times)} kills in {run.elapsed_s:.1f} s; service restarts "
        f"{[round(s, 2) for s in service.start_seconds[1:]]} s; first ok after each kill "
        f"{[round(r, 2) for r in recoveries]} s; {report.summary()}"
    )
    assert len(kill_times) == kills, "the workload ended before every kill"
    assert not report.problems(), report.problems()
    assert not index_problems, index_problems
    assert set(left) == {"done"}, left  # nothing stuck: every source committed, nothing held
    assert report.info > 0, "clients must have seen the crashes"
    assert all("Traceback" not in log for log in service.logs[-1:])


def _recoveries(records: list[dict[str, Any]], kill_times: list[float]) -> list[float]:
    """For each kill: seconds until an operation invoked after it succeeded."""
    ok = sorted((float(r["ti"]), float(r["td"])) for r in records if r["type"] == "ok" and r["p"] != "setup")
    result = []
    for kill in kill_times:
        after = [done for invoked, done in ok if invoked > kill]
        result.append(min(after) - kill if after else float("inf"))
    return result


async def test_each_api_mutation_is_exactly_one_script_call(tmp_path: pathlib.Path) -> None:
    store = CrashableStore(tmp_path / "data", "everysec")
    store.start()
    service = CrashableService(store.url, log_dir=tmp_path)
    service.start()
    try:
        client = redis.Redis.from_url(store.url)
        client.config_resetstat()
        mutations = 0
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            inserted = await http.post(
                "/api/v0/modify", json={"inserts": [{"queue": "q", "value": "eA=="} for _ in range(30)]}
            )
            mutations += 1
            held = None
            for _ in range(30):
                body = {"claimantId": "me", "queues": ["q"], "durationMs": "60000"}
                if held is not None:
                    body["finish"] = [{"id": held["id"], "version": held["version"]}]  # delete + claim
                held = (await http.post("/api/v0/claim", json=body)).json().get("task")
                mutations += 1
            assert held is not None
            change = {"oldId": {"id": held["id"], "version": held["version"]}, "newData": {"queue": "r"}}
            assert (
                await http.post("/api/v0/modify", json={"claimantId": "me", "changes": [change]})
            ).is_success
            mutations += 1
            stale = {"deletes": [{"id": held["id"], "version": held["version"]}]}
            assert (
                await http.post("/api/v0/modify", json=stale)
            ).status_code == 404  # refused: still one call
            mutations += 1
            blocking = {"claimantId": "me", "queues": ["r"], "durationMs": "1000"}
            assert (await http.post("/api/v0/claim/wait", json=blocking)).is_success  # one attempt, one call
            mutations += 1
        assert inserted.is_success
        stats = client.info("commandstats")
        client.close()
    finally:
        service.stop()
        store.stop()
    scripts = {
        name: entry["calls"] for name, entry in stats.items() if name in ("cmdstat_evalsha", "cmdstat_eval")
    }
    transactions = {name for name in stats if name in ("cmdstat_multi", "cmdstat_exec")}
    print(f"\n[battery c/one call] {mutations} HTTP mutations -> {scripts} on the store")
    assert scripts == {"cmdstat_evalsha": mutations}
    assert not transactions
