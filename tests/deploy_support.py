"""Shared by the deployment tests: a free loopback port and a service process run until /readyz."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# EntroQ's gRPC port: `entroq-redis serve` listens there by default (--grpc-port), and EntroQ's
# Go client, eqc and eqlink dial it. The image, the compose file and the chart publish it.
GRPC_PORT = 37706
GRPC_PORT_ENV = "ENTROQ_REDIS_GRPC_PORT"


def assert_grpc_default(serve_argv: list[str]) -> None:
    """``entroq-redis serve_argv...``, parsed as a container runs it (no ENTROQ_REDIS_GRPC_PORT:
    the test session sets it so that test services never fight over 37706), listens for gRPC
    on GRPC_PORT, the port the deploy files publish."""
    from entroq_redis.cli import build_parser

    saved = os.environ.pop(GRPC_PORT_ENV, None)
    try:
        args, _ = build_parser().parse_known_args(serve_argv)
    finally:
        if saved is not None:
            os.environ[GRPC_PORT_ENV] = saved
    assert args.grpc_port == GRPC_PORT, f"serve's default --grpc-port is {args.grpc_port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_service(command: list[str], cwd: pathlib.Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Runs ``command`` (a service listening on ``port``) until its /readyz answers 200; its
    output goes to ``cwd/service.log``, quoted when it exits early or never gets ready.
    Stopped with SIGTERM afterwards (children killed too if it does not stop in time)."""
    log_path = cwd / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"{' '.join(command)}\nexited with code {process.returncode} before /readyz "
                    f"answered:\n{log_path.read_text(errors='replace')[-4000:]}",
                    pytrace=False,
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"/readyz did not answer 200 within {START_TIMEOUT:.0f} s:\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.wait()
