"""``entroq-redis serve`` as a real subprocess on free ports, waited for until it is ready.

The service prints one line per listener once it accepts connections (``entroq-redis
listening on URL``, ``... gRPC listening on URL``, ``... metrics on URL``): those lines give
the ports it chose (``--port 0``, ``--grpc-port free``). Then /readyz must answer 200 (the
service reaches its store) before the caller gets the service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

import httpx

from .._extras import require

# serve refuses its test-only switches (--test-any-namespace) without this in its environment.
_TESTING_ENV = "ENTROQ_REDIS_TESTING"


class ServiceStartError(RuntimeError):
    """The service exited, or did not listen or get ready in time; the message ends with its log."""

    def __init__(self, message: str, *, returncode: int | None, log: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        """The exit code if it exited by itself; None if it was killed for taking too long."""
        self.log = log
        """Its whole log (stderr)."""


@dataclasses.dataclass
class Service:
    """A running ``entroq-redis serve`` process and the URLs it printed."""

    url: str
    """The HTTP (or https) API: ``http://127.0.0.1:PORT``."""
    process: subprocess.Popen[str]
    log_path: str
    """The service's stderr (its log)."""
    grpc_url: str | None = None
    """``grpc://HOST:PORT`` of the gRPC listener; None when it is off (``--grpc-port 0``)."""
    metrics_url: str | None = None
    """The metrics listener's URL, with ``--metrics-port``; None otherwise."""

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signals the process and waits for it to exit; returns its exit code (SIGKILL after
        ``timeout`` seconds, and the wait's TimeoutExpired is raised)."""
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


def serve_command(*args: str) -> list[str]:
    """The command line ``start_service`` runs: this interpreter's ``entroq-redis serve`` on
    free ports (``--port 0`` and ``--grpc-port free`` unless ``args`` name other ports)."""
    grpc = [] if option_value(args, "--grpc-port") is not None else ["--grpc-port", "free"]
    port = [] if option_value(args, "--port") is not None else ["--port", "0"]
    return [sys.executable, "-m", "entroq_redis.cli", "serve", *port, *grpc, *args]


def start_service(
    store_url: str | None = None,
    *args: str,
    any_namespace: bool = False,
    wait_ready: bool = True,
    timeout: float = 30,
    log_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Service:
    """Starts ``entroq-redis serve ARGS`` and returns it once it listens and /readyz says 200.

    Args:
        store_url: The store; None: the service starts its embedded store (give ``--data
            DIR`` in ``args`` to keep it), unless ``args`` name one (``--redis``,
            ``--redis-file``). The URL goes to the process in $ENTROQ_REDIS_URL, not on
            its command line (it may hold a password).
        args: More ``serve`` options. ``--port`` and ``--grpc-port`` default to free ports.
        any_namespace: Serve every namespace a request names (``--test-any-namespace``), so
            each test can work in a namespace of its own through one service.
        wait_ready: Wait for /readyz to answer 200 (False: only for the listen lines, for a
            service started without a reachable store on purpose). Not done with
            ``--tls-client-ca`` (the probe has no client certificate).
        timeout: Seconds to wait in all.
        log_dir: Where the log file goes (default: the temporary directory).
        env: The process's environment (default: this one's).

    Raises:
        ServiceStartError: it exited or did not get ready in time (the message has its log).
        MissingExtraError: the service's packages are not installed (the message names
            ``pip install 'entroq-redis[server]'``).
    """
    require("server", "entroq_redis.testing's running service")
    environment = dict(os.environ if env is None else env)
    if any_namespace:
        args = ("--test-any-namespace", *args)
        environment[_TESTING_ENV] = "1"
    # The store URL holds a password: every local user can read command lines.
    if store_url:
        environment["ENTROQ_REDIS_URL"] = store_url
    else:
        environment.pop("ENTROQ_REDIS_URL", None)
    command = serve_command(*args)
    log_fd, log_path = tempfile.mkstemp(prefix="entroq-serve-", suffix=".log", dir=log_dir)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_fd, text=True, env=environment)
    finally:
        os.close(log_fd)
    service = Service("", process, log_path)
    try:
        _wait_for_listeners(service, args, time.monotonic() + timeout)
        # A service that asks clients for a certificate (--tls-client-ca) cannot be probed
        # without one: then the listen lines are all there is to wait for.
        if wait_ready and option_value(args, "--tls-client-ca") is None:
            _wait_until_ready(service, time.monotonic() + timeout)
    except BaseException:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.stop(signal.SIGKILL, timeout=10)
        raise
    return service


@contextlib.contextmanager
def running_service(
    store_url: str | None = None,
    *args: str,
    any_namespace: bool = False,
    wait_ready: bool = True,
    timeout: float = 30,
    log_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Service]:
    """``start_service`` as a context manager: the service is stopped (SIGTERM) on exit::

    with running_service(store_url, "--namespace", "jobs") as service:
        ...  # entroq_redis.connect(service.url, namespace="jobs")
    """
    service = start_service(
        store_url,
        *args,
        any_namespace=any_namespace,
        wait_ready=wait_ready,
        timeout=timeout,
        log_dir=log_dir,
        env=env,
    )
    try:
        yield service
    finally:
        service.stop()


def option_value(args: Sequence[str], option: str) -> str | None:
    """The value of ``option`` (``--opt V`` or ``--opt=V``) in ``args``; None if not given."""
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


_LINES = (
    ("url", re.compile(r"entroq-redis listening on (https?://\S+)")),
    ("grpc_url", re.compile(r"gRPC listening on (grpcs?://\S+)")),
    ("metrics_url", re.compile(r"metrics on (https?://\S+)")),
)


def _wait_for_listeners(service: Service, args: Sequence[str], deadline: float) -> None:
    """Reads the service's stdout until every listener it was asked for has printed its URL."""
    wanted = {"url"}
    if option_value(args, "--grpc-port") != "0":
        wanted.add("grpc_url")
    if option_value(args, "--metrics-port") is not None:
        wanted.add("metrics_url")
    # A thread reads the lines: several may come in one read, and select() on the pipe does
    # not see a line already in the file object's buffer.
    lines: queue.Queue[str] = queue.Queue()
    assert service.process.stdout is not None
    threading.Thread(target=_read_lines, args=(service.process.stdout, lines), daemon=True).start()
    found: dict[str, str] = {}
    while not wanted <= found.keys():
        try:
            line = lines.get(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
        except queue.Empty:
            if service.process.poll() is not None and lines.empty():
                raise _failure(service, "exited") from None
            if time.monotonic() >= deadline:
                raise _failure(service, "did not listen in time") from None
            continue
        for name, pattern in _LINES:
            if (match := pattern.search(line)) and name not in found:
                found[name] = match.group(1)
    service.url = found["url"]
    service.grpc_url = found.get("grpc_url")
    service.metrics_url = found.get("metrics_url")


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass  # the pipe was closed (Service.stop)


def _wait_until_ready(service: Service, deadline: float) -> None:
    """Polls /readyz until it answers 200 (the service reaches its store)."""
    # Only a loopback probe: a test's TLS certificates need not be trusted here.
    with httpx.Client(base_url=service.url, timeout=5, verify=False) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if service.process.poll() is not None:
                raise _failure(service, "exited")
            if time.monotonic() >= deadline:
                raise _failure(service, "was not ready (/readyz) in time")
            time.sleep(0.05)


def _failure(service: Service, what: str) -> ServiceStartError:
    log = service.log()
    returncode = service.process.poll()
    return ServiceStartError(f"entroq-redis serve {what}: {log[-3000:]}", returncode=returncode, log=log)
