"""Reading a test service's /metrics: the gauges and counters the gRPC tests judge the service by."""

from __future__ import annotations

import re

import httpx
from conftest import ServiceProcess


def metric_lines(service: ServiceProcess, name: str) -> list[str]:
    """The sample lines of /metrics starting with ``name`` (no # HELP / # TYPE lines)."""
    text = httpx.get(service.url + "/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(name)]


def waiting_claims(service: ServiceProcess) -> float:
    """``entroq_waiting_claims``: blocking claims waiting on the service now."""
    return sum(float(line.split()[-1]) for line in metric_lines(service, "entroq_waiting_claims"))


def grpc_outcomes(service: ServiceProcess, method: str) -> dict[str, float]:
    """``entroq_grpc_requests_total`` of one method, by status code."""
    outcomes = {}
    for line in metric_lines(service, "entroq_grpc_requests_total{"):
        code = re.search(r'code="(\w+)"', line)
        if code and f'method="{method}"' in line:
            outcomes[code.group(1)] = float(line.split()[-1])
    return outcomes
