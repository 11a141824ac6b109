"""Prometheus metrics of the service (names are a contract: dashboards are built on them).

- ``entroq_queue_size{queue,l1,l2,l3,name,type}``: EntroQ's gauge; type is total, claimed,
  available, future or maxClaims. ``queue``, ``l1``, ``l2``, ``l3`` are EntroQ v1's labels (see
  queue_levels), ``name`` (the queue again) is EntroQ v0.9's, so dashboards and alerts of either
  generation work. It describes the store, not this process, so it is computed on scrape (at most
  once per refresh interval) and never enters the multiprocess files. With a cap of N queues
  it covers the N largest by task count (ties by name), so nobody hides the queues that matter
  by creating many small ones that sort first; ``entroq_queue_size_omitted_queues`` says how
  many non-empty queues were left out.
- ``entroq_http_requests_total{route,outcome}`` and ``entroq_http_request_duration_seconds``
  with the same labels; route is a route template (bounded), outcome one of ok, dependency,
  bad_request, not_found, timeout, unavailable, outcome_unknown (a write not confirmed by
  --wait-replicas/--wait-fsync in time), error, denied, cancelled (the client left).
- ``entroq_grpc_requests_total{method,code}`` and ``entroq_grpc_request_duration_seconds``
  with the same labels: calls on the gRPC listener; method is an RPC name of ``api.EntroQ``,
  ``grpc.health.v1.Health/Check`` or ``unknown``, code a gRPC status name (OK, NOT_FOUND, ...,
  CANCELLED when the client left).
- ``entroq_dependency_errors_total{kind}``: failing items of refused modifies, by kind.
- ``entroq_waiting_claims``: blocking claims waiting now.
- ``entroq_claim_wait_seconds``: how long blocking claims waited before they got a task.
- ``entroq_store_roundtrip_seconds{op}``: library calls to the store (blocking claims excluded:
  their time is in the claim wait histogram).
- ``entroq_authz_decisions_total{outcome}`` (with ``--authz``): authorization decisions;
  outcome is allow, filtered (a listing with queues hidden), deny (403), unauthenticated
  (401) or unavailable (the policy engine failed: 503). ``entroq_authz_decision_seconds``:
  how long the policy engine took.

With ``--workers N`` the processes share ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode): any worker's ``/metrics`` sums the counters and histograms of all workers
and ``entroq_waiting_claims`` (mode livesum). Process metrics are exported only with one worker.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterator, Sequence

import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

import entroq_redis

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The store's listing takes at most 1,000 exact names per call.
EXACT_NAMES_PER_CALL = 1000

_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


def queue_levels(name: str) -> tuple[str, str, str]:
    """EntroQ v1's ``l1``, ``l2``, ``l3`` labels of a queue: its first three path prefixes.

    As EntroQ computes them (pkg/eqsvcgrpc, observeStats): one leading ``/`` is dropped, the
    rest split on ``/``, and each level is the previous one plus ``/`` and the next part, so
    ``/a/b/c/d`` and ``a/b/c/d`` both give ``/a``, ``/a/b``, ``/a/b/c``. A level the name does
    not reach is empty. EntroQ's dashboard groups and filters queues by these.
    """
    parts = name.removeprefix("/").split("/")
    l1 = "/" + parts[0]
    l2 = l1 + "/" + parts[1] if len(parts) > 1 else ""
    l3 = l2 + "/" + parts[2] if len(parts) > 2 else ""
    return l1, l2, l3


class QueueSizes(Collector):
    """``entroq_queue_size`` from the last snapshot of the store's queue stats."""

    def __init__(self, interval_s: float, max_queues: int) -> None:
        self.interval_s = interval_s
        self.max_queues = max_queues
        self._stats: Sequence[entroq_redis.QueueStats] = ()
        self._omitted = 0
        self._taken_at: float | None = None
        self._lock = trio.Lock()
        self.failures = 0

    async def refresh_if_stale(self, client: entroq_redis.EntroQ) -> None:
        """Re-reads the stats if the snapshot is older than the interval (one reader at a time)."""
        async with self._lock:
            now = trio.current_time()
            if self._taken_at is not None and now - self._taken_at < self.interval_s:
                return
            try:
                self._stats, self._omitted = await self._read(client)
            except entroq_redis.EntroQError as exc:
                # Keep the previous snapshot; the failure counter tells the story.
                self.failures += 1
                log.warning("queue size refresh failed: %s", exc)
            self._taken_at = now

    async def _read(self, client: entroq_redis.EntroQ) -> tuple[list[entroq_redis.QueueStats], int]:
        """(stats of the largest ``max_queues`` queues, how many non-empty queues were left out).

        Every queue's size costs the store one O(1) read (1,000 queues per script call); the
        full stats, O(log n) each, are read only for the queues exported.
        """
        if self.max_queues <= 0:
            return await client.queue_stats(), 0
        sizes = await client.queues()
        if len(sizes) <= self.max_queues:
            return await client.queue_stats(), 0
        largest = heapq.nsmallest(self.max_queues, sizes.items(), key=lambda item: (-item[1], item[0]))
        names = sorted(name for name, _ in largest)
        stats: list[entroq_redis.QueueStats] = []
        for start in range(0, len(names), EXACT_NAMES_PER_CALL):
            stats += await client.queue_stats(exact=names[start : start + EXACT_NAMES_PER_CALL])
        return stats, len(sizes) - len(names)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "entroq_queue_size",
            "Number of tasks in named queue.",
            labels=["queue", "l1", "l2", "l3", "name", "type"],
        )
        for s in self._stats:
            queue = [s.name, *queue_levels(s.name), s.name]
            gauge.add_metric([*queue, "total"], s.num_tasks)
            gauge.add_metric([*queue, "claimed"], s.num_claimed)
            gauge.add_metric([*queue, "available"], s.num_available)
            gauge.add_metric([*queue, "future"], s.num_future)
            gauge.add_metric([*queue, "maxClaims"], s.max_claims)
        yield gauge
        yield GaugeMetricFamily(
            "entroq_queue_size_omitted_queues",
            "Non-empty queues left out of entroq_queue_size by --metrics-max-queues (it keeps the largest).",
            value=self._omitted,
        )


