"""entroq-redis benchmark suite: one command, a table, and one JSON line per result.

    python benchmarks/run.py            # the full run (about 25 minutes on 2 cores)
    python benchmarks/run.py --quick    # smoke-sized (about 2 minutes)
    python benchmarks/run.py --url redis://host:6380/0 --only library,depth

Starts what it needs: the library's embedded Valkey (AOF on, appendfsync everysec: what
``entroq-redis serve`` runs by default) unless --url names a store, and ``entroq-redis serve``
for the HTTP parts. Every part works in its own namespace (``{bench-*}``) and deletes its keys
afterwards, so --url may point at a store that holds other data (nothing else is touched).

Parts: ceilings, library, batch_claim, docs, saq (if installed), peers (our Worker next to BullMQ for
Node and taskiq, each if installed), depth, queues, wake, http, profile, authz. Results go
to stdout as JSON lines and to benchmarks/results/<UTC date>[-quick].jsonl; the tables and the
design-5 targets are printed at the end. Benchmarks are programs, not tests: nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _authz import part_authz
from _harness import Results, Store, machine, table
from _parts import (
    Context,
    Sizes,
    part_batch_claim,
    part_ceilings,
    part_depth,
    part_docs,
    part_http,
    part_library,
    part_profile,
    part_queues,
    part_saq,
    part_wake,
)
from _peers import part_peers

PARTS: dict[str, Callable[[Context], None]] = {
    "ceilings": part_ceilings,
    "library": part_library,
    "batch_claim": part_batch_claim,
    "docs": part_docs,
    "saq": part_saq,
    "peers": part_peers,
    "depth": part_depth,
    "queues": part_queues,
    "wake": part_wake,
    "http": part_http,
    "profile": part_profile,
    "authz": part_authz,
}

SAQ_REFERENCE = 2_239  # jobs/s, saq 0.26 at 2 processes x 16 (docs/design.md 5)

TABLES: dict[str, list[str]] = {
    "ceiling": ["name", "generator", "calls_per_s", "script_us_per_call", "store_cpu_us_per_call"],
    "library": [
        "loop",
        "procs",
        "claimers",
        "mode",
        "jobs_per_s",
        "claim_p50_us",
        "claim_p99_us",
        "evalsha_us_per_job",
        "store_cpu_us_per_job",
        "client_cpu_us_per_job",
        "empty_claims",
        "errors",
    ],
    "batch-claim": [
        "loop",
        "claimers",
        "path",
        "batch",
        "when",
        "jobs_per_s",
        "claim_p50_us",
        "claim_p99_us",
        "evalsha_calls_per_job",
        "store_cpu_us_per_job",
        "client_cpu_us_per_job",
        "empty_claims",
        "errors",
    ],
    "batch-claim-ratio": ["loop", "claimers", "batch", "one_task_jobs_per_s", "batch_jobs_per_s", "ratio"],
    "docs": [
        "workload",
        "docs_per_key",
        "loop",
        "procs",
        "claimers",
        "jobs_per_s",
        "claim_p50_us",
        "claim_p99_us",
        "evalsha_calls_per_job",
        "evalsha_us_per_job",
        "store_cpu_us_per_job",
        "client_cpu_us_per_job",
        "errors",
    ],
    "versus-saq": [
        "loop",
        "procs",
        "claimers",
        "mode",
        "when",
        "jobs_per_s",
        "store_cpu_us_per_job",
        "client_cpu_us_per_job",
    ],
    "saq": [
        "loop",
        "procs",
        "claimers",
        "jobs_per_s",
        "store_cpu_us_per_job",
        "client_cpu_us_per_job",
        "enqueue_per_s",
        "left_queued",
    ],
    "peers": [
        "system",
        "loop",
        "procs",
        "concurrency",
        "jobs",
        "jobs_per_s",
        "store_cpu_us_per_job",
        "client_cpu_us_per_job",
        "worker_vs_bullmq",
    ],
    "depth": [
        "depth",
        "insert_per_s",
        "claim_p50_us",
        "claim_p99_us",
        "block_claim_p99_us",
        "script_us_per_claim",
        "store_p50_us",
        "store_p99_us",
        "memory_bytes_per_task",
        "memory_beyond_value",
    ],
    "depth-cpu": [
        "depth",
        "loop",
        "procs",
        "claimers",
        "mode",
        "jobs_per_s",
        "evalsha_us_per_job",
        "store_cpu_us_per_job",
    ],
    "queues": [
        "queues",
        "claim_p50_us",
        "claim_p99_us",
        "block_claim_p99_us",
        "script_us_per_claim",
        "store_p50_us",
        "store_p99_us",
    ],
    "wake": ["loop", "trials", "wake_p50_us", "wake_p99_us", "wake_max_us"],
    "authz": [
        "caller",
        "where",
        "decisions",
        "decision_p50_us",
        "decision_p99_us",
        "decision_max_us",
        "compile_ms",
        "children_peak_rss_mb",
    ],
    "http-wrk": [
        "service_workers",
        "name",
        "generator",
        "requests_per_s",
        "jobs_per_s",
        "ratio_vs_noop",
        "request_p50_us",
        "request_p99_us",
        "store_cpu_us_per_job",
        "evalsha_calls_per_job",
        "service_cpu_cores",
        "service_cpu_us_per_request",
        "failed",
    ],
    "http-library": [
        "service_workers",
        "procs",
        "claimers",
        "mode",
        "jobs_per_s",
        "claim_p50_us",
        "claim_p99_us",
        "store_cpu_us_per_job",
        "service_cpu_us_per_job",
        "client_cpu_us_per_job",
        "errors",
    ],
    "profile": ["target", "jobs_per_s", "requests_per_s", "own_percent_by_package"],
}


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The aims of docs/design.md 5, evaluated on this run's rows."""
    found: list[dict[str, Any]] = []

    def add(target: str, measured: float | None, aim: str, met: bool | None) -> None:
        found.append({"target": target, "measured": measured, "aim": aim, "met": met})

    def part(name: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["part"] == name and "skipped" not in r]

    for r in part("library"):
        if r["procs"] == 2 and r["claimers"] == 16:
            add(
                f"library 2x16 {r['mode']} ({r['loop']}) / (1.3 x saq {SAQ_REFERENCE:,})",
                r["jobs_per_s"] / (1.3 * SAQ_REFERENCE),
                ">= 1.0",
                r["jobs_per_s"] >= 1.3 * SAQ_REFERENCE,
            )
    for r in part("batch-claim-ratio"):
        if r["ratio"] is not None:
            add(
                f"library batches of {r['batch']} / one-task path, 1x{r['claimers']} ({r['loop']}, same run)",
                r["ratio"],
                ">= 3.0",
                r["ratio"] >= 3.0,
            )
    # Against saq measured between the two library runs it is compared with (their mean; same
    # W x 16; saq has no trio, so trio is set against saq on plain asyncio).
    saq_by_loop = {r["loop"]: r for r in part("saq")}
    pairs: dict[tuple[str, int, str], list[float]] = {}
    for r in part("versus-saq"):
        pairs.setdefault((r["loop"], r["procs"], r["mode"]), []).append(r["jobs_per_s"])
    for (loop, procs, mode), rates in pairs.items():
        saq = saq_by_loop.get("uvloop" if loop == "uvloop" else "asyncio")
        if saq and saq["procs"] == procs:
            mean = sum(rates) / len(rates)
            add(
                f"library {procs}x16 {mode} ({loop}, mean of the runs around saq) / saq {procs}x16 "
                f"({saq['loop']})",
                mean / saq["jobs_per_s"],
                ">= 1.3",
                mean >= 1.3 * saq["jobs_per_s"],
            )
    for r in part("peers"):
        # The target (docs/performance.md): the Worker on trio >= 1.3 x BullMQ for Node, same W and run.
        if r.get("worker_vs_bullmq") is not None and r["loop"] == "trio":
            add(
                f"Worker {r['procs']}x{r['concurrency']} (trio) / BullMQ for Node, same run",
                r["worker_vs_bullmq"],
                ">= 1.3",
                r["worker_vs_bullmq"] >= 1.3,
            )
    for r in part("depth-cpu"):
        add(
            f"store CPU us per job at depth {r['depth']:,} ({r['mode']})",
            r["store_cpu_us_per_job"],
            "<= 60",
            r["store_cpu_us_per_job"] <= 60,
        )
    for r in part("http-wrk"):
        if r.get("ratio_vs_noop") is not None:
            add(
                f"HTTP {r['name']} requests/s / no-op, {r['service_workers']} worker(s), {r['generator']}",
                r["ratio_vs_noop"],
                ">= 0.6",
                r["ratio_vs_noop"] >= 0.6,
            )
    depth = part("depth")
    if len(depth) >= 2:
        shallow, deep = depth[0], depth[-1]
        ratio = deep["claim_p99_us"] / shallow["claim_p99_us"]
        add(
            f"claim p99 at depth {deep['depth']:,} / at {shallow['depth']:,} (client side, in turns)",
            ratio,
            "<= 1.3",
            ratio <= 1.3,
        )
        if deep.get("store_p99_us") and shallow.get("store_p99_us"):
            ratio = deep["store_p99_us"] / shallow["store_p99_us"]
            name = f"claim p99 at depth {deep['depth']:,} / at {shallow['depth']:,} (store side, EVALSHA)"
            add(name, ratio, "<= 1.3", ratio <= 1.3)
        add(
            f"memory per task beyond the value at {deep['depth']:,} tasks (bytes)",
            deep["memory_beyond_value"],
            "<= 400",
            deep["memory_beyond_value"] <= 400,
        )
    for r in part("queues"):
        if r["queues"] == 1000:
            add(
                "claim over 1,000 queues p99 (us, client side)",
                r["claim_p99_us"],
                "< 2,000",
                r["claim_p99_us"] < 2000,
            )
            if r.get("store_p99_us"):
                add(
                    "claim over 1,000 queues p99 (us, store side, EVALSHA)",
                    r["store_p99_us"],
                    "< 2,000",
                    r["store_p99_us"] < 2000,
                )
    for r in part("wake"):
        if r["loop"].startswith("floor"):
            continue
        add(f"wake-up p50 (us, {r['loop']})", r["wake_p50_us"], "< 5,000", r["wake_p50_us"] < 5000)
        add(f"wake-up p99 (us, {r['loop']})", r["wake_p99_us"], "< 25,000", r["wake_p99_us"] < 25000)
    for r in part("authz"):
        # The reliability battery's aim (row g): an in-process Rego decision under 1 ms at p99.
        name = f"authz decision p99 (us, in-process Rego, {r['caller']}, {r['where']})"
        add(name, r["decision_p99_us"], "< 1,000", r["decision_p99_us"] < 1000)
    return found


