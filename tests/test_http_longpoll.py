"""Blocking claims over HTTP: wake-ups across service processes, deadlines, disconnects,
abandoned waits, shutdown. Every service here is a real ``entroq-redis serve`` process."""

from __future__ import annotations

import json
import re
import signal
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
import trio
from conftest import ServiceProcess, start_service


async def waiting(url: str) -> float:
    """The service's entroq_waiting_claims gauge."""
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    match = re.search(r"^entroq_waiting_claims(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return float(match.group(1))


async def until_waiting(url: str, count: float, limit_s: float = 10) -> None:
    with trio.fail_after(limit_s):
        # Polling is the only way to watch another process's gauge.
        while await waiting(url) != count:  # noqa: ASYNC110
            await trio.sleep(0.01)


def claim_body(queue: str, claimant: str = "waiter") -> dict[str, Any]:
    return {"claimantId": claimant, "queues": [queue], "durationMs": "30000"}


@pytest.fixture(scope="module")
def second_service(store_url: str) -> Iterator[ServiceProcess]:
    """Another service process on the same store."""
    service = start_service(store_url, "--test-any-namespace")
    yield service
    service.stop()


async def test_insert_through_another_process_wakes_a_waiting_claim(
    http: httpx.AsyncClient, http_service: ServiceProcess, second_service: ServiceProcess, namespace: str
) -> None:
    latencies = []
    async with httpx.AsyncClient(
        base_url=second_service.url, headers={"EntroQ-Namespace": namespace}
    ) as inserter:
        await inserter.get("/api/v0/time")  # connection warm
        for trial in range(10):
            got: list[dict[str, Any]] = []
            answered = trio.Event()

            async def wait_for_task(got: list[dict[str, Any]] = got, answered: trio.Event = answered) -> None:
                response = await http.post("/api/v0/claim/wait", json=claim_body("wake"))
                got.append(response.json())
                answered.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_task)
                await until_waiting(http_service.url, 1)
                started = time.perf_counter()
                await inserter.post(
                    "/api/v0/modify", json={"inserts": [{"queue": "wake", "id": f"t{trial}"}]}
                )
                with trio.fail_after(5):
                    await answered.wait()
                latencies.append(time.perf_counter() - started)
            assert got[0]["task"]["id"] == f"t{trial}"
            await http.post("/api/v0/modify", json={"deletes": [{"id": f"t{trial}", "version": 1}]})
    print(f"wake-up latency across processes (insert sent -> claim answered): {latencies}")
    assert statistics.median(latencies) < 0.050
    assert max(latencies) < 0.250


async def test_a_delayed_task_wakes_the_claim_when_it_arrives(http: httpx.AsyncClient) -> None:
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "later", "byMs": "300"}]})
    started = time.perf_counter()
    response = await http.post("/api/v0/claim/wait", json=claim_body("later"))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.json()["task"]["queue"] == "later"
    assert 0.2 < elapsed < 1.5


async def test_deadline_headers_end_a_wait_with_504(http: httpx.AsyncClient) -> None:
    for headers in ({"X-Server-Timeout": "0.1"}, {"Connect-Timeout-Ms": "100"}):
        started = time.perf_counter()
        response = await http.post("/api/v0/claim/wait", json=claim_body("empty"), headers=headers)
        assert response.status_code == 504 and response.json()["code"] == 4
        assert 0.09 < time.perf_counter() - started < 2
    zero = await http.post("/api/v0/claim/wait", json=claim_body("empty"), headers={"X-Server-Timeout": "0"})
    assert zero.status_code == 504


async def test_client_disconnect_cancels_its_wait_at_once(
    http: httpx.AsyncClient, http_service: ServiceProcess
) -> None:
    with trio.move_on_after(0.3):
        await http.post("/api/v0/claim/wait", json=claim_body("gone"))
    started = time.perf_counter()
    await until_waiting(http_service.url, 0, limit_s=2)
    assert time.perf_counter() - started < 0.5
    # The abandoned wait took nothing: a task inserted now is there for the next claimant.
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "gone"}]})
    claimed = await http.post("/api/v0/claim", json=claim_body("gone", "next"))
    assert claimed.json()["task"]["claimantId"] == "next"