class Metrics:
    """The service's metrics and the registry ``/metrics`` exposes."""

    def __init__(self, queue_interval_s: float = 15.0, queue_limit: int = 1000) -> None:
        # The *_created series double the exposition for no dashboard's benefit.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        if self.multiprocess:
            # Values live in the shared directory; the collector reads every worker's files.
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            own: CollectorRegistry | None = None
        else:
            ProcessCollector(registry=self.registry)
            own = self.registry
        self.queue_sizes = QueueSizes(queue_interval_s, queue_limit)
        self.registry.register(self.queue_sizes)
        self.requests = Counter(
            "entroq_http_requests_total",
            "HTTP requests by route and outcome.",
            ["route", "outcome"],
            registry=own,
        )
        self.request_seconds = Histogram(
            "entroq_http_request_duration_seconds",
            "HTTP request latency by route and outcome (blocking claims include their wait).",
            ["route", "outcome"],
            buckets=_REQUEST_BUCKETS,
            registry=own,
        )
        self.grpc_requests = Counter(
            "entroq_grpc_requests_total",
            "gRPC calls by method and status code.",
            ["method", "code"],
            registry=own,
        )
        self.grpc_request_seconds = Histogram(
            "entroq_grpc_request_duration_seconds",
            "gRPC call latency by method and status code (blocking claims include their wait).",
            ["method", "code"],
            buckets=_REQUEST_BUCKETS,
            registry=own,
        )
        self.dependency_errors = Counter(
            "entroq_dependency_errors_total",
            "Failing items of refused modifies, by kind.",
            ["kind"],
            registry=own,
        )
        self.waiting_claims = Gauge(
            "entroq_waiting_claims", "Blocking claims waiting now.", multiprocess_mode="livesum", registry=own
        )
        self.claim_wait_seconds = Histogram(
            "entroq_claim_wait_seconds",
            "How long blocking claims waited before they got a task.",
            buckets=_WAIT_BUCKETS,
            registry=own,
        )
        self.store_seconds = Histogram(
            "entroq_store_roundtrip_seconds",
            "Library calls to the store by operation (blocking claims excluded).",
            ["op"],
            buckets=_STORE_BUCKETS,
            registry=own,
        )
        self.authz_decisions = Counter(
            "entroq_authz_decisions_total",
            "Authorization decisions by outcome (allow, filtered, deny, unauthenticated, unavailable).",
            ["outcome"],
            registry=own,
        )
        self.authz_seconds = Histogram(
            "entroq_authz_decision_seconds",
            "Time the policy engine took per authorization decision.",
            buckets=_STORE_BUCKETS,
            registry=own,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
