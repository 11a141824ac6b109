"""The benchmark suite still runs (quick mode of two parts). Programs, not timing tests:
nothing here looks at a number except that work was done."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

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
    assert "## targets (design 5)" in done.stdout


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
