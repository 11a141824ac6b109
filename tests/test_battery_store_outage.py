"""docs/design.md 7.1: the store goes away under a running service, then comes back.

tests/test_http_service.py covers a store that is unreachable from the start. Here the
store dies (SIGKILL) or shuts down (SIGTERM) while the service runs with claims waiting,
stays away for a while, and returns on the same address. While it is away:

- every API call fails fast with 503 (well under a second), never a hang or a 500;
- /readyz answers 503, /healthz stays 200 (the process itself is fine);
- waiting claims end cleanly: one with a deadline ends at its deadline (503/504); one
  without keeps waiting and is served when tasks arrive after the store is back, unless a
  wake-up sends it to the store while it is away: then it ends at once with a 503 and the
  client asks again.

When it is back, without a restart of the service: /readyz is 200 at once, the claims that
waited through the outage get the tasks inserted then, and a new blocking claim is woken
by an insert within milliseconds, i.e. the service's store subscription is back too.
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import Any

import httpx
import pytest
import trio
from battery.crash import CrashableStore
from conftest import start_service

import entroq_redis
from entroq_redis import TaskData

OUTAGE_S = 10.0
# Claims that wait through the outage, and claims whose deadline falls inside it.
PATIENT = 20
HASTY = 5


def claim_body(queue: str) -> dict[str, Any]:
    return {"claimantId": "waiter", "queues": [queue], "durationMs": "60000"}


@pytest.mark.parametrize("how", ["kill", "shutdown"])
async def test_store_outage_fails_fast_and_the_service_recovers_in_place(
    how: str, tmp_path: pathlib.Path
) -> None:
    store = CrashableStore(tmp_path / "data", "everysec")
    store.start()
    service = start_service(store.url, log_dir=str(tmp_path))
    patient: list[tuple[int, str]] = []
    ended_503: list[float] = []
    hasty: list[tuple[int, float]] = []
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            assert (await http.get("/readyz")).status_code == 200

            async def wait_patiently() -> None:
                # A wake-up that falls into the outage (the subscription coming back to a
                # store that is going down) ends the wait with a clean 503; the client asks
                # again, as a worker would.
                while True:
                    response = await http.post("/api/v0/claim/wait", json=claim_body("patient"))
                    if response.status_code != 503:
                        patient.append((response.status_code, response.json().get("task", {}).get("id", "")))
                        return
                    ended_503.append(time.monotonic())
                    await trio.sleep(0.2)

            async def wait_hastily() -> None:
                started = time.monotonic()
                response = await http.post(
                    "/api/v0/claim/wait", json=claim_body("hasty"), headers={"X-Server-Timeout": "1.5"}
                )
                hasty.append((response.status_code, time.monotonic() - started))

            async with trio.open_nursery() as nursery:
                for _ in range(PATIENT):
                    nursery.start_soon(wait_patiently)
                await _until_waiting(http, PATIENT)
                for _ in range(HASTY):
                    nursery.start_soon(wait_hastily)
                await _until_waiting(http, PATIENT + HASTY)

                stopped = time.monotonic()
                if how == "kill":
                    store.kill()
                else:
                    assert store.server is not None and store.server._process is not None
                    store.server._process.send_signal(signal.SIGTERM)
                    await trio.to_thread.run_sync(store.server._process.wait)
                    store.server._process = None

                # Every call fails fast with 503 while the store is away.
                slowest = 0.0
                calls = [
                    ("GET", "/readyz", None),
                    ("GET", "/api/v0/time", None),
                    ("POST", "/api/v0/modify", {"inserts": [{"queue": "x"}]}),
                    ("POST", "/api/v0/claim", claim_body("x")),
                    ("POST", "/api/v0/claim/wait", claim_body("x")),
                    ("GET", "/api/v0/queues", None),
                    ("POST", "/api.EntroQ/Tasks", {"queue": "x"}),
                ]
                for method, path, body in calls:
                    started = time.monotonic()
                    response = await http.request(method, path, json=body)
                    slowest = max(slowest, time.monotonic() - started)
                    assert response.status_code == 503, (path, response.status_code, response.text)
                assert (await http.get("/healthz")).status_code == 200
                with trio.fail_after(5):
                    while len(hasty) < HASTY:  # noqa: ASYNC110 (their tasks append)
                        await trio.sleep(0.05)
                assert not patient, "no claim got a task while the store was away"

                await trio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
                await trio.to_thread.run_sync(store.start)
                back = time.monotonic()
                with trio.fail_after(5):
                    while (await http.get("/readyz")).status_code != 200:  # noqa: ASYNC110 (polling is the test)
                        await trio.sleep(0.05)
                ready_after = time.monotonic() - back

                # The patient claims get the tasks inserted now, through the wake-up path.
                inserted = await http.post(
                    "/api/v0/modify", json={"inserts": [{"queue": "patient"} for _ in range(PATIENT)]}
                )
                assert inserted.status_code == 200
                # Without a subscription they would sleep until it is back (coredis's own
                # backoff reached 16 s) or their 30 s safety recheck.
                with trio.fail_after(35):
                    while len(patient) < PATIENT:  # noqa: ASYNC110 (their tasks append)
                        await trio.sleep(0.01)
                served_after = time.monotonic() - back

            # A new blocking claim is woken by an insert at once.
            woken: list[float] = []

            async def wait_for_wake() -> None:
                await http.post("/api/v0/claim/wait", json=claim_body("fresh"))
                woken.append(time.monotonic())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_wake)
                await _until_waiting(http, 1)
                sent = time.monotonic()
                await http.post("/api/v0/modify", json={"inserts": [{"queue": "fresh"}]})
            wake_s = woken[0] - sent
            assert await _waiting(http) == 0
    finally:
        service.stop()
        store.stop()
    print(
        f"\n[battery outage/{how}] slowest call while the store was away {slowest * 1000:.0f} ms; "
        f"deadline waits ended {[(s, round(t, 2)) for s, t in hasty]}; ready {ready_after:.2f} s after "
        f"the store; {PATIENT} patient waits ({len(ended_503)} ended 503 and asked again) served "
        f"{served_after:.2f} s after it; "
        f"next wake {wake_s * 1000:.0f} ms"
    )
    assert slowest < 1.0
    assert all(status in (503, 504) and elapsed < 3.0 for status, elapsed in hasty), hasty
    assert ready_after < 1.0
    assert sorted(s for s, _ in patient) == [200] * PATIENT and len({i for _, i in patient}) == PATIENT
    assert served_after < 1.5  # the subscription is back within its 1 s backoff cap
    assert wake_s < 0.5
    assert "Traceback" not in service.log()


async def _waiting(http: httpx.AsyncClient) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("entroq_waiting_claims"):
            return float(line.split()[-1])
    raise AssertionError("no entroq_waiting_claims metric")


async def _until_waiting(http: httpx.AsyncClient, count: int) -> None:
    with trio.fail_after(10):
        while await _waiting(http) != count:  # noqa: ASYNC110 (another process's gauge)
            await trio.sleep(0.02)


async def test_a_hung_store_fails_the_first_blocking_claim_as_unavailable(tmp_path: pathlib.Path) -> None:
    """A store that stops answering (SIGSTOP: a stuck host, a swap storm) while a client's
    first blocking claim subscribes to wake-ups: the claim fails as StoreUnavailableError
    (503 over HTTP), like any other call the store cannot serve, and works once it answers.

    coredis gives up on the subscription's acknowledgement after 1 s with a TimeoutError in an
    exception group; it escaped as is, so the library's caller got neither a StoreError nor a
    ClaimTimeoutError, and the service answered 500.
    """
    store = CrashableStore(tmp_path / "data", "everysec")
    store.start()
    service = start_service(store.url, log_dir=str(tmp_path))
    try:
        async with (
            entroq_redis.connect(store.url) as eq,
            httpx.AsyncClient(base_url=service.url, timeout=30) as http,
        ):
            await eq.time()
            assert (await http.get("/api/v0/time")).status_code == 200  # the service's client is open
            os.kill(store.pid, signal.SIGSTOP)
            try:
                with trio.fail_after(20):
                    with pytest.raises(entroq_redis.StoreUnavailableError):
                        await eq.claim("q", timeout_s=10)
                    response = await http.post("/api/v0/claim/wait", json=claim_body("q"))
            finally:
                os.kill(store.pid, signal.SIGCONT)
            assert response.status_code == 503, response.text
            await eq.modify(inserts=[TaskData("q"), TaskData("q")])
            with trio.fail_after(10):
                assert (await eq.claim("q", timeout_s=5)).queue == "q"
                assert (await http.post("/api/v0/claim/wait", json=claim_body("q"))).status_code == 200
    finally:
        service.stop()
        store.stop()
    assert "Traceback" not in service.log()
