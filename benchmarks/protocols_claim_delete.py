"""Claim -> delete over REST, Connect and gRPC on ONE service process: jobs/s and service CPU per request.

    python benchmarks/protocols_claim_delete.py [--clients 16] [--client-procs 2] [--seconds 10] [--rounds 2]

Starts the library's embedded Valkey (or uses --redis URL) and one ``entroq-redis serve`` in front of
it (one worker, HTTP and gRPC listeners), fills one queue, then runs the same load over each protocol
in turn, on the same service process and the same store: C concurrent loops (default 16) spread over a
few client processes, each loop claiming a task (TryClaim, a lease of 30 s) and deleting it (Modify),
two requests per job. Rounds after the first run the protocols in reverse order, so a drift of the
machine's load does not favour one of them.

- REST: ``POST /api/v0/claim`` and ``POST /api/v0/modify``, JSON, one keep-alive HTTP/1.1 connection per
  loop (the minimal client of http_claim_delete.py: httpx's own cost would dominate);
- Connect: ``POST /api.EntroQ/TryClaim`` and ``/api.EntroQ/Modify``, JSON, ``Connect-Protocol-Version: 1``,
  the same client;
- gRPC: grpcio's asyncio client, stubs generated at run time by grpcio-tools from
  tests/protos/entroq_v1/entroq.proto, one channel (one HTTP/2 connection) per client process carrying
  that process's loops as concurrent streams, as EntroQ's Go workers share one connection.

Measured over the same window of each run: jobs/s, the service process's CPU (user + system, psutil)
per request and per job, the store's CPU per job (INFO, the same for every protocol if the service does
the same store work), and the client processes' own CPU per job. One JSON line per run, then a table
(and the mean per protocol over the rounds). A program, not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import sys
import tempfile
import threading
import time
from typing import Any

from entroq_redis.testing import start_service

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import Results, Store, machine, table  # noqa: E402

NAMESPACE = "bench-protocols"
QUEUE = "bench/jobs"
PROTOCOLS = ("rest", "connect", "grpc")
V1_PROTO = HERE.parent / "tests" / "protos" / "entroq_v1" / "entroq.proto"
# A JSON text (what gRPC v1 and JSON-era HTTP clients store), about 100 bytes like the other benchmarks.
VALUE = json.dumps({"job": 1, "pad": "v" * 80}).encode()
LEASE_MS = 30_000
COLUMNS = [
    "protocol",
    "round",
    "clients",
    "client_procs",
    "jobs_per_s",
    "requests_per_s",
    "service_cpu_cores",
    "service_cpu_us_per_request",
    "service_cpu_us_per_job",
    "store_cpu_us_per_job",
    "client_cpu_us_per_job",
    "empty_claims",
    "errors",
]
SUMMARY = [
    "protocol",
    "runs",
    "jobs_per_s",
    "service_cpu_us_per_request",
    "service_cpu_us_per_job",
    "jobs_per_s_vs_rest",
    "service_cpu_per_request_vs_rest",
]


# --- client processes ----------------------------------------------------------------------


class Window:
    """The measured window [start, end] (epoch seconds) and what completed inside it."""

    def __init__(self, begin: float, start: float, end: float) -> None:
        # The load runs from ``begin`` (every process is up by then), the window is its last part.
        self.begin, self.start, self.end = begin, start, end
        self.counts = {"jobs": 0, "requests": 0, "empty": 0, "errors": 0}
        self.cpu: list[float] = []

    def inside(self) -> bool:
        return self.start <= time.time() <= self.end

    def count(self, key: str) -> None:
        if self.inside():
            self.counts[key] += 1

    def report(self) -> dict[str, Any]:
        cpu = self.cpu[1] - self.cpu[0] if len(self.cpu) == 2 else None
        return {**self.counts, "cpu_s": cpu}


async def _http_loop(protocol: str, host: str, port: int, index: int, window: Window) -> None:
    import trio
    from http_claim_delete import Connection

    if protocol == "rest":
        claim_path, modify_path, headers = "/api/v0/claim", "/api/v0/modify", {}
    else:
        claim_path, modify_path = "/api.EntroQ/TryClaim", "/api.EntroQ/Modify"
        headers = {"Connect-Protocol-Version": "1"}
    connection = Connection(host, port, NAMESPACE, headers)
    claimant = f"bench-{os.getpid()}-{index}"
    claim = json.dumps({"claimantId": claimant, "queues": [QUEUE], "durationMs": str(LEASE_MS)}).encode()
    await connection.request("GET", "/healthz")  # connected before the load begins
    await trio.sleep(max(0.0, window.begin - time.time()))
    while time.time() < window.end:
        status, body = await connection.request("POST", claim_path, claim)
        window.count("requests")
        task = json.loads(body).get("task") if status == 200 else None
        if task is None:
            window.count("empty" if status == 200 else "errors")
            continue
        delete = {"claimantId": claimant, "deletes": [{"id": task["id"], "version": task["version"]}]}
        status, _ = await connection.request("POST", modify_path, json.dumps(delete).encode())
        window.count("requests")
        window.count("jobs" if status == 200 else "errors")


def _http_process(protocol: str, url: str, clients: int, window: Window) -> dict[str, Any]:
    import trio

    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cpu_clock, window, trio.sleep)
            for index in range(clients):
                nursery.start_soon(_http_loop, protocol, host, int(port), index, window)

    trio.run(main)
    return window.report()


async def _cpu_clock(window: Window, sleep: Any) -> None:
    await sleep(max(0.0, window.start - time.time()))
    window.cpu.append(time.process_time())
    await sleep(max(0.0, window.end - time.time()))
    window.cpu.append(time.process_time())


def _grpc_process(target: str, stubs: str, clients: int, window: Window) -> dict[str, Any]:
    sys.path.insert(0, stubs)
    import entroq_pb2 as pb2  # generated at run time into the scratch directory
    import entroq_pb2_grpc as pb2_grpc
    import grpc

    metadata = (("entroq-namespace", NAMESPACE),)

    async def loop(stub: Any, index: int) -> None:
        claimant = f"bench-{os.getpid()}-{index}"
        claim = pb2.ClaimRequest(claimant_id=claimant, queues=[QUEUE], duration_ms=LEASE_MS)
        await asyncio.sleep(max(0.0, window.begin - time.time()))
        while time.time() < window.end:
            try:
                reply = await stub.TryClaim(claim, metadata=metadata)
            except grpc.aio.AioRpcError:
                window.count("requests")
                window.count("errors")
                continue
            window.count("requests")
            if not reply.HasField("task"):
                window.count("empty")
                continue
            task = reply.task
            gone = pb2.TaskID(id=task.id, version=task.version, queue=task.queue)
            try:
                await stub.Modify(pb2.ModifyRequest(claimant_id=claimant, deletes=[gone]), metadata=metadata)
            except grpc.aio.AioRpcError:
                window.count("requests")
                window.count("errors")
                continue
            window.count("requests")
            window.count("jobs")

    async def main() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            await channel.channel_ready()
            stub = pb2_grpc.EntroQStub(channel)
            await asyncio.gather(
                _cpu_clock(window, asyncio.sleep), *(loop(stub, index) for index in range(clients))
            )

    asyncio.run(main())
    return window.report()


def client_process(
    protocol: str, url: str, target: str, stubs: str, clients: int, begin: float, start: float, end: float
) -> dict[str, Any]:
    window = Window(begin, start, end)
    if protocol == "grpc":
        return _grpc_process(target, stubs, clients, window)
    return _http_process(protocol, url, clients, window)


# --- the orchestrator ----------------------------------------------------------------------


def compile_stubs(out: pathlib.Path) -> str:
    """entroq_pb2.py and entroq_pb2_grpc.py from the v1 schema, generated into ``out`` (never the tree)."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc", f"-I{V1_PROTO.parent}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
        "entroq.proto",
    ]  # fmt: skip
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {V1_PROTO}")
    return str(out)


