"""Starting ``entroq-redis serve`` with listener flags (TLS, a metrics port) and talking to it
over raw sockets."""

from __future__ import annotations

import dataclasses
import re
import socket

from conftest import ServiceProcess, start_service


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
    metrics listener's when ``--metrics-port`` is among ARGS, the gRPC listener's with ``grpc``;
    without it gRPC is off unless ARGS name a ``--grpc-port``)."""
    named = any(arg.split("=", 1)[0] == "--grpc-port" for arg in args)
    grpc_off = () if grpc or named else ("--grpc-port", "0")
    service = start_service(store_url, *grpc_off, *args, timeout=timeout)
    return Listening(service, service.url, service.metrics_url, service.grpc_url)


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
