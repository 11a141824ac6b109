"""/metrics: the exact metric names and labels dashboards rely on, and the queue size refresh."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio
from conftest import ServiceProcess, start_service
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, metric: str, /, **labels: str) -> float | None:
    return samples(text).get((metric, tuple(sorted(labels.items()))))


def queue_size(text: str, queue: str, kind: str, levels: tuple[str, str, str] | None = None) -> float | None:
    """``entroq_queue_size`` of one queue and type, found only by its full label set: the labels
    EntroQ v1's dashboard selects on (queue, l1, l2, l3) and v0.9's (name). ``levels`` default to
    those of a one-part name ``q``: ``/q``, "", ""."""
    l1, l2, l3 = levels or ("/" + queue, "", "")
    return value(text, "entroq_queue_size", queue=queue, l1=l1, l2=l2, l3=l3, name=queue, type=kind)


@pytest.fixture
def service(store_url: str, namespace: str) -> Iterator[ServiceProcess]:
    """A service whose default namespace is this test's, refreshing queue sizes quickly."""
    started = start_service(
        store_url, "--namespace", namespace, "--metrics-interval", "0.3", "--metrics-max-queues", "2"
    )
    yield started
    started.stop()


async def test_metric_names_and_labels(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.url) as http:
        await http.post("/api/v0/modify", json={"inserts": [{"queue": "a"}, {"queue": "a"}, {"queue": "b"}]})
        await http.post("/api/v0/modify", json={"inserts": [{"queue": "c"}]})
        await http.post("/api/v0/claim", json={"claimantId": "w", "queues": ["a"], "durationMs": "60000"})
        await http.post(
            "/api/v0/modify", json={"deletes": [{"id": "x", "version": 1}, {"id": "y", "version": 2}]}
        )
        await http.post("/api/v0/claim/wait", json={"claimantId": "w", "queues": ["b"]})
        await http.post(
            "/api/v0/claim/wait",
            json={"claimantId": "w", "queues": ["z"]},
            headers={"X-Server-Timeout": "0.01"},
        )
        await http.get("/nowhere")
        text = (await http.get("/metrics")).text

    # EntroQ's gauge, limited to the first --metrics-max-queues queues by name.
    assert queue_size(text, "a", "total") == 2
    assert queue_size(text, "a", "claimed") == 1
    assert queue_size(text, "a", "available") == 1
    assert queue_size(text, "a", "future") == 0
    assert queue_size(text, "a", "maxClaims") == 1
    assert queue_size(text, "b", "total") == 1
    assert queue_size(text, "c", "total") is None
    # Requests by route template and outcome, counted and timed alike.
    assert value(text, "entroq_http_requests_total", route="/api/v0/modify", outcome="ok") == 2
    assert value(text, "entroq_http_requests_total", route="/api/v0/modify", outcome="dependency") == 1
    assert value(text, "entroq_http_requests_total", route="/api/v0/claim/wait", outcome="timeout") == 1
    assert value(text, "entroq_http_requests_total", route="unmatched", outcome="not_found") == 1
    count = value(text, "entroq_http_request_duration_seconds_count", route="/api/v0/claim", outcome="ok")
    assert count == 1
    assert value(text, "entroq_dependency_errors_total", kind="DELETE") == 2
    assert value(text, "entroq_waiting_claims") == 0
    assert value(text, "entroq_claim_wait_seconds_count") == 1  # only claims that got a task
    assert value(text, "entroq_store_roundtrip_seconds_count", op="modify") == 3
    assert value(text, "entroq_store_roundtrip_seconds_count", op="try_claim") == 1
    assert "entroq_http_requests_created" not in text


async def test_queue_sizes_refresh_at_most_once_per_interval(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.url) as http:
        await http.post("/api/v0/modify", json={"inserts": [{"queue": "a"}]})
        first = (await http.get("/metrics")).text
        await http.post("/api/v0/modify", json={"inserts": [{"queue": "a"}]})
        soon = (await http.get("/metrics")).text
        await trio.sleep(0.35)
        later = (await http.get("/metrics")).text
    assert queue_size(first, "a", "total") == 1
    assert queue_size(soon, "a", "total") == 1  # the cached snapshot
    assert queue_size(later, "a", "total") == 2


async def test_queue_size_levels_follow_entroq(service: ServiceProcess) -> None:
    """l1..l3 as EntroQ's server computes them (pkg/eqsvcgrpc observeStats): one leading "/"
    dropped, then cumulative prefixes of the first three parts, each starting with "/"."""
    async with httpx.AsyncClient(base_url=service.url) as http:
        inserts = [{"queue": "/eq/jobs/x/y"}, {"queue": "/eq/jobs/x/y"}, {"queue": "tenant/work"}]
        assert (await http.post("/api/v0/modify", json={"inserts": inserts})).status_code == 200
        text = (await http.get("/metrics")).text
    assert queue_size(text, "/eq/jobs/x/y", "total", ("/eq", "/eq/jobs", "/eq/jobs/x")) == 2
    assert queue_size(text, "tenant/work", "total", ("/tenant", "/tenant/work", "")) == 1
    assert queue_size(text, "tenant/work", "available", ("/tenant", "/tenant/work", "")) == 1
