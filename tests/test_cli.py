"""Every ``entroq-redis`` client command, end to end in a subprocess.

Each test runs against the store directly (redis://) and through a real service process
(``entroq-redis serve`` from conftest's ``http_service``), via the ``backend_url`` fixture.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import pytest
from cli_support import TIMEOUT_S, Cli


@pytest.fixture
def cli(backend_url: str, namespace: str) -> Cli:
    return Cli(backend_url, namespace)


def test_ins_ts_qs_time(cli: Cli, tmp_path: Any) -> None:
    [plain] = cli.json("ins", "jobs", "hello")
    assert (plain["queue"], plain["valueText"], plain["version"]) == ("jobs", "hello", 0)
    binary = tmp_path / "value.bin"
    binary.write_bytes(b"\x00\xff binary")
    [from_file] = cli.json("ins", "jobs", "--file", str(binary), "--id", "my-id")
    assert from_file["id"] == "my-id" and "valueText" not in from_file
    lines = cli.json("ins", "jobs", "--file", "-", "--lines", "--delay", "1h", stdin="a\nb\n")
    assert [t["valueText"] for t in lines] == ["a", "b"]
    now = cli.json("time")["timeMs"]
    assert all(3_500_000 < t["atMs"] - now <= 3_600_000 for t in lines)

    tasks = {t["id"]: t for t in cli.tasks("jobs")}
    assert len(tasks) == 4
    assert tasks["my-id"]["value"] == "AP8gYmluYXJ5"  # base64 of the bytes
    [only] = cli.json("ts", "--id", "my-id", "--omit-values")
    assert only["id"] == "my-id" and "value" not in only
    assert len(cli.json("ts", "jobs", "--limit", "2")) == 2
    table = cli.run("ts", "jobs").stdout
    assert "hello" in table and "<9 bytes, binary>" in table
    # An hour away, less the seconds this test has taken so far on a busy machine.
    assert re.search(r"in (60\.0|59\.\d)m", table), table

    cli.run("ins", "jobs/err", "x")
    [jobs, err] = cli.json("qs", "--prefix", "jobs")
    assert jobs == {
        "name": "jobs",
        "numTasks": 4,
        "numAvailable": 2,
        "numClaimed": 0,
        "numFuture": 2,
        "maxClaims": 0,
    }
    assert err["name"] == "jobs/err"
    assert [q["name"] for q in cli.json("qs", "--exact", "jobs/err")] == ["jobs/err"]
    assert re.search(r"^jobs\s+4\s+2\s+0\s+2\s+0$", cli.run("qs").stdout, re.M)

    moment = cli.json("time")
    assert abs(moment["timeMs"] - time.time() * 1000) < 60_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z  \(\d+ ms since the epoch\)\n", cli.run("time").stdout)
    assert cli.run("time", "--millis").stdout.strip().isdigit()


def test_claim_try_wait_and_timeout(cli: Cli) -> None:
    assert "no task available" in cli.run("claim", "jobs", "--try", expect=4).stderr
    cli.run("claim", "jobs", "--timeout", "200ms", expect=4)

    waiting = cli.popen("claim", "jobs", "other", "--duration", "1m", "--json")
    try:
        time.sleep(1.0)  # let it start waiting: the claim must wake on the insert
        [inserted] = cli.json("ins", "other", "wake up")
        out, err = waiting.communicate(timeout=TIMEOUT_S)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    claimed = json.loads(out)
    assert (claimed["id"], claimed["version"], claimed["claims"]) == (inserted["id"], 1, 1)

    cli.run("ins", "jobs", "text value")
    details = cli.run("claim", "jobs", "--try").stdout
    assert re.search(r"^value:\s+text value$", details, re.M)
    assert re.search(r"^claims:\s+1$", details, re.M)


def test_rm_and_mod_by_version_or_force(cli: Cli) -> None:
    cli.run("ins", "jobs", "v1")
    task = cli.json("claim", "jobs", "--try", "--claimant", "alice")
    task_id, version = task["id"], str(task["version"])

    # Someone else cannot touch Alice's claimed task without --force.
    assert "held by another claimant" in cli.run("rm", task_id, "--task-version", version, expect=3).stderr
    cli.run("mod", task_id, "--value", "v2", expect=3)
    # Alice can, at the right version only.
    cli.run("mod", task_id, "--task-version", "0", "--value", "v2", "--claimant", "alice", expect=3)
    changed = cli.json("mod", task_id, "--task-version", version, "--value", "v2", "--claimant", "alice")
    assert (changed["valueText"], changed["version"], changed["claimantId"]) == ("v2", 2, "alice")

    moved = cli.json("mod", task_id, "--force", "--queue-to", "elsewhere", "--now")
    assert (moved["queue"], moved["version"], moved["claimantId"]) == ("elsewhere", 3, "")
    assert moved["atMs"] <= cli.json("time")["timeMs"]
    cli.run("mod", task_id, "--reset", "--delay", "10m", "--file", "-", stdin="from stdin")
    [later] = cli.tasks("elsewhere")
    assert later["valueText"] == "from stdin" and later["atMs"] > cli.json("time")["timeMs"] + 500_000
    cli.run("mod", task_id, expect=2)  # nothing to change

    cli.run("rm", task_id, "--task-version", "3", expect=3)
    assert cli.run("rm", "a", "b", "--task-version", "1", expect=2).stderr
    # Without a version: the current one, unless another claimant holds it.
    assert "held by another claimant" in cli.run("rm", task_id, "--claimant", "bob", expect=3).stderr
    assert cli.json("rm", task_id, "--force") == {
        "deleted": [{"id": task_id, "version": 4, "queue": "elsewhere"}]
    }
    assert cli.tasks("elsewhere") == []
    assert "no task with ID" in cli.run("rm", task_id, "--force", expect=3).stderr


def test_clear_asks_unless_yes(cli: Cli) -> None:
    cli.run("ins", "jobs", "--file", "-", "--lines", stdin="1\n2\n3\n")
    cli.run("claim", "jobs", "--try", "--duration", "1h")  # held by someone: cleared anyway
    assert "without --yes" in cli.run("clear", "jobs", expect=2).stderr
    assert len(cli.tasks("jobs")) == 3
    assert cli.json("clear", "jobs", "--yes") == {"queue": "jobs", "deleted": 3}
    assert cli.tasks("jobs") == []
    assert cli.run("clear", "jobs").stdout == "deleted 0 tasks from jobs\n"


HANDLER = """
import os, sys
value = sys.stdin.read()
print("handling", os.environ["ENTROQ_TASK_ID"], "attempt", os.environ["ENTROQ_TASK_ATTEMPT"])
if value == "poison":
    print("cannot digest", value, file=sys.stderr)
    sys.exit(1)