def print_report(context: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The tables and the targets, as Markdown."""
    print()
    print(
        f"# entroq-redis benchmarks ({context['server']}, {context['cpus']} CPUs {context['cpu_model']}, "
        f"load average at start {context['loadavg']}, at end {context.get('loadavg_end')}, "
        f"{context.get('seconds_taken', '?')} s)"
    )
    for part, columns in TABLES.items():
        selected = [r for r in rows if r["part"] == part and "skipped" not in r]
        if selected:
            print(f"\n## {part}\n")
            print(table(selected, columns))
    found = targets(rows)
    if found:
        print("\n## targets (docs/design.md 5)\n")
        print(table(found, ["target", "measured", "aim", "met"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized run")
    parser.add_argument("--url", help="store to use (default: an embedded Valkey in a temporary directory)")
    parser.add_argument("--only", help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out")
    parser.add_argument("--seconds", type=float, help="measured window per throughput run")
    parser.add_argument("--procs", help="comma-separated client process counts W (default 1,2)")
    parser.add_argument("--claimers", help="comma-separated claimers per process C (default 1,16,64)")
    parser.add_argument("--loops", help="comma-separated event loops: trio, asyncio, uvloop")
    parser.add_argument("--peer-jobs", type=int, help="jobs per system and W in the peers part (20,000)")
    parser.add_argument("--out", help="JSON lines file (default benchmarks/results/<date>[-quick].jsonl)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--profile-dir", help="keep py-spy profiles here")
    parser.add_argument("--report", metavar="JSONL", help="print the tables of an earlier run; run nothing")
    args = parser.parse_args(argv)
    if args.report:
        lines = [json.loads(line) for line in pathlib.Path(args.report).read_text().splitlines() if line]
        end = next((r for r in lines if r["part"] == "end"), {})
        print_report({**lines[0], **end}, [r for r in lines if r["part"] not in ("context", "end")])
        return 0

    sizes = Sizes.quick() if args.quick else Sizes()
    if args.seconds:
        sizes.seconds = args.seconds
    if args.procs:
        sizes.procs = tuple(int(x) for x in args.procs.split(","))
    if args.claimers:
        sizes.claimers = tuple(int(x) for x in args.claimers.split(","))
        sizes.doc_claimers = sizes.claimers
    if args.peer_jobs:
        sizes.peer_jobs = args.peer_jobs
    if args.loops:
        sizes.loops = tuple(args.loops.split(","))
        sizes.extra_loops = ()
        sizes.wake_loops = sizes.loops
    chosen = [p.strip() for p in args.only.split(",")] if args.only else list(PARTS)
    chosen = [p for p in chosen if p not in args.skip.split(",")]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")

    stamp = datetime.datetime.now(datetime.UTC)
    out: pathlib.Path | None = None
    if not args.no_save:
        default = (
            pathlib.Path(__file__).resolve().parent
            / "results"
            / (stamp.strftime("%Y-%m-%dT%H%M") + ("-quick" if args.quick else "") + ".jsonl")
        )
        out = pathlib.Path(args.out) if args.out else default

    with tempfile.TemporaryDirectory(prefix="entroq-bench-") as scratch:
        store = Store(args.url) if args.url else Store.embedded(str(pathlib.Path(scratch) / "store"))
        context = {
            "started": stamp.isoformat(timespec="seconds"),
            "quick": args.quick,
            "parts": chosen,
            "store": "--url" if args.url else "embedded",
            **store.config(),
            **machine(),
            "command": " ".join(
                ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
            ),
        }
        results = Results(out, context)
        ctx = Context(
            store,
            results,
            sizes,
            pathlib.Path(scratch),
            pathlib.Path(args.profile_dir) if args.profile_dir else None,
        )
        began = time.time()
        try:
            for name in chosen:
                PARTS[name](ctx)
            context["seconds_taken"] = round(time.time() - began)
            context["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
            results.add("end", seconds_taken=context["seconds_taken"], loadavg_end=context["loadavg_end"])
        finally:
            store.close()
            results.close()
    print_report(context, [r for r in results.rows if r["part"] != "end"])
    if out is not None:
        print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
