"""The command line as people already type it (docs/design.md 7.4): global options before or after the
command, eqc's flags, a claimant that stays the same from one command to the next, --version,
JSON errors, a closed pipe, an empty store, one JSON casing with the HTTP API.

Every test runs the real ``entroq-redis`` process against the session's store or its HTTP
service (conftest's ``http_service``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import ServiceProcess

TIMEOUT_S = 30
CLI = [sys.executable, "-m", "entroq_redis.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for the CLI, without the caller's ENTROQ_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    return {**env, **extra}


def run(
    args: Sequence[str], *, expect: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_global_options_before_and_after_the_command(store_url: str, namespace: str) -> None:
    before = ["--url", store_url, "--namespace", namespace]
    run([*before, "ins", "jobs", "x"])
    # The same options after the command; -j is --json.
    [stats] = json.loads(run(["qs", *before, "-j"]).stdout)
    assert (stats["name"], stats["numTasks"]) == ("jobs", 1)
    # A value after the command wins over one before it.
    wrong = ["--url", "redis://127.0.0.1:1", "--namespace", "elsewhere"]
    assert json.loads(run([*wrong, "--json", "qs", *before]).stdout)[0]["name"] == "jobs"
    # The environment is the default of either place.
    env = clean_env(ENTROQ_URL=store_url, ENTROQ_NAMESPACE=namespace)
    assert run(["qs"], env=env).stdout.startswith("QUEUE")


def test_eqc_flags(http_service: ServiceProcess, namespace: str) -> None:
    """eqc's letters: -s address, -q queue, -v value, -t task, -f force, -Q destination."""
    address = urllib.parse.urlsplit(http_service.url).netloc
    connection = ["-s", address, "--namespace", namespace, "-j"]
    inserted = json.loads(run(["ins", *connection, "-q", "jobs", "-v", "one", "-v", "two"]).stdout)
    assert [t["valueText"] for t in inserted] == ["one", "two"]
    listed = json.loads(run(["ts", *connection, "-q", "jobs"]).stdout)
    assert sorted(t["valueText"] for t in listed) == ["one", "two"]
    [only] = json.loads(run(["ts", *connection, "-t", inserted[0]["id"]]).stdout)
    assert only["id"] == inserted[0]["id"]
    assert [q["name"] for q in json.loads(run(["qs", *connection, "-q", "jobs"]).stdout)] == ["jobs"]
    claimed = json.loads(run(["claim", *connection, "-q", "jobs", "--try", "-d", "60"]).stdout)
    moved = json.loads(run(["mod", *connection, "-t", claimed["id"], "-Q", "done", "-f"]).stdout)
    assert moved["queue"] == "done"
    run(["rm", *connection, "-t", claimed["id"], "-f"])
    assert len(json.loads(run(["ts", *connection, "-q", "jobs"]).stdout)) == 1
    # -s with eqc's gRPC port explains that the command line speaks HTTP.
    assert "gRPC port" in run(["qs", "-s", "127.0.0.1:37706"], expect=2).stderr


def test_claim_then_commit_from_the_same_shell(store_url: str, namespace: str) -> None:
    """No --claimant anywhere: each command claims as USER@HOST/entroq-cli."""
    connection = ["--url", store_url, "--namespace", namespace, "--json"]
    run(["ins", *connection, "jobs", "work"])
    claimed = json.loads(run(["claim", *connection, "jobs", "--try"]).stdout)
    assert claimed["claimantId"].endswith("/entroq-cli") and "@" in claimed["claimantId"]
    changed = json.loads(run(["mod", *connection, claimed["id"], "-v", "progress"]).stdout)
    version = str(changed["version"])
    run(["rm", *connection, claimed["id"], "--task-version", version])
    # Another shell's claimant is refused, and told how to act as the holder.
    run(["ins", *connection, "jobs", "again"])
    held = json.loads(run(["claim", *connection, "jobs", "--try"]).stdout)
    denied = run(
        ["rm", "--url", store_url, "--namespace", namespace, held["id"], "--claimant", "x"], expect=3
    )
    assert "--claimant" in denied.stderr and "--force" in denied.stderr
    # $ENTROQ_CLAIMANT is the default when set.
    env = clean_env(ENTROQ_CLAIMANT="ci-job-7")
    run(["ins", *connection, "other", "x"], env=env)
    claimed = json.loads(run(["claim", *connection, "other", "--try"], env=env).stdout)
    assert claimed["claimantId"] == "ci-job-7"


def test_help_names_the_default_claimant() -> None:
    text = " ".join(run(["ins", "--help"]).stdout.split())
    assert re.search(
        r"default \$ENTROQ_CLAIMANT, else USER@HOST/entroq-cli \(here \S+@\S+/entroq-cli\)", text
    )


