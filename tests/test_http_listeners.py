"""The service's listeners: binding before the store starts, /metrics on its own port, the
queue-size gauge's cap, and connection hygiene (idle, header and body timeouts, a per-address
cap, h2c), tested over real sockets against ``entroq-redis serve`` processes."""

from __future__ import annotations

import pathlib
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from conftest import start_service
from entroq_redis_server import ListenerSettings
from listener_support import (
    GET_HEALTHZ,
    Listening,
    address_of,
    closed_by_server,
    connect,
    read_response,
    start_listening,
)
from prometheus_client.parser import text_string_to_metric_families

from entroq_redis.cli import build_parser


def serve_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entroq_redis.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def processes_using(path: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if path in cmdline:
            found.append(cmdline)
    return found


def test_serve_raises_its_open_file_limit_to_the_hard_limit(store_url: str) -> None:
    """Started at a soft limit of 1,024 (many systems' default), the service may still hold as
    many connections as the hard limit allows (each waiting claim holds one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"needs a finite hard limit on open files above 1024 (it is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        started = start_listening(store_url)  # inherits the lowered soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = psutil.Process(started.service.process.pid).rlimit(psutil.RLIMIT_NOFILE)
        assert limits == (hard, hard)
    finally:
        assert started.service.stop() == 0


@pytest.mark.parametrize("which", ["api", "metrics"])
def test_a_port_in_use_is_one_line_and_starts_no_store(
    which: str, taken_port: int, tmp_path: pathlib.Path
) -> None:
    data = f"{tmp_path}/data"
    ports = (
        ["--port", str(taken_port)] if which == "api" else ["--port", "0", "--metrics-port", str(taken_port)]
    )
    done = serve_command("--host", "127.0.0.1", *ports, "--data", data)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"entroq-redis serve: cannot listen on 127.0.0.1:{taken_port}: address already in use\n"
    )
    assert done.stdout == ""  # the embedded store never announced itself
    assert list(tmp_path.iterdir()) == [], "no data directory made"
    assert processes_using(data) == [], "no store process left behind"


def test_an_address_that_is_not_local_is_one_line(tmp_path: pathlib.Path) -> None:
    done = serve_command("--host", "192.0.2.1", "--port", "0", "--data", f"{tmp_path}/data")
    assert done.returncode == 1
    assert (
        done.stderr == "entroq-redis serve: cannot listen on 192.0.2.1:0: cannot assign requested address\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together (both or neither)"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--header-timeout", "0"], "--header-timeout must be a positive number of seconds"),
        (["--max-connections-per-address", "-1"], "--max-connections-per-address must be 0 (no cap) or more"),
        (["--metrics-max-queues", "-1"], "--metrics-max-queues must be 0 (all) or more"),
    ],
)
def test_listener_usage_errors_exit_2(args: list[str], message: str, tmp_path: pathlib.Path) -> None:
    done = serve_command("--port", "0", "--data", f"{tmp_path}/data", *args)
    assert (done.returncode, done.stderr) == (2, f"entroq-redis serve: {message}\n")


def test_cli_defaults_are_the_service_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    defaults = ListenerSettings()
    assert args.idle_timeout == defaults.idle_timeout_s == 75.0
    assert args.header_timeout == defaults.header_timeout_s
    assert args.body_timeout == defaults.body_timeout_s
    assert args.max_connections_per_address == defaults.max_connections_per_address
    assert args.h2c is defaults.h2c is False
    assert (args.metrics_port, args.metrics_host, args.tls_cert, args.tls_key, args.tls_client_ca) == (
        None,
    ) * 5


def test_help_shows_every_listener_flag_with_its_default() -> None:
    done = serve_command("--help")
    text = " ".join(done.stdout.split())
    for shown in (
        "--metrics-port PORT",
        "NOT on the API port",
        "--metrics-host HOST",
        "--tls-cert FILE",
        "--tls-key FILE",
        "--tls-client-ca FILE",
        "TLS (every listener: HTTP, metrics and gRPC)",
        "--idle-timeout SECONDS",
        "(default 75.0)",
        "--header-timeout SECONDS",
        "(default 10.0)",
        "--body-timeout SECONDS",
        "(default 60.0)",
        "--max-connections-per-address N",
        "(default 4096; 0 = no cap)",
        "--h2c, --no-h2c",
    ):
        assert shown in text, shown


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def metrics_service(store_url: str, namespace: str) -> Iterator[Listening]:
    started = start_listening(store_url, "--namespace", namespace, "--metrics-port", "0")
    yield started
    assert started.service.stop() == 0


def test_metrics_on_their_own_listener_and_not_on_the_api_port(metrics_service: Listening) -> None:
    assert metrics_service.metrics_url is not None
    assert address_of(metrics_service.metrics_url) != metrics_service.address
    with httpx.Client(base_url=metrics_service.url) as api:
        assert api.get("/healthz").status_code == 200
        moved = api.get("/metrics")
        assert moved.status_code == 404 and moved.json()["message"] == "no route for /metrics"
    with httpx.Client() as client:
        scraped = client.get(metrics_service.metrics_url)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
        # The API request above is counted by the process the metrics port belongs to.
        assert (
            metric_samples(scraped.text)[
                ("entroq_http_requests_total", (("outcome", "ok"), ("route", "/healthz")))
            ]
            == 1
        )
        base = metrics_service.metrics_url.removesuffix("/metrics")
        elsewhere = client.get(base + "/healthz")
        assert elsewhere.status_code == 404 and "serves GET /metrics only" in elsewhere.json()["message"]
        posted = client.post(metrics_service.metrics_url)
        assert posted.status_code == 405 and posted.headers["allow"] == "GET"


def test_the_capped_queue_gauge_keeps_the_largest_queues(store_url: str, namespace: str) -> None:
    """50 one-task queues sorting first by name must not hide a big queue (cap 5)."""
    service = start_service(
        store_url, "--namespace", namespace, "--metrics-interval", "0", "--metrics-max-queues", "5"
    )
    try:
        with httpx.Client(base_url=service.url, headers={"User-Agent": "entroq-redis-tests"}) as api:
            inserts = [{"queue": f"/a/{i:02d}"} for i in range(50)] + [{"queue": "/z/big"}] * 7
            assert api.post("/api/v0/modify", json={"inserts": inserts}).status_code == 200
            samples = metric_samples(api.get("/metrics").text)
    finally:
        assert service.stop() == 0
    exported = {
        dict(labels)["queue"]: value
        for (name, labels), value in samples.items()
        if name == "entroq_queue_size" and ("type", "total") in labels
    }
    # The big queue, then the four smallest names among the ties.
    assert exported == {"/z/big": 7, "/a/00": 1, "/a/01": 1, "/a/02": 1, "/a/03": 1}
    assert samples[("entroq_queue_size_omitted_queues", ())] == 46


@pytest.fixture
def strict_service(store_url: str) -> Iterator[Listening]:
    """Short header timeout, long idle timeout (so a close proves the header rule)."""
    started = start_listening(
        store_url, "--header-timeout", "0.5", "--idle-timeout", "120", "--body-timeout", "0.5"
    )
    yield started
    assert started.service.stop() == 0


def test_a_half_sent_header_is_cut_at_the_header_timeout(strict_service: Listening) -> None:
    with connect(strict_service.address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: ent")
        assert closed_by_server(sock)


def test_a_trickled_header_is_cut_although_bytes_keep_coming(strict_service: Listening) -> None:
    with connect(strict_service.address) as sock:
        sock.sendall(GET_HEALTHZ)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        closed = False
        # One byte every 0.1 s: never silent for long, never a whole header (it never ends).
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"x" * 600:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        assert closed, "the server kept a header that took 60 s"


def test_a_stalled_body_gets_408_and_the_connection_closes(strict_service: Listening) -> None:
    with connect(strict_service.address) as sock:
        sock.sendall(b"POST /api/v0/modify HTTP/1.1\r\nHost: e\r\nContent-Length: 100\r\n\r\n{")
        response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 408"), response[:200]
        assert closed_by_server(sock)


def test_a_waiting_claim_is_not_cut_by_the_connection_timeouts(store_url: str, namespace: str) -> None:
    started = start_listening(
        store_url, "--namespace", namespace, "--header-timeout", "0.3", "--idle-timeout", "0.3"
    )
    try:
        with httpx.Client(base_url=started.url, timeout=30) as http:
            waited = http.post(
                "/api/v0/claim/wait",
                json={"claimantId": "w", "queues": ["nothing"]},
                headers={"X-Server-Timeout": "2"},
            )
            assert waited.status_code == 504  # the claim's own deadline, ten times the timeouts
    finally:
        assert started.service.stop() == 0


def test_an_idle_keep_alive_connection_is_closed_at_the_idle_timeout(store_url: str) -> None:
    """Before: Hypercorn's idle timer never ran after a request under Quart on trio, and the
    connection stayed open for good."""
    started = start_listening(store_url, "--idle-timeout", "0.5", "--header-timeout", "120")
    try:
        with connect(started.address) as sock:
            sock.sendall(GET_HEALTHZ)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            assert closed_by_server(sock)
    finally:
        assert started.service.stop() == 0


def test_shutdown_closes_idle_keep_alive_connections_at_once(store_url: str) -> None:
    """An idle connection does not hold a shutdown for its idle time or the graceful timeout:
    the server closes it as soon as it is told to stop (the connection clock, which replaced
    Hypercorn's idle timer, must keep doing this)."""
    started = start_listening(
        store_url, "--idle-timeout", "600", "--header-timeout", "600", "--graceful-timeout", "600"
    )
    with connect(started.address, timeout=60) as sock:
        sock.sendall(GET_HEALTHZ)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        started.service.process.send_signal(signal.SIGTERM)
        # Within the socket's 60 s timeout, far below the 600 s the connection could idle.
        assert closed_by_server(sock)
    # Told once: a second signal while it stops the store would be a second request to stop.
    assert started.service.process.wait(60) == 0
    started.service.stop()


def test_connections_over_the_per_address_cap_are_refused(store_url: str) -> None:
    started = start_listening(store_url, "--max-connections-per-address", "3")
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            sock = connect(started.address)
            sock.sendall(GET_HEALTHZ)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with connect(started.address) as over:
            over.sendall(GET_HEALTHZ)
            assert read_response(over) == b"", "the fourth connection from 127.0.0.1 is closed at once"
        with connect(started.address, source="127.0.0.2") as other:
            other.sendall(GET_HEALTHZ)
            assert read_response(other).startswith(b"HTTP/1.1 200"), "another address is served"
        held.pop().close()
        # The server counts the closed connection out once it sees the close.
        deadline = time.monotonic() + 20
        while True:
            with connect(started.address) as again:
                again.sendall(GET_HEALTHZ)
                if read_response(again).startswith(b"HTTP/1.1 200"):
                    break
            assert time.monotonic() < deadline, "a freed slot was never given back"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        assert started.service.stop() == 0
    assert "refused a connection from 127.0.0.1: it holds 3 already" in started.service.log()


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2C_UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: e\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
)
SETTINGS_FRAME_TYPE = 0x4


def test_h2c_is_refused_by_default(store_url: str) -> None:
    started = start_listening(store_url)
    try:
        with connect(started.address) as sock:
            sock.sendall(H2_PREFACE)
            assert read_response(sock).startswith(b"HTTP/1.1 505")
            assert closed_by_server(sock)
        with connect(started.address) as sock:
            sock.sendall(H2C_UPGRADE)
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}'), "served in 1.1"
    finally:
        assert started.service.stop() == 0


def test_h2c_when_asked(store_url: str) -> None:
    started = start_listening(store_url, "--h2c")
    try:
        with connect(started.address) as sock:
            sock.sendall(H2_PREFACE)
            frame = sock.recv(9)
            assert frame[3] == SETTINGS_FRAME_TYPE, "the server speaks HTTP/2"
        with connect(started.address) as sock:
            sock.sendall(H2C_UPGRADE)
            assert sock.recv(64).startswith(b"HTTP/1.1 101")
    finally:
        assert started.service.stop() == 0
