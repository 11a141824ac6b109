"""Claim -> delete throughput through the HTTP service, next to a no-op endpoint's request rate.

Starts ``entroq-redis serve`` (embedded Valkey, or --redis URL) on a free port, fills a queue
through the API, then runs C concurrent clients (default 16), spread over a few client
processes so the load generator is not the bottleneck. Each client loops on
``POST /api/v0/claim`` then ``POST /api/v0/modify`` deleting the claimed task, over one
keep-alive connection, with a minimal HTTP/1.1 client (not httpx: its per-request cost would
dominate). The no-op rate is ``GET /healthz`` on the same service with the same clients.

    python benchmarks/http_claim_delete.py [--clients 16] [--seconds 10] [--workers 1]

Prints jobs/s (one job = claim + delete = 2 requests), requests/s, and the ratio of the
claim/delete request rate to the no-op request rate (docs/design.md 5 aims at >= 0.6). Then the same
clients finish each task in the claim of the next (``finish``, an entroq-redis extension of
ClaimRequest): one request per job.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import tempfile
import time
from typing import Any

import httpx
import trio

from entroq_redis import testing
from entroq_redis.testing import Service

NAMESPACE = "bench"
QUEUE = "bench/jobs"


class Connection:
    """A keep-alive HTTP/1.1 connection; just enough protocol for JSON request/response.

    Hypercorn closes a connection after 1,000 requests (keep_alive_max_requests); the next
    request then finds it closed before it was read, so it is sent again on a new one.
    """

    def __init__(
        self, host: str, port: int, namespace: str = NAMESPACE, headers: dict[str, str] | None = None
    ) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.head = f"Host: bench\r\nEntroQ-Namespace: {namespace}\r\n{extra}"
        self.stream: trio.SocketStream | None = None
        self.buffer = b""

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in range(2):
            if self.stream is None:
                self.stream = await trio.open_tcp_stream(self.host, self.port)
                self.buffer = b""
            try:
                return await self._exchange(self.stream, method, path, body)
            except (ConnectionError, trio.BrokenResourceError):
                await self.stream.aclose()
                self.stream = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(
        self, stream: trio.SocketStream, method: str, path: str, body: bytes
    ) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\n{self.head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await stream.send_all(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self._receive(stream)
        header, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(header[9:12])
        match = re.search(rb"(?i)content-length: *(\d+)", header)
        length = int(match.group(1)) if match else 0
        while len(self.buffer) < length:
            self.buffer += await self._receive(stream)
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, payload

    async def _receive(self, stream: trio.SocketStream) -> bytes:
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("the service closed the connection")
        return data


async def client_loop(host: str, port: int, mode: str, until: float, counts: dict[str, int]) -> None:
    connection = Connection(host, port)
    claim = json.dumps(
        {"claimantId": f"bench-{id(counts)}", "queues": [QUEUE], "durationMs": "30000"}
    ).encode()
    held: dict[str, Any] | None = None
    while time.monotonic() < until:
        if mode == "noop":
            status, _ = await connection.request("GET", "/healthz")
            counts["requests"] += 1
            counts["errors"] += status != 200
            continue
        if mode == "finish":
            # One request per job: delete the previous task in the claim of the next one.
            body = {"claimantId": f"bench-{id(counts)}", "queues": [QUEUE], "durationMs": "30000"}
            if held:
                body["finish"] = [held]
            status, reply = await connection.request("POST", "/api/v0/claim", json.dumps(body).encode())
            counts["requests"] += 1
            counts["errors"] += status != 200
            task = json.loads(reply).get("task") if status == 200 else None
            counts["jobs"] += bool(held) and status == 200
            held = {"id": task["id"], "version": task["version"]} if task else None
            continue
        status, body = await connection.request("POST", "/api/v0/claim", claim)
        counts["requests"] += 1
        task = json.loads(body).get("task") if status == 200 else None
        if task is None:
            counts["empty" if status == 200 else "errors"] += 1
            continue
        delete = json.dumps(
            {"claimantId": f"bench-{id(counts)}", "deletes": [{"id": task["id"], "version": task["version"]}]}
        ).encode()
        status, _ = await connection.request("POST", "/api/v0/modify", delete)
        counts["requests"] += 1
        if status == 200:
            counts["jobs"] += 1
        else:
            counts["errors"] += 1


def client_process(
    host: str, port: int, mode: str, clients: int, start_at: float, seconds: float
) -> dict[str, int]:
    counts = {"jobs": 0, "requests": 0, "errors": 0, "empty": 0}

    async def main() -> None:
        await trio.sleep(max(0.0, start_at - time.time()))
        until = time.monotonic() + seconds
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client_loop, host, port, mode, until, counts)

    trio.run(main)
    return counts


def run_load(url: str, mode: str, clients: int, procs: int, seconds: float) -> tuple[dict[str, int], float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    start_at = time.time() + 1.0  # every process starts together, after its imports
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        results = pool.starmap(
            client_process, [(host, int(port), mode, share, start_at, seconds) for share in shares if share]
        )
    total = {key: sum(r[key] for r in results) for key in results[0]}
    return total, seconds


def start_service(args: argparse.Namespace, data_dir: str) -> Service:
    store = () if args.redis else ("--data", data_dir)
    options = ("--namespace", NAMESPACE, "--workers", str(args.workers), "--grpc-port", "0")
    return testing.start_service(args.redis, *store, *options)


def fill(url: str, count: int) -> None:
    with httpx.Client(base_url=url, headers={"EntroQ-Namespace": NAMESPACE}, timeout=60) as client:
        for start in range(0, count, 1000):
            inserts = [{"queue": QUEUE, "value": "eA=="} for _ in range(min(1000, count - start))]
            client.post("/api/v0/modify", json={"inserts": inserts}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="store URL (default: the service's embedded Valkey)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1, help="service processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="entroq-bench-") as data_dir:
        service = start_service(args, data_dir)
        url = service.url
        try:
            noop, seconds = run_load(url, "noop", args.clients, args.client_procs, args.seconds)
            # Enough tasks that the queue never runs dry during the run.
            fill(url, int(max(20_000, noop["requests"] / seconds * args.seconds)))
            jobs, _ = run_load(url, "claim-delete", args.clients, args.client_procs, args.seconds)
            fill(url, jobs["jobs"] * 2 + 20_000)
            finish, _ = run_load(url, "finish", args.clients, args.client_procs, args.seconds)
        finally:
            service.stop(timeout=30)
    noop_rate = noop["requests"] / seconds
    job_rate = jobs["jobs"] / seconds
    request_rate = jobs["requests"] / seconds
    report: dict[str, Any] = {
        "clients": args.clients,
        "service_workers": args.workers,
        "seconds": seconds,
        "noop_requests_per_s": round(noop_rate),
        "claim_delete_jobs_per_s": round(job_rate),
        "claim_delete_requests_per_s": round(request_rate),
        "request_rate_ratio_vs_noop": round(request_rate / noop_rate, 2),
        "claim_with_finish_jobs_per_s": round(finish["jobs"] / seconds),
        "errors": noop["errors"] + jobs["errors"] + finish["errors"],
        "empty_claims": jobs["empty"],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
