"""Battery row h: resource bounds of one service process.

The row is docs/reference/reliability-battery.md 3; the decision docs/design.md 7.2.

1. Many concurrent waiting claims (10,000 at full size, 2,000 in CI) on one service
   process: each costs one connection (one file descriptor) and a bounded amount of
   memory, nothing toward the store (the store sees the same few connections however many
   claims wait); inserting as many tasks serves every one of them, each a different task;
   afterwards descriptors return to where they were, and a second round (abandoned this
   time) needs no more memory than the first.

   The client side is several processes (tests/battery/waiters.py) holding raw sockets:
   the service needs one descriptor per waiting claim, so it alone uses about 10,000 of the
   sandbox's ``ulimit -n`` (20,000 here); each client process holds a quarter.

2. A soak of claim->delete cycles through the service (1,000,000 at full size, 20,000 in
   CI): the service's RSS and descriptors and the store's memory stay flat after warm-up,
   and the store holds exactly what it held before once the queue is drained.

3. Authorization under attack (``--authz rego``, the example policy): a claim of 1,000
   queue names of 1,024 bytes (1 MB) with a token nobody has is answered 401 at once and
   the decision children barely grow (it took 6 s and grew a child to 2 GB when the
   policy walked the whole input first); listing many foreign queues (5,000 at full size,
   1,000 in CI) stays cheap in time and decision memory; and another user's simple read
   stays fast while both attacks run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest
import redis
import trio
from authz_support import ALICE, BOB, REGO_FLAGS
from battery.crash import CrashableStore
from conftest import ServiceProcess, start_service

WAITERS = pathlib.Path(__file__).parent / "battery" / "waiters.py"
CLIENT_PROCESSES = 4
WAITS = {"ci": 2_000, "full": 10_000}


def _sample(process: psutil.Process) -> tuple[float, int]:
    """(RSS in MiB, open descriptors) of the service process."""
    return process.memory_info().rss / 2**20, process.num_fds()


def _store_connections(process: psutil.Process, store_url: str) -> int:
    """The service's own TCP connections to the store (others may share the store)."""
    port = int(store_url.rsplit(":", 1)[1].split("/")[0])
    return sum(1 for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


async def _waiting(http: httpx.AsyncClient) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("entroq_waiting_claims"):
            return float(line.split()[-1])
    raise AssertionError("no entroq_waiting_claims metric")


async def _until_waiting(http: httpx.AsyncClient, count: int, limit_s: float) -> None:
    with trio.fail_after(limit_s):
        while await _waiting(http) != count:  # noqa: ASYNC110 (another process's gauge)
            await trio.sleep(0.1)


class Waiters:
    """Client processes that hold ``count`` blocking claims open between them."""

    def __init__(self, service: ServiceProcess, namespace: str, queue: str, count: int) -> None:
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        share = count // CLIENT_PROCESSES
        sizes = [share] * (CLIENT_PROCESSES - 1) + [count - share * (CLIENT_PROCESSES - 1)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(WAITERS), host, port, namespace, queue, str(size)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for size in sizes
        ]

    def read(self, process: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        assert ready, "a waiter process did not answer in time"
        return dict(json.loads(process.stdout.readline()))

    def opened(self, timeout_s: float) -> int:
        return sum(int(self.read(p, timeout_s)["opened"]) for p in self.processes)

    def answers(self, timeout_s: float) -> list[list[Any]]:
        return [a for p in self.processes for a in self.read(p, timeout_s)["answers"]]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None and process.stdin is not None:
                try:
                    process.stdin.write("close\n")
                    process.stdin.flush()
                except BrokenPipeError:
                    pass

    def wait(self) -> None:
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                if stream:
                    stream.close()


SOMAXCONN = pathlib.Path("/proc/sys/net/core/somaxconn")


@pytest.mark.skipif(not SOMAXCONN.exists() or shutil.which("ss") is None, reason="needs Linux and ss")
def test_the_listen_backlog_takes_bursts_of_waiters(store_url: str, namespace: str) -> None:
    """Hypercorn's default backlog (100) made the full-size waits test fail: 400 connections
    opened at once overflowed the accept queue, and with SYN cookies Linux reset them."""
    service = start_service(store_url, "--namespace", namespace)
    try:
        port = service.url.rsplit(":", 1)[1]
        listener = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        )
        backlog = int(listener.stdout.split()[2])  # a listener's Send-Q is its backlog
        assert backlog == min(4096, int(SOMAXCONN.read_text()))
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(900)])]
)
async def test_waiting_claims_cost_one_descriptor_and_bounded_memory(
    size: str, store_url: str, namespace: str
) -> None:
    count = WAITS[size]
    # Every waiter connects from 127.0.0.1: the default per-address cap (4096) takes the CI
    # size; the full size lifts it (behind a proxy an operator would do the same).
    cap = [] if count < 4096 else ["--max-connections-per-address", "0"]
    service = start_service(store_url, "--namespace", namespace, *cap)
    process = psutil.Process(service.process.pid)
    figures: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            # Warm-up: connection pools, the wake subscription, code paths, metric children.
            await _round(service, http, namespace, "warm", 200, answer=True)
            base_rss, base_fds = _sample(process)
            base_store_clients = _store_connections(process, store_url)
            peaks = []
            for number, answer in enumerate((True, False)):
                queue = f"wait{number}"
                waiters = Waiters(service, namespace, queue, count)
                try:
                    assert await trio.to_thread.run_sync(waiters.opened, 120) == count
                    await _until_waiting(http, count, 120)
                    peak_rss, peak_fds = _sample(process)
                    store_clients = _store_connections(process, store_url)
                    peaks.append(peak_rss)
                    started = time.monotonic()
                    if answer:
                        for start in range(0, count, 1000):
                            inserts = [{"queue": queue} for _ in range(min(1000, count - start))]
                            assert (await http.post("/api/v0/modify", json={"inserts": inserts})).is_success
                        answers = await trio.to_thread.run_sync(waiters.answers, 120)
                        assert sorted({s for s, _ in answers}) == [200]
                        assert len({i for _, i in answers}) == count, "each claim got its own task"
                    else:
                        waiters.close()
                    await trio.to_thread.run_sync(waiters.wait)
                    ended_s = time.monotonic() - started
                    await _until_waiting(http, 0, 60)
                finally:
                    waiters.close()
                    waiters.wait()
                await trio.sleep(1)  # the service closes its side of the connections
                after_rss, after_fds = _sample(process)
                figures.append(
                    f"round {number + 1} ({'answered' if answer else 'abandoned'}): peak RSS "
                    f"{peak_rss:.0f} MiB ({(peak_rss - base_rss) * 2**20 / count / 1024:.1f} KiB per "
                    f"wait), peak fds {peak_fds}, store connections {store_clients} (base "
                    f"{base_store_clients}); ended in {ended_s:.1f} s; after: RSS {after_rss:.0f} MiB, fds "
                    f"{after_fds}"
                )
                assert peak_fds <= base_fds + count + 20, "one descriptor per waiting claim"
                assert after_fds <= base_fds + 5
                assert store_clients <= base_store_clients + 5, "waiting costs no store connection"
    finally:
        service.stop()
    print(
        f"\n[battery h/waits/{size}] {count} waits; base RSS {base_rss:.0f} MiB, fds {base_fds}; "
        + "; ".join(figures)
    )
    assert (peaks[0] - base_rss) / count < 64 / 1024, "at most 64 KiB per waiting claim"
    assert peaks[1] <= peaks[0] * 1.1, "a second round needs no more memory than the first"
    assert "Traceback" not in service.log()


