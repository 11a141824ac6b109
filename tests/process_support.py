"""Reading a child process's output line by line under trio (tests/test_worker_processes.py,
tests/test_worker_docs.py)."""

from __future__ import annotations

import trio


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some()
        if not chunk:
            break
        line += chunk
    return line
