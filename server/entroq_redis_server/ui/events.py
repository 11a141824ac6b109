"""The queues page's live table: Server-Sent Events, one ``queues`` event (the table's HTML,
swapped in by htmx's SSE extension) whenever what this page would show changes.

Each open page waits on the shared feed (``feed``: one store read per interval for all pages)
and has that read filtered for its own credentials and name filter before it is drawn. A
comment line goes out on every interval in between, so proxies and the listener's idle
timeout see a live stream. At shutdown the stream ends at once (``core.draining``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Response, request

import entroq_redis

from ..core import errors as _errors
from ..core.errors import ApiError
from ..http_front import current_request_id
from . import queue_table
from .dashboard import Dashboard


def register(dash: Dashboard) -> None:
    @dash.route("/ui/events/queues")
    async def queue_events() -> Response:
        namespace = await dash.namespace()
        name_filter = request.args.get("filter", "")
        headers = dash.access.headers
        request_id = current_request_id()
        feed = dash.feed
        draining = dash.calls.draining

        async def stream() -> AsyncIterator[bytes]:
            snapshot = await feed.latest(namespace)
            last = ""
            while True:
                try:
                    visible = await feed.visible(snapshot, headers, request_id)
                except (ApiError, entroq_redis.EntroQError) as exc:
                    # Credentials revoked, the policy engine down: this page stops, others go on.
                    error = _errors.from_exception(exc)
                    yield event("notice", f"live updates stopped: {error.message}")
                    return
                table = queue_table.build(visible, name_filter)
                html = dash.templates.get_template("_queue_table.html").render(table=table, snapshot=snapshot)
                if html != last:
                    yield event("queues", html)
                    last = html
                else:
                    yield b": unchanged\n\n"
                try:
                    with draining.waiting():
                        snapshot = await feed.wait_next(namespace, snapshot)
                except ApiError:
                    return  # the service is shutting down

        return Response(stream(), content_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


def event(name: str, data: str) -> bytes:
    """One SSE event; every line of ``data`` gets its own ``data:`` field."""
    lines = "".join(f"data: {line}\n" for line in data.replace("\r", "").split("\n"))
    return f"event: {name}\n{lines}\n".encode()