async def _round(
    service: ServiceProcess, http: httpx.AsyncClient, namespace: str, queue: str, count: int, answer: bool
) -> None:
    waiters = Waiters(service, namespace, queue, count)
    try:
        await trio.to_thread.run_sync(waiters.opened, 60)
        await _until_waiting(http, count, 60)
        if answer:
            await http.post("/api/v0/modify", json={"inserts": [{"queue": queue} for _ in range(count)]})
            await trio.to_thread.run_sync(waiters.answers, 60)
    finally:
        waiters.close()
        waiters.wait()
    await _until_waiting(http, 0, 30)


SOAKER = pathlib.Path(__file__).parent / "battery" / "soaker.py"
# (cycles, soak processes, loops each, seconds between samples, time limit s)
SOAK = {"ci": (6_000, 2, 4, 1.0, 100), "full": (1_000_000, 2, 6, 5.0, 4000)}
WARM_UP = 2_000


@dataclasses.dataclass
class Sample:
    t: float
    rss: float
    fds: int
    store: int
    net: int
    keys: int
    calls: int


def _take(process: psutil.Process, client: redis.Redis, started: float) -> Sample:
    rss, fds = _sample(process)
    store, net = _store_memory(client)
    calls = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    return Sample(time.monotonic() - started, rss, fds, store, net, int(client.dbsize()), int(calls))


