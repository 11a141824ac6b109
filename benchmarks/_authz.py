"""The authz part: how long one in-process Rego decision takes (``--authz rego``).

The reliability battery's aim is a decision p99 under 1 ms with the policy evaluated in
process. This measures the example policy (``deploy/authz``), compiled once, two ways: in the
calling thread (``evaluate_sync``: rego-cpp's own cost) and as the service runs it
(``evaluate``: from trio, through a worker thread, in a child process of the engine's pool,
one decision at a time). Two callers: a static token (a SHA-256 lookup in the data) and an
HS256 JWT (signature, issuer, audience and expiry checked inside the policy). The children's
peak memory shows the leak bounded by their replacement.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import psutil
import trio
from _harness import HERE, percentile
from _parts import Context
from entroq_redis_server.authz.input import Credentials
from entroq_redis_server.authz.rego import RegoEngine, load_rego_engine
from entroq_redis_server.authz.rego_processes import DECISIONS_PER_PROCESS

# The tests' helpers issue the example policy's tokens and JWTs; the benchmark uses the same ones.
sys.path.insert(0, str(HERE.parent / "tests"))
from authz_support import ALICE, DATA, POLICY, jwt

WARMUP = 100
# A request for two queues, one the caller may use and one it may not: the policy walks both.
QUEUES = [{"exact": "/alice/x", "actions": ["CLAIM"]}, {"exact": "/bob/x", "actions": ["READ"]}]


def part_authz(ctx: Context) -> None:
    began = time.perf_counter()
    engine = load_rego_engine([POLICY], DATA, ("entroq", "authz"))
    compile_ms = (time.perf_counter() - began) * 1e3
    callers = {
        "static token": {"type": "Bearer", "credentials": ALICE},
        "HS256 JWT": {"type": "Bearer", "credentials": jwt("alice", expires_in=3600)},
    }
    try:
        for name, authz in callers.items():
            document = {"authz": authz, "queues": QUEUES}
            for where in ("in process", "child process (service)"):
                if where == "in process":
                    latencies = _timed_in_process(engine, document, ctx.sizes.authz_decisions)
                    children_peak_mb = None
                else:
                    latencies, children_peak_mb = trio.run(_timed_in_children, engine, document, ctx.sizes)
                ctx.results.add(
                    "authz",
                    caller=name,
                    where=where,
                    decisions=len(latencies),
                    decision_p50_us=percentile(latencies, 50),
                    decision_p99_us=percentile(latencies, 99),
                    decision_max_us=max(latencies),
                    compile_ms=compile_ms,
                    children_peak_rss_mb=children_peak_mb,
                )
    finally:
        engine.close()


def _timed_in_process(engine: RegoEngine, document: dict[str, Any], count: int) -> list[float]:
    for _ in range(WARMUP):
        engine.evaluate_sync(document)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        engine.evaluate_sync(document)
        latencies.append((time.perf_counter() - started) * 1e6)
    return latencies


async def _timed_in_children(
    engine: RegoEngine, document: dict[str, Any], sizes: Any
) -> tuple[list[float], float]:
    credentials = Credentials("Bearer", document["authz"]["credentials"])
    me = psutil.Process()
    for _ in range(WARMUP):
        await engine.evaluate(credentials, document)
    latencies = []
    peak = 0
    # Enough decisions for the children to be replaced at least once (their peak is the bound).
    count = (
        max(sizes.authz_decisions, 2 * DECISIONS_PER_PROCESS)
        if sizes.authz_decisions >= 1000
        else sizes.authz_decisions
    )
    for index in range(count):
        started = time.perf_counter()
        await engine.evaluate(credentials, document)
        latencies.append((time.perf_counter() - started) * 1e6)
        if index % 500 == 0:
            peak = max([peak] + [_rss(child) for child in me.children()])
    return latencies, peak / 2**20


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:  # replaced meanwhile
        return 0