if value == "hopeless":
    sys.exit(42)
"""


def test_worker_then_requeue(cli: Cli) -> None:
    cli.run("ins", "jobs", "--file", "-", "--lines", stdin="good\npoison\nhopeless\n")
    events = [
        json.loads(line)
        for line in cli.run(
            "worker",
            "-q",
            "jobs",
            "--max-attempts",
            "3",
            "--retry-delay",
            "50ms",
            "--lease",
            "5s",
            "--quarantine-exit",
            "42",
            "--max-tasks",
            "5",  # good once, poison three times, hopeless once
            "--json",
            "--",
            sys.executable,
            "-c",
            HANDLER,
        ).stdout.splitlines()
    ]
    kinds = sorted((e["event"], e["attempt"]) for e in events)
    assert kinds == [("done", 0), ("quarantined", 1), ("quarantined", 3), ("retried", 1), ("retried", 2)]
    assert cli.tasks("jobs") == []
    quarantined = {t["valueText"]: t for t in cli.tasks("jobs/err")}
    assert quarantined["poison"]["attempt"] == 3
    assert quarantined["poison"]["err"] == "\n".join(["exit status 1: cannot digest poison"] * 3)
    assert (quarantined["hopeless"]["attempt"], quarantined["hopeless"]["err"]) == (1, "exit status 42")

    dry = cli.json("requeue", "jobs/err", "--dry-run")
    assert dry["dryRun"] and len(dry["moved"]) == 2 and len(cli.tasks("jobs/err")) == 2
    assert "would move 2 tasks from jobs/err to jobs" in cli.run("requeue", "jobs/err", "--dry-run").stdout
    poison_id = quarantined["poison"]["id"]
    moved = cli.json("requeue", "jobs/err", "--id", poison_id)
    assert [(t["id"], t["queue"], t["attempt"], t["err"], t["claims"]) for t in moved["moved"]] == [
        (poison_id, "jobs", 0, "", 0)
    ]
    assert "moved 1 task from jobs/err to retry" in cli.run("requeue", "jobs/err", "--to", "retry").stdout
    assert [t["valueText"] for t in cli.tasks("retry")] == ["hopeless"]
    cli.run("requeue", "retry", expect=2)  # no /err suffix and no --to


def test_requeue_skips_held_tasks(cli: Cli) -> None:
    cli.run("ins", "jobs/err", "--file", "-", "--lines", stdin="a\nb\n")
    held = cli.json("claim", "jobs/err", "--try", "--duration", "1h", "--claimant", "another")
    result = cli.json("requeue", "jobs/err", expect=3)
    assert [s["id"] for s in result["skipped"]] == [held["id"]]
    assert len(result["moved"]) == 1


def test_worker_stops_gracefully_and_releases(cli: Cli) -> None:
    cli.run("ins", "jobs", "slow")
    worker = cli.popen(
        "worker",
        "-q",
        "jobs",
        "--lease",
        "10s",
        "--grace",
        "300ms",
        "--",
        sys.executable,
        "-c",
        "import time; print('started', flush=True); time.sleep(60)",
    )
    try:
        assert worker.stderr is not None
        while "started" not in (line := worker.stderr.readline()):
            assert line, "the worker ended before running the command"
        worker.terminate()
        out, err = worker.communicate(timeout=TIMEOUT_S)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert out.split()[0] == "released"
    [task] = cli.tasks("jobs")
    assert (task["attempt"], task["claimantId"]) == (0, "")
    assert task["atMs"] <= cli.json("time")["timeMs"]


def test_worker_timeout_counts_as_failure(cli: Cli) -> None:
    cli.run("ins", "jobs", "x")
    out = cli.run(
        "worker",
        "-q",
        "jobs",
        "--timeout",
        "200ms",
        "--max-tasks",
        "1",
        "--retry-delay",
        "1h",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(30)",
    ).stdout
    assert out.startswith("retried") and "timed out after 0.2 s" in out
    [task] = cli.tasks("jobs")
    assert (task["attempt"], task["err"]) == (1, "timed out after 0.2 s")


def test_top_refreshes(cli: Cli) -> None:
    cli.run("ins", "jobs", "x")
    frames = [
        json.loads(line)
        for line in cli.run("top", "--iterations", "2", "--interval", "100ms", "--json").stdout.splitlines()
    ]
    assert len(frames) == 2 and frames[1]["timeMs"] >= frames[0]["timeMs"] + 100
    assert frames[0]["queues"][0]["name"] == "jobs" and frames[0]["queues"][0]["numTasks"] == 1
    text = cli.run("top", "--iterations", "1").stdout
    assert "entroq-redis top" in text and re.search(r"^jobs\s+1\s+1\s+0\s+0\s+0\s+\+0\.0$", text, re.M)


def test_tryclaimid_claims_one_given_task(cli: Cli) -> None:
    [task] = cli.json("ins", "jobs", "pick me")
    claimed = cli.json("tryclaimid", "-q", "jobs", "-t", task["id"], "-d", "60", "--claimant", "alice")
    assert (claimed["id"], claimed["version"], claimed["claimantId"]) == (task["id"], 1, "alice")
    assert claimed["atMs"] == claimed["modifiedMs"] + 60_000  # -d 60 is seconds, as in eqc

    held = cli.run("tryclaimid", "--queue", "jobs", "--task", task["id"], "--claimant", "bob", expect=4)
    assert "not available" in held.stderr and "by alice" in held.stderr
    assert (
        "not found in queue other" in cli.run("tryclaimid", "-q", "other", "-t", task["id"], expect=4).stderr
    )
    assert "not found" in cli.run("tryclaimid", "-q", "jobs", "-t", "no-such-task", expect=4).stderr
    # Alice holds version 1 and commits with it.
    cli.run("rm", task["id"], "--task-version", "1", "--claimant", "alice")
    assert cli.tasks("jobs") == []

    [fresh] = cli.json("ins", "jobs", "text value")
    details = cli.run("tryclaimid", "-q", "jobs", "-t", fresh["id"]).stdout
    assert re.search(r"^value:\s+text value$", details, re.M)
    assert re.search(r"^version:\s+1$", details, re.M)
