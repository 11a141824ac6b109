"""EntroQ's own PyPI clients, the real ones, against a running ``entroq-redis serve``.

Each release (0.12.4: generation A, 0.14.0: B, 0.15.0: C, protocol 2) is installed from PyPI
into a throwaway virtualenv with httpx (tests/pypi_clients.py), and runs
tests/programs/entroq_pypi_client.py: insert, try-claim, blocking claim, a stale change
(DependencyError), task listing, queue stats and time, through the client's public API.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import start_service
from pypi_clients import VERSIONS, run_report

VALUES: list[Any] = [{"job": 1, "tags": ["a", "ü"], "ratio": 0.5, "none": None}, "text", 42, [1, [2]], True]


def run_client(version: str, url: str) -> dict[str, Any]:
    return run_report(version, "entroq_pypi_client.py", url)


@pytest.mark.parametrize("version", VERSIONS)
def test_pypi_client(version: str, store_url: str, namespace: str) -> None:
    # A service of its own whose default namespace is this test's: the clients send no
    # namespace header (0.12 cannot send any header without reaching into private state).
    service = start_service(store_url, "--namespace", namespace)
    try:
        report = run_client(version, service.url)
    finally:
        service.stop()
    assert report["entroq"] == version
    assert abs(report["time_ms"] - report["local_ms"]) < 5000

    inserted = report["inserted"]
    assert [t["value"] for t in inserted] == [*VALUES, "later"]  # JSON values, back equal
    assert all(t["version"] == 0 for t in inserted)

    task = report["try_claim"]
    assert task["value"] in VALUES and task["claims"] == 1 and task["version"] == 1
    assert report["claimant_is_mine"] and task["lease_ms"] == 30000
    assert report["try_claim_empty"] is None

    if version >= "0.15":
        [renewed] = report["renewed"]  # exactly one changed task, as the 0.15 renewer demands
        assert (renewed["id"], renewed["version"], renewed["value"]) == (task["id"], 2, task["value"])
        assert renewed["lease_ms"] == 60000 and renewed["claims"] == 1
        task = renewed
    [moved] = report["moved"]
    assert (moved["queue"], moved["value"], moved["claimant"]) == ("gen/done", {"done": True}, "")

    # The stale version: a DependencyError naming it (0.12.4 to 0.15.0 parse the typed details).
    # A mismatch names the queue the task is in now; the delete named gen/work, where it is not.
    assert report["stale"]["changes"] == [[task["id"], task["version"], "gen/done"]]
    assert report["stale"]["message"].startswith("modification dependency error")
    stale_delete = [task["id"], task["version"], "gen/work"]
    assert report["stale_delete"] == {"deletes": [stale_delete], "missing": [stale_delete]}

    blocking = report["blocking"]
    assert blocking["value"] == ["waited"] and blocking["claims"] == 1 and blocking["waited_s"] >= 0.4
    if version >= "0.15":
        [released] = report["released"]
        assert released["claims"] == 0 and released["claimant"] == ""

    if version >= "0.15":
        # The worker renewed (a lease-only change) while its handler ran, then deleted the task.
        [handled] = report["worker"]["handled"]
        assert handled["value"] == {"work": 1} and handled["lease_ms"] == 1500
        assert handled["version_now"] > handled["version"] and handled["lease_now_ms"] == 1500
        assert report["worker"]["left"] == 0

    assert [t["value"] for t in report["tasks_done"]] == [{"done": True}]
    assert report["tasks_work_omitted"] == [None] * (len(VALUES) - 1)
    claimed_wait = 0 if version >= "0.15" else 1  # 0.15 released it
    assert report["queues"] == [
        {"name": "gen/done", "num_tasks": 1, "num_claimed": 0, "num_available": 1, "num_future": 0},
        {"name": "gen/later", "num_tasks": 1, "num_claimed": 0, "num_available": 0, "num_future": 1},
        {
            "name": "gen/wait",
            "num_tasks": 1,
            "num_claimed": claimed_wait,
            "num_available": 1 - claimed_wait,
            "num_future": 0,
        },
        {"name": "gen/work", "num_tasks": 4, "num_claimed": 0, "num_available": 4, "num_future": 0},
    ]