class Service:
    """One ``entroq-redis serve`` (one worker) with HTTP and gRPC listeners on free ports."""

    def __init__(self, store_url: str, log_dir: pathlib.Path, grpc: bool) -> None:
        args = ("--namespace", NAMESPACE, "--workers", "1", "--grpc-port", "free" if grpc else "0")
        self.service = start_service(store_url, *args, log_dir=str(log_dir))
        self.process = self.service.process
        self.url = self.service.url
        self.target = (self.service.grpc_url or "").removeprefix("grpc://")

    def cpu_seconds(self) -> float:
        import psutil
        from _workloads import _tree_cpu

        return _tree_cpu(psutil.Process(self.process.pid))

    def close(self) -> None:
        self.service.stop(timeout=30)


def run_once(
    protocol: str, service: Service, store: Store, stubs: str, args: argparse.Namespace
) -> dict[str, Any]:
    procs = args.client_procs
    shares = [args.clients // procs + (i < args.clients % procs) for i in range(procs)]
    begin = time.time() + args.startup  # every client process is up and connected by then
    start = begin + args.warmup
    end = start + args.seconds
    measured: dict[str, float] = {}

    def watch() -> None:
        time.sleep(max(0.0, start - time.time()))
        before, cpu_before = store.snapshot(), service.cpu_seconds()
        time.sleep(max(0.0, end - time.time()))
        measured["service_cpu_s"] = service.cpu_seconds() - cpu_before
        measured["store_cpu_us"] = before.delta(store.snapshot())["cpu_usec"]

    watcher = threading.Thread(target=watch)
    watcher.start()
    with multiprocessing.get_context("spawn").Pool(len(shares)) as pool:
        specs = [(protocol, service.url, service.target, stubs, n, begin, start, end) for n in shares if n]
        reports = pool.starmap(client_process, specs)
    watcher.join()
    total = {key: sum(r[key] or 0 for r in reports) for key in reports[0]}
    jobs, requests = total["jobs"], total["requests"]
    return {
        "protocol": protocol,
        "clients": args.clients,
        "client_procs": len([s for s in shares if s]),
        "seconds": args.seconds,
        "jobs": jobs,
        "jobs_per_s": jobs / args.seconds,
        "requests_per_s": requests / args.seconds,
        "service_cpu_cores": measured["service_cpu_s"] / args.seconds,
        "service_cpu_us_per_request": measured["service_cpu_s"] * 1e6 / max(1, requests),
        "service_cpu_us_per_job": measured["service_cpu_s"] * 1e6 / max(1, jobs),
        "store_cpu_us_per_job": measured["store_cpu_us"] / max(1, jobs),
        "client_cpu_us_per_job": total["cpu_s"] * 1e6 / max(1, jobs),
        "empty_claims": total["empty"],
        "errors": total["errors"],
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mean per protocol over the rounds, and each protocol against REST."""

    def mean(selected: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in selected) / len(selected)

    summary = []
    for protocol in PROTOCOLS:
        selected = [r for r in rows if r["protocol"] == protocol]
        if selected:
            summary.append(
                {
                    "protocol": protocol,
                    "runs": len(selected),
                    "jobs_per_s": mean(selected, "jobs_per_s"),
                    "service_cpu_us_per_request": mean(selected, "service_cpu_us_per_request"),
                    "service_cpu_us_per_job": mean(selected, "service_cpu_us_per_job"),
                }
            )
    rest = next((s for s in summary if s["protocol"] == "rest"), None)
    for entry in summary:
        if rest and rest["jobs_per_s"] and rest["service_cpu_us_per_request"]:
            entry["jobs_per_s_vs_rest"] = entry["jobs_per_s"] / rest["jobs_per_s"]
            entry["service_cpu_per_request_vs_rest"] = (
                entry["service_cpu_us_per_request"] / rest["service_cpu_us_per_request"]
            )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="store URL (default: an embedded Valkey in a temporary directory)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent claim->delete loops in all")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes to spread them over")
    parser.add_argument("--seconds", type=float, default=10, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1, help="load before the window opens")
    parser.add_argument("--startup", type=float, default=2, help="time for client processes to start")
    parser.add_argument("--rounds", type=int, default=1, help="runs per protocol (order reversed each round)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated subset")
    parser.add_argument("--backlog", type=int, default=30_000, help="tasks in the queue before each run")
    parser.add_argument("--out", help="also write the JSON lines to this file")
    args = parser.parse_args(argv)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocols: {', '.join(sorted(unknown))}")
    from _workloads import top_up

    with tempfile.TemporaryDirectory(prefix="entroq-bench-protocols-") as scratch_dir:
        scratch = pathlib.Path(scratch_dir)
        stubs = compile_stubs(scratch / "stubs")
        store = Store(args.redis) if args.redis else Store.embedded(str(scratch / "store"))
        context = {"part": "context", **store.config(), **machine(), "command": " ".join(sys.argv)}
        results = Results(pathlib.Path(args.out) if args.out else None, context)
        if args.out is None:
            print(json.dumps(context), flush=True)
        rows: list[dict[str, Any]] = []
        service = Service(store.url, scratch, grpc="grpc" in protocols)
        try:
            for round_number in range(args.rounds):
                order = protocols if round_number % 2 == 0 else protocols[::-1]
                for protocol in order:
                    # The same depth for every run, so the store's work per claim is the same.
                    depth = top_up(store.url, NAMESPACE, QUEUE, args.backlog, value=VALUE)
                    row = run_once(protocol, service, store, stubs, args)
                    rows.append(results.add("protocols", round=round_number + 1, depth_before=depth, **row))
        finally:
            service.close()
            store.clear(NAMESPACE)
            store.close()
            results.close()
    print(
        f"\n# claim->delete by protocol ({context['server']}, {context['cpus']} CPUs {context['cpu_model']}, "
        f"load average at start {context['loadavg']}, at end {[round(x, 2) for x in os.getloadavg()]})\n"
    )
    print(table(rows, COLUMNS))
    print()
    print(table(summarize(rows), SUMMARY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
