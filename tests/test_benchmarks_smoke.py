"""The benchmark suite still runs (quick mode of two parts). Programs, not timing tests:
nothing here looks at a number except that work was done."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_quick_library_and_queues_parts_run() -> None:
    command = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "library,queues",
        "--procs", "1", "--claimers", "4", "--loops", "trio", "--seconds", "0.3", "--no-save",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    library = [r for r in rows if r["part"] == "library"]
    assert {r["mode"] for r in library} == {"two-call", "finish"}
    assert all(r["jobs"] > 0 and r["errors"] == 0 for r in library)
    queues = [r for r in rows if r["part"] == "queues"]
    assert [r["queues"] for r in queues] == [1, 1000]
    assert "## targets (docs/design.md 5)" in done.stdout


def test_protocols_claim_delete_runs_over_rest_connect_and_grpc() -> None:
    command = [
        sys.executable, str(ROOT / "benchmarks" / "protocols_claim_delete.py"), "--clients", "2",
        "--client-procs", "1", "--seconds", "0.5", "--warmup", "0.2", "--startup", "2", "--backlog", "500",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    runs = [r for r in rows if r["part"] == "protocols"]
    assert [r["protocol"] for r in runs] == ["rest", "connect", "grpc"]
    assert all(r["jobs"] > 0 and r["errors"] == 0 and r["service_cpu_us_per_request"] > 0 for r in runs)
    assert "| grpc |" in done.stdout


def test_quick_docs_part_runs_the_doc_loops_next_to_the_task_loop() -> None:
    command = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "docs",
        "--procs", "1", "--claimers", "4", "--loops", "trio", "--seconds", "0.3", "--no-save",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    runs = [r for r in rows if r["part"] == "docs"]
    assert [r["workload"] for r in runs] == ["tasks", "docs", "task+docs"]
    assert all(r["jobs"] > 0 and r["errors"] == 0 and r["store_cpu_us_per_job"] > 0 for r in runs)
    assert "## docs" in done.stdout


@pytest.fixture
def bullmq_installed() -> None:
    """BullMQ for Node installed for the peers part (npm ci into the benchmark's cache directory,
    as the part itself would); skips only when node or npm is missing."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _node import NodeUnavailable, bullmq_program
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    try:
        bullmq_program()
    except NodeUnavailable as exc:
        pytest.skip(str(exc))


def test_quick_peers_part_runs_worker_bullmq_and_taskiq_side_by_side(bullmq_installed: None) -> None:
    pytest.importorskip(
        "taskiq_redis", reason="taskiq-redis is in the bench extra: pip install -e '.[bench]'"
    )
    command = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "peers", "--procs", "1",
        "--no-save",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    runs = [r for r in rows if r["part"] == "peers"]
    assert not [r for r in runs if "skipped" in r], runs
    systems = [(r["system"].split(" ")[0], r["loop"]) for r in runs]
    assert systems[:2] == [("entroq-redis", "trio"), ("entroq-redis", "uvloop")]
    assert [s for s, _ in systems[2:]] == ["BullMQ", "taskiq"]
    # Every job added was done, and the store did work for it.
    assert all(r["jobs"] >= 2_000 and r["jobs_per_s"] > 0 and r["store_cpu_us_per_job"] > 0 for r in runs)
    assert all(r["worker_vs_bullmq"] > 0 for r in runs if r["system"].startswith("entroq-redis"))
    assert "## peers" in done.stdout
    assert "/ BullMQ for Node, same run" in done.stdout


def test_store_clients_runs_glide_and_coredis_on_trio_and_uvloop() -> None:
    pytest.importorskip("glide", reason="valkey-glide is in the bench extra: pip install -e '.[bench]'")
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "store_clients.py"),
        "--seconds",
        "0.3",
        "--warmup",
        "0.2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=200, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    runs = [r for r in rows if r["part"] == "store-clients"]
    assert {(r["client"], r["loop"]) for r in runs} >= {("glide-script", "trio"), ("coredis-direct", "trio")}
    assert all(
        "error" not in r and r["calls_per_s"] > 0 and r["process_cpu_us_per_call"] > 0 for r in runs
    ), runs


def test_quick_batch_claim_part_sets_batches_against_the_one_task_path() -> None:
    command = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "batch_claim",
        "--loops", "trio", "--seconds", "0.3", "--no-save",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    runs = [r for r in rows if r["part"] == "batch-claim"]
    assert [(r["path"], r["batch"]) for r in runs] == [("one-task", 1), ("batch", 16), ("one-task", 1)]
    assert all(r["jobs"] > 0 and r["errors"] == 0 and r["claimers"] == 16 for r in runs)
    # A batch call finishes and claims many jobs: far fewer script calls per job than one.
    assert runs[1]["evalsha_calls_per_job"] < 0.5 < runs[0]["evalsha_calls_per_job"]
    (ratio,) = [r for r in rows if r["part"] == "batch-claim-ratio"]
    assert ratio["ratio"] is not None and ratio["ratio"] > 0
    assert "## batch-claim-ratio" in done.stdout and "library batches of 16 / one-task path" in done.stdout


def test_claim_script_cost_compares_two_script_files() -> None:
    claim = str(ROOT / "lua" / "claim.lua")
    command = [
        sys.executable, str(ROOT / "benchmarks" / "claim_script_cost.py"), "--depth", "100", "--calls", "20",
        "--rounds", "2", "--batch", "4", "--script", f"a={claim}", "--script", f"b={claim}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {(r["script"], r["mode"]) for r in rows} == {
        (s, m) for s in "ab" for m in ("plain", "finish1", "batch")
    }
    assert all(len(r["runs"]) == 2 and r["median"] > 0 and r["cpu_median"] > 0 for r in rows)
