"""The metrics listener's application (``--metrics-port``): ``GET /metrics`` and nothing else.

A bare ASGI callable rather than a second Quart app: one route, no request body, and nothing
of the API (routes, authorization, error rendering) must be reachable through this port.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..core import errors as _errors
from ..core.calls import Calls

EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Receive = Callable[[], Awaitable[dict[str, Any]]]
SendMessage = Callable[[dict[str, Any]], Awaitable[None]]


def create_metrics_app(calls: Calls) -> Callable[[dict[str, Any], Receive, SendMessage], Awaitable[None]]:
    """The ASGI application serving ``calls.metrics`` at ``/metrics``."""

    async def app(scope: dict[str, Any], receive: Receive, send: SendMessage) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            message = f"no route for {scope['path']}: this port serves GET /metrics only"
            await _error(send, _errors.ApiError(404, _errors.NOT_FOUND, message, "not_found"))
        elif scope["method"] != "GET":
            await _error(send, _errors.method_not_allowed(scope["method"], ["GET"]))
        else:
            # A failed refresh keeps the previous snapshot: scrapes never fail because of the store.
            await calls.refresh_queue_sizes()
            await _answer(send, 200, EXPOSITION_TYPE, calls.metrics.exposition())

    return app


async def _lifespan(receive: Receive, send: SendMessage) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _error(send: SendMessage, error: _errors.ApiError) -> None:
    body = json.dumps(_errors.rest_body(error), separators=(",", ":"), ensure_ascii=False).encode()
    await _answer(send, error.status, "application/json", body, error.headers)


async def _answer(
    send: SendMessage, status: int, content_type: str, body: bytes, extra: dict[str, str] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
