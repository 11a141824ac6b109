"""A process holding many blocking claims open on the HTTP service (docs/design.md 7.2).

Usage: python waiters.py HOST PORT NAMESPACE QUEUE COUNT

Opens COUNT connections, each sending one ``POST /api/v0/claim/wait`` (no deadline).
Prints ``{"opened": COUNT}`` once every request is sent, then collects the answers. On
``close`` (a stdin line) or when every claim is answered, prints ``{"answers": [[status,
task_id], ...]}`` for the answered ones and exits, closing every connection (the unanswered
waits are abandoned).

Raw sockets, not an HTTP client library: tens of thousands of idle connections must cost
the client side as little as possible, so several of these processes can share a 2-core
box with the service under test. Each process stays well inside ``ulimit -n``.
"""

from __future__ import annotations

import json
import sys

import trio

CONNECTING = 100


def request(host: str, namespace: str, queue: str, n: int) -> bytes:
    body = json.dumps({"claimantId": f"waiter-{n}", "queues": [queue], "durationMs": "600000"}).encode()
    head = (
        f"POST /api/v0/claim/wait HTTP/1.1\r\nHost: {host}\r\nEntroQ-Namespace: {namespace}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_answer(stream: trio.SocketStream) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return 0, ""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
    try:
        task_id = str(json.loads(body).get("task", {}).get("id", ""))
    except ValueError:
        task_id = ""
    return status, task_id


async def main(host: str, port: int, namespace: str, queue: str, count: int) -> None:
    answers: list[list[object]] = []
    streams: list[trio.SocketStream] = []
    all_answered = trio.Event()

    async def hold(stream: trio.SocketStream) -> None:
        status, task_id = await read_answer(stream)
        answers.append([status, task_id])
        if len(answers) == count:
            all_answered.set()

    async def open_one(n: int, nursery: trio.Nursery, limit: trio.CapacityLimiter) -> None:
        async with limit:
            stream = await trio.open_tcp_stream(host, port)
            streams.append(stream)
            await stream.send_all(request(host, namespace, queue, n))
        nursery.start_soon(hold, stream)

    async with trio.open_nursery() as nursery:
        # Connections are opened CONNECTING at a time: when the service's accept backlog is
        # full the kernel drops the SYN and the client retries 1 s later, so one connection
        # at a time would mostly wait; many at once keep the service accepting.
        limit = trio.CapacityLimiter(CONNECTING)
        async with trio.open_nursery() as openers:
            for n in range(count):
                openers.start_soon(open_one, n, nursery, limit)
        print(json.dumps({"opened": len(streams)}), flush=True)

        async def until_close() -> None:
            # A thread that may be abandoned: all claims answered ends the wait for "close" too.
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                if line.strip() in ("close", ""):
                    break
            nursery.cancel_scope.cancel()

        nursery.start_soon(until_close)
        await all_answered.wait()
        nursery.cancel_scope.cancel()
    for stream in streams:
        await stream.aclose()
    print(json.dumps({"answers": answers}), flush=True)


if __name__ == "__main__":
    host, port, namespace, queue, count = sys.argv[1:6]
    trio.run(main, host, int(port), namespace, queue, int(count))