def test_a_delayed_insert_is_future_not_held(store_url: str, namespace: str) -> None:
    connection = ["--url", store_url, "--namespace", namespace]
    run([*connection, "ins", "later", "x", "--delay", "1h"])
    run([*connection, "ins", "now", "y"])
    run([*connection, "claim", "now", "--try", "--claimant", "worker-1"])
    table = run([*connection, "ts", "later"]).stdout
    row = table.splitlines()[1].split()
    assert row[5:7] == ["-", "0"], table  # HELD BY -, CLAIMS 0 (AVAILABLE is two words: in 60.0m)
    assert re.search(r"\sworker-1\s+1\s", run([*connection, "ts", "now"]).stdout)
    [later, now] = json.loads(run([*connection, "qs", "--json"]).stdout)
    assert (later["numFuture"], later.get("numClaimed")) == (1, 0)
    assert (now["numClaimed"], now["numFuture"]) == (1, 0)


@pytest.mark.parametrize("command", ["", "serve", "ins", "claim", "ts", "qs", "rm", "mod", "worker", "top"])
def test_version_everywhere(command: str) -> None:
    done = run([command, "--version"] if command else ["--version"])
    assert re.fullmatch(r"entroq-redis \S+\n", done.stdout)


def test_errors_are_json_with_json(store_url: str, namespace: str) -> None:
    # The store's URL in the environment: on the command line (it holds a password) it would
    # add a warning line to stderr, which is all JSON here.
    connection = ["--namespace", namespace]
    env = clean_env(ENTROQ_URL=store_url)
    usage = run(["ts", "--json", "--limit", "many"], expect=2)
    body = json.loads(usage.stderr)
    assert (body["error"], body["exitCode"]) == ("usage", 2) and "--limit" in body["message"]
    assert usage.stdout == ""
    [task] = json.loads(run([*connection, "ins", "jobs", "x", "--json"], env=env).stdout)
    rm = [*connection, "rm", task["id"], "--task-version", "7", "-j"]
    conflict = json.loads(run(rm, expect=3, env=env).stderr)
    assert (conflict["error"], conflict["exitCode"]) == ("dependency", 3)
    assert [(f["id"], f["reason"], f["currentVersion"]) for f in conflict["failures"]] == [
        (task["id"], "mismatch", 0)
    ]
    nothing = json.loads(run([*connection, "claim", "empty", "--try", "--json"], expect=4, env=env).stderr)
    assert (nothing["error"], nothing["exitCode"]) == ("nothing_claimed", 4)
    unreachable = json.loads(run(["time", "--url", "redis://127.0.0.1:1", "--json"], expect=1).stderr)
    assert unreachable["exitCode"] == 1 and unreachable["message"]


def test_a_closed_pipe_ends_quietly(store_url: str, namespace: str, tmp_path: Any) -> None:
    """``ts --json | head``: status 141 (as for SIGPIPE), nothing on stderr."""
    big = tmp_path / "big"
    big.write_bytes(b"v" * 300_000)  # more than a pipe holds
    # The URL (it holds a password) in the environment: no warning on stderr.
    connection = ["--namespace", namespace]
    env = clean_env(ENTROQ_URL=store_url)
    run([*connection, "ins", "jobs", "--file", str(big)], env=env)
    reader = subprocess.Popen(
        [*CLI, *connection, "ts", "jobs", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.read(10)
    reader.stdout.close()
    stderr = reader.stderr.read()
    reader.stderr.close()
    assert (reader.wait(TIMEOUT_S), stderr) == (141, b"")


def test_an_empty_store_says_so(store_url: str, namespace: str) -> None:
    connection = ["--url", store_url, "--namespace", namespace]
    assert run([*connection, "qs"]).stdout == "no queues\n"
    assert run([*connection, "qs", "-p", "x"]).stdout == "no queues match\n"
    assert run([*connection, "ts", "jobs"]).stdout == "no tasks in jobs\n"
    assert json.loads(run([*connection, "qs", "--json"]).stdout) == []


def test_json_names_are_the_http_apis(http_service: ServiceProcess, namespace: str) -> None:
    """The CLI's task and stats keys are the ones the HTTP API answers with (camelCase), plus
    valueText; numbers stay JSON numbers."""
    connection = ["--url", http_service.url, "--namespace", namespace, "--json"]
    [task] = json.loads(run([*connection, "ins", "jobs", "x", "--delay", "1h"]).stdout)
    cli_stats = json.loads(run([*connection, "qs"]).stdout)
    headers = {"EntroQ-Namespace": namespace, "EntroQ-Value-Encoding": "base64"}

    def get(path: str) -> Any:
        request = urllib.request.Request(http_service.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.load(response)

    [http_task] = get("/api/v0/queues/jobs/tasks")["tasks"]
    # proto3 JSON leaves zero values out: the CLI's keys are a superset, with the same names.
    assert set(http_task) <= set(task) and set(task) - set(http_task) <= {
        "valueText",
        "version",
        "claims",
        "attempt",
        "err",
    }
    assert (task["atMs"], task["claimantId"]) == (int(http_task["atMs"]), http_task["claimantId"])
    [http_stats] = get("/api/v0/queues/stats")["queues"]
    assert set(http_stats) <= set(cli_stats[0])
    assert {k: int(v) for k, v in http_stats.items() if k != "name"}.items() <= cli_stats[0].items()
