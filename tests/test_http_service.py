"""The service when its store is unreachable: it starts, says so, and answers 503 (never hangs)."""

from __future__ import annotations

import socket

import httpx
from conftest import start_service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_store_gives_503_and_health_stays_up() -> None:
    service = start_service(f"redis://127.0.0.1:{free_port()}/0", wait_ready=False)
    try:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            for response in (
                http.get("/readyz"),
                http.get("/api/v0/time"),
                http.post("/api.EntroQ/Time", json={}),
            ):
                assert response.status_code == 503
                assert response.json()["code"] in (14, "unavailable")
                assert "cannot reach the store" in response.json()["message"]
            assert http.get("/metrics").status_code == 200  # scrapes never fail because of the store
    finally:
        assert service.stop() == 0
    assert "not reachable yet" in service.log() and "Traceback" not in service.log()