async def test_a_thousand_abandoned_waits_leave_nothing_behind(store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--test-any-namespace")
    try:
        process = psutil.Process(service.process.pid)
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        body = json.dumps(claim_body("abandoned")).encode()
        request = (
            f"POST /api/v0/claim/wait HTTP/1.1\r\nHost: x\r\nEntroQ-Namespace: {namespace}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

        async def abandon(count: int) -> None:
            streams = []
            try:
                for _ in range(count):
                    stream = await trio.open_tcp_stream(host, int(port))
                    streams.append(stream)
                    await stream.send_all(request)
                await until_waiting(service.url, count)
            finally:
                for stream in streams:
                    await stream.aclose()
            await until_waiting(service.url, 0)

        await abandon(100)  # warm up: connection pools, caches, metric children
        fds, rss = process.num_fds(), process.memory_info().rss
        for _ in range(5):
            await abandon(200)
        grown_fds = process.num_fds() - fds
        grown_mb = (process.memory_info().rss - rss) / 2**20
        print(f"after 1,000 abandoned waits: fds {grown_fds:+d}, rss {grown_mb:+.1f} MiB")
        assert grown_fds <= 2
        assert grown_mb < 20
        async with httpx.AsyncClient(base_url=service.url, headers={"EntroQ-Namespace": namespace}) as client:
            assert (await client.get("/api/v0/queues")).json() == {}
            await client.post("/api/v0/modify", json={"inserts": [{"queue": "abandoned"}]})
            claimed = await client.post("/api/v0/claim", json=claim_body("abandoned", "survivor"))
            assert claimed.json()["task"]["claimantId"] == "survivor"
    finally:
        service.stop()
    assert "Traceback" not in service.log()


async def test_claim_wait_cap(store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--test-any-namespace", "--claim-wait-cap", "0.2")
    try:
        async with httpx.AsyncClient(base_url=service.url, headers={"EntroQ-Namespace": namespace}) as client:
            for headers in ({}, {"X-Server-Timeout": "30"}):
                started = time.perf_counter()
                response = await client.post("/api/v0/claim/wait", json=claim_body("q"), headers=headers)
                assert response.status_code == 504
                assert 0.15 < time.perf_counter() - started < 2
    finally:
        service.stop()


async def test_shutdown_returns_waiting_claims_and_exits_cleanly(store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--test-any-namespace")
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=service.url, headers={"EntroQ-Namespace": namespace}) as client:

        async def wait() -> None:
            answers.append(await client.post("/api/v0/claim/wait", json=claim_body("q")))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(wait)
            await until_waiting(service.url, 3)
            started = time.perf_counter()
            service.process.send_signal(signal.SIGTERM)
        assert time.perf_counter() - started < 2
    assert [r.status_code for r in answers] == [503, 503, 503]
    assert all("shutting down" in r.json()["message"] for r in answers)
    assert await trio.to_thread.run_sync(lambda: service.process.wait(20)) == 0
    service.stop()
    assert "Traceback" not in service.log()


async def test_several_workers_share_one_port_and_their_metrics(store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--test-any-namespace", "--workers", "2")
    try:
        async with httpx.AsyncClient(
            base_url=service.url,
            headers={"EntroQ-Namespace": namespace},
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            for _ in range(40):
                assert (await client.get("/api/v0/time")).status_code == 200

            async def wait() -> None:
                await client.post("/api/v0/claim/wait", json=claim_body("w"))

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(wait)
                await until_waiting(service.url, 4)  # the sum over both workers, from either one
                await client.post("/api/v0/modify", json={"inserts": [{"queue": "w"} for _ in range(4)]})
            for _ in range(6):  # new connections land on either worker; each reports the total
                text = (await client.get("/metrics")).text
                total = re.search(
                    r'entroq_http_requests_total\{outcome="ok",route="/api/v0/time"\} (\S+)', text
                )
                assert total and float(total.group(1)) == 40.0
    finally:
        assert service.stop() == 0
    assert "Traceback" not in service.log()


def test_serve_runs_the_embedded_store_and_stops_it_last(tmp_path: Any) -> None:
    data = tmp_path / "data"
    service = start_service(None, "--data", str(data))
    store_pids = [p.pid for p in psutil.Process(service.process.pid).children(recursive=True)]
    assert store_pids, "the embedded store runs as a child process"
    try:
        inserted = httpx.post(
            service.url + "/api/v0/modify", json={"inserts": [{"queue": "kept", "id": "k1"}]}
        )
        assert inserted.status_code == 200
    finally:
        assert service.stop(signal.SIGINT) == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in store_pids)
    again = start_service(None, "--data", str(data))
    try:
        tasks = httpx.get(again.url + "/api/v0/tasks", params={"queue": "kept"}).json()["tasks"]
        assert [t["id"] for t in tasks] == ["k1"]
    finally:
        assert again.stop() == 0
