"""Starting ``entroq-redis serve`` with listener flags (TLS, a metrics port) and talking to it
over raw sockets."""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from conftest import ServiceProcess


@dataclasses.dataclass
class Listening:
    """A started service and the URLs it printed."""

    service: ServiceProcess
    url: str
    metrics_url: str | None
    grpc_url: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        return address_of(self.url)


def address_of(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host.strip("[]"), int(port)


def start_listening(store_url: str, *args: str, timeout: float = 30, grpc: bool = False) -> Listening:
    """Starts ``serve --redis STORE --port 0 ARGS`` and waits for its URL lines (https too, the
    metrics listener's when ``--metrics-port`` is among ARGS, the gRPC listener's with ``grpc``)."""
    log_fd, log_path = tempfile.mkstemp(prefix="entroq-serve-", suffix=".log")
    command = [sys.executable, "-m", "entroq_redis.cli", "serve", "--redis", store_url, "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_fd, text=True)
    os.close(log_fd)
    assert process.stdout is not None
    service = ServiceProcess("", process, log_path)
    url: str | None = None
    metrics_url: str | None = None
    grpc_url: str | None = None
    wants_metrics = "--metrics-port" in args
    # A thread reads the lines: the two URL lines may come in one read, and select() on the
    # pipe does not see a line already in the file object's buffer.
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout

    def waiting() -> bool:
        return url is None or (wants_metrics and metrics_url is None) or (grpc and grpc_url is None)

    while waiting() and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None and lines.empty():
                break
            continue
        if found := re.search(r"listening on (https?://\S+)", line):
            url = found.group(1)
        if found := re.search(r"metrics on (https?://\S+)", line):
            metrics_url = found.group(1)
        if found := re.search(r"gRPC listening on (grpcs?://\S+)", line):
            grpc_url = found.group(1)
    if waiting():
        service.stop()
        raise RuntimeError(f"entroq-redis serve did not start: {service.log()[-3000:]}")
    service.url = url
    return Listening(service, url, metrics_url, grpc_url)


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass  # the test closed the pipe (ServiceProcess.stop)


def connect(address: tuple[str, int], source: str | None = None, timeout: float = 20) -> socket.socket:
    """A TCP connection to the service, from ``source`` (another loopback address) if given."""
    sock = socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length (what the service sends to GETs)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes (True) or the socket's timeout passes (False)."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: entroq\r\n\r\n"
