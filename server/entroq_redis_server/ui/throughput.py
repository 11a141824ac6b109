"""Claims, modifies and dependency errors per second over the last minutes, from the service's
own Prometheus registry (``core.metrics``), read in process: no Prometheus server needed.

With ``--workers N`` the registry is prometheus-client's multiprocess view, so the rates are
the whole service's. The counters used:

- claims: library claim calls (``entroq_store_roundtrip_seconds_count`` for try_claim and
  try_claim_id, plus ``entroq_claim_wait_seconds_count``, the blocking claims that got a task);
- modifies: ``entroq_store_roundtrip_seconds_count{op="modify"}`` (refused ones included);
- dependency errors: ``entroq_dependency_errors_total``, failing items of refused modifies.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.core import Metric

SAMPLE_EVERY_S = 5.0
KEEP_SAMPLES = 120  # ten minutes
SERIES = ("claims", "modifies", "dependency errors")
CLAIM_OPS = frozenset({"try_claim", "try_claim_id"})


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    at: float
    totals: tuple[float, float, float]


def totals(metrics: Iterable[Metric]) -> tuple[float, float, float]:
    """(claims, modifies, dependency errors) counted so far."""
    claims = modifies = dependency = 0.0
    for metric in metrics:
        for sample in metric.samples:
            if sample.name == "entroq_store_roundtrip_seconds_count":
                op = sample.labels.get("op")
                if op in CLAIM_OPS:
                    claims += sample.value
                elif op == "modify":
                    modifies += sample.value
            elif sample.name == "entroq_claim_wait_seconds_count":
                claims += sample.value
            elif sample.name == "entroq_dependency_errors_total":
                dependency += sample.value
    return claims, modifies, dependency


class Throughput:
    """Samples the counters; the page draws the rates between samples."""

    def __init__(self, collect: Callable[[], Iterable[Metric]], clock: Callable[[], float] = time.monotonic):
        self._collect = collect
        self._clock = clock
        self.samples: collections.deque[Sample] = collections.deque(maxlen=KEEP_SAMPLES + 1)

    def sample(self) -> None:
        self.samples.append(Sample(self._clock(), totals(self._collect())))

    def rates(self) -> list[tuple[float, tuple[float, float, float]]]:
        """(seconds before the last sample, per-second rates) between consecutive samples."""
        points = list(self.samples)
        if len(points) < 2:
            return []
        last = points[-1].at
        rates = []
        for before, after in itertools.pairwise(points):
            span = max(after.at - before.at, 1e-9)
            rate = tuple(max(0.0, (b - a) / span) for a, b in zip(before.totals, after.totals, strict=True))
            rates.append((after.at - last, (rate[0], rate[1], rate[2])))
        return rates


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    """Polylines of an inline SVG: one per series, in a WIDTH x HEIGHT box."""

    lines: list[str]
    peak: float
    latest: tuple[float, float, float]
    span_s: float


WIDTH, HEIGHT = 600, 160


def chart(rates: Sequence[tuple[float, tuple[float, float, float]]]) -> Chart:
    if not rates:
        return Chart(["", "", ""], 0.0, (0.0, 0.0, 0.0), 0.0)
    span = max(-rates[0][0], SAMPLE_EVERY_S)
    peak = max(max(r) for _, r in rates) or 1.0
    lines = []
    for series in range(3):
        points = []
        for ago, rate in rates:
            x = WIDTH * (1 + ago / span)
            y = HEIGHT - HEIGHT * rate[series] / peak
            points.append(f"{x:.1f},{y:.1f}")
        lines.append(" ".join(points))
    return Chart(lines, peak, rates[-1][1], span)