def _store_memory(client: redis.Redis) -> tuple[int, int]:
    """The store's used_memory, and the same without its clients' and the AOF's buffers (they
    come and go with the service's pooled connections and the fsync schedule)."""
    memory = client.info("memory")
    used = int(memory["used_memory"])
    return used, used - int(memory.get("mem_clients_normal", 0)) - int(memory.get("mem_aof_buffer", 0))


async def _soak(
    url: str,
    cycles: int,
    processes: int,
    loops: int,
    directory: pathlib.Path,
    tag: str,
    sample: Callable[[], None],
    every_s: float,
    limit_s: float,
) -> list[dict[str, Any]]:
    """Runs the soak clients to completion, sampling meanwhile; returns their reports."""
    outputs = [directory / f"{tag}{n}.json" for n in range(processes)]
    share = cycles // processes
    soakers = [
        subprocess.Popen(  # noqa: ASYNC220 (started once; the loop below is what waits)
            [sys.executable, str(SOAKER), url, "soak", f"{tag}{n}", str(share), str(loops), str(out)]
        )
        for n, out in enumerate(outputs)
    ]
    try:
        with trio.fail_after(limit_s):
            while any(p.poll() is None for p in soakers):
                sample()
                await trio.sleep(every_s)
    finally:
        for soaker in soakers:
            if soaker.poll() is None:
                soaker.kill()
            soaker.wait()
    assert all(s.returncode == 0 for s in soakers)
    return [json.loads(out.read_text()) for out in outputs]


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(7200)])]
)
async def test_soak_of_claim_delete_cycles_stays_flat(size: str, tmp_path: pathlib.Path) -> None:
    """Warm-up, then the soak in two halves, each drained: the figures after each drain
    compare like with like (no tasks in the store, no requests in flight)."""
    cycles, processes, loops, every_s, limit_s = SOAK[size]
    store = CrashableStore(tmp_path / "data", "everysec")
    store.start()
    service = start_service(store.url, "--namespace", "soak", log_dir=str(tmp_path))
    process = psutil.Process(service.process.pid)
    client = redis.Redis.from_url(store.url)
    started = time.monotonic()
    samples: list[Sample] = []
    drained: list[Sample] = []
    reports: list[dict[str, Any]] = []
    try:
        drained.append(_take(process, client, started))
        for tag, count in (("warm", WARM_UP), ("first", cycles // 2), ("second", cycles - cycles // 2)):
            reports += await _soak(
                service.url,
                count,
                processes,
                loops,
                tmp_path,
                tag,
                lambda: samples.append(_take(process, client, started)),
                every_s,
                limit_s,
            )
            await trio.sleep(1)
            drained.append(_take(process, client, started))
        evicted = int(client.info("stats").get("evicted_scripts", 0))
    finally:
        client.close()
        service.stop()
        store.stop()
    start, warm, half, end = drained
    elapsed = end.t - warm.t
    done = sum(r["cycles"] for r in reports) - WARM_UP
    latencies = sorted((entry for r in reports[processes:] for entry in r["latencies"]), key=lambda e: e[0])
    tenth = max(1, len(latencies) // 10)
    first_p99, last_p99 = (
        sorted(s for _, s in part)[int(len(part) * 0.99)] * 1000
        for part in (latencies[:tenth], latencies[-tenth:])
    )
    mib = 2**20
    print(
        f"\n[battery h/soak/{size}] {done} claim->delete cycles in {elapsed:.0f} s ({done / elapsed:.0f}/s) "
        f"through one service process after {WARM_UP} warm-up cycles; drained figures at start / after "
        f"warm-up / half-way / end: service RSS {start.rss:.1f} / {warm.rss:.1f} / {half.rss:.1f} / "
        f"{end.rss:.1f} MiB (max {max(s.rss for s in samples):.1f}), fds {start.fds} / {warm.fds} / "
        f"{half.fds} / {end.fds}; store used_memory {start.store / mib:.2f} / {warm.store / mib:.2f} / "
        f"{half.store / mib:.2f} / {end.store / mib:.2f} MiB "
        f"(max {max(s.store for s in samples) / mib:.2f}), "
        f"without client and AOF buffers {start.net / mib:.3f} / {warm.net / mib:.3f} / {half.net / mib:.3f}"
        f" / {end.net / mib:.3f}; keys {start.keys} / {warm.keys} / {half.keys} / {end.keys} (max "
        f"{max(s.keys for s in samples)}); evicted_scripts {evicted}; claim p99 {first_p99:.1f} ms in the "
        f"first tenth, {last_p99:.1f} ms in the last"
    )
    assert done == cycles
    assert end.rss - warm.rss <= max(20.0, warm.rss * 0.05), "service RSS grows after warm-up"
    assert end.fds <= warm.fds + 5
    assert start.keys == warm.keys == half.keys == end.keys, "a drained namespace leaves no key behind"
    # The store settles over the first ~100k cycles (a few hundred KiB, no keys); then flat.
    assert abs(end.net - half.net) <= max(half.net * 0.05, 64 * 1024), "store memory grows in the second half"
    assert evicted == 0
    assert "Traceback" not in service.log()


# Foreign queues listed; listings in a row.
AUTHZ_LISTING = {"ci": (1_000, 3), "full": (5_000, 5)}


def _children_rss_mib(process: psutil.Process) -> float:
    """The decision children's RSS summed (the service's only children with an external store)."""
    total = 0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # replaced meanwhile
            total += child.memory_info().rss
    return total / 2**20


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(900)])]
)
async def test_authorization_attacks_stay_cheap(size: str, store_url: str, namespace: str) -> None:
    foreign, listings = AUTHZ_LISTING[size]
    service = start_service(store_url, "--namespace", namespace, *REGO_FLAGS)
    process = psutil.Process(service.process.pid)
    peak = 0.0
    reads: list[float] = []

    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "User-Agent": "entroq-redis-tests"}

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _children_rss_mib(process))
            await trio.sleep(0.05)

    async def bob_reads(http: httpx.AsyncClient) -> None:
        while True:
            started = time.monotonic()
            answer = await http.get("/api/v0/queues//bob/q00000/tasks", headers=headers(BOB))
            assert answer.status_code == 200
            reads.append(time.monotonic() - started)
            await trio.sleep(0.02)

    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=120) as http:
            for start in range(0, foreign, 1000):
                inserts = [{"queue": f"/bob/q{i:05d}"} for i in range(start, min(foreign, start + 1000))]
                answer = await http.post("/api/v0/modify", json={"inserts": inserts}, headers=headers(BOB))
                assert answer.status_code == 200
            for _ in range(20):  # warm: every child has decided something
                assert (await http.get("/api/v0/queues/stats", headers=headers(BOB))).status_code == 200
            base = _children_rss_mib(process)
            names = [f"/{i:04d}" + "x" * 1019 for i in range(1000)]
            claim = {"claimantId": "c", "durationMs": 1000, "queues": names}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                nursery.start_soon(bob_reads, http)
                started = time.monotonic()
                refused = await http.post("/api/v0/claim", json=claim, headers=headers("nobody"))
                refused_s = time.monotonic() - started
                after_refusal = peak
                started = time.monotonic()
                for _ in range(listings):
                    listed = await http.get("/api/v0/queues", headers=headers(ALICE))
                    assert listed.status_code == 200 and listed.json().get("queues", []) == []
                listing_s = (time.monotonic() - started) / listings
                nursery.cancel_scope.cancel()
    finally:
        service.stop()
    reads.sort()
    median_ms, worst_ms = reads[len(reads) // 2] * 1000, reads[-1] * 1000
    print(
        f"\n[battery h/authz/{size}] decision children RSS {base:.0f} MiB at rest; unauthenticated 1 MB "
        f"claim: {refused.status_code} in {refused_s * 1000:.0f} ms, children peak {after_refusal:.0f} MiB; "
        f"{listings} listings of {foreign} foreign queues: {listing_s * 1000:.0f} ms each, children peak "
        f"{peak:.0f} MiB; bob's {len(reads)} reads meanwhile: median {median_ms:.1f} ms, worst "
        f"{worst_ms:.0f} ms"
    )
    assert refused.status_code == 401
    # Resource bounds, far from today's figures (30 ms, no growth; 0.2 s and a few MiB per
    # listing of 1,000) and far below the old ones (6 s and 2 GB; 1-6 s and 0.3-1.3 GB).
    assert refused_s < 3, "a refusal must not wait for the policy to walk the request"
    assert after_refusal - base < 200, "an unauthenticated request grew the decision children"
    assert peak - base < 100 * listings, "foreign listings grew the decision children"
    assert listing_s < 0.004 * foreign + 1
    assert median_ms < 250, "another user's read slowed down"
    assert "Traceback" not in service.log()
