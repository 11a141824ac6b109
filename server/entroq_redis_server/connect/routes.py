"""Connect's routes: ``POST /api.EntroQ/<Method>`` with JSON (unary, with or without
``Connect-Protocol-Version: 1``), and StreamTasks as server streaming in Connect envelopes
(``framing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..core import errors as _errors
from ..core import wire as _wire
from ..core.errors import ApiError
from ..core.generations import Route
from ..core.schema import DOC_METHODS
from ..core.values import BASE64, ValueEncoding
from ..http_front import CONNECT_PREFIX, JSON, HttpFront, body_bytes, method_request, ok
from . import framing


def register(app: QuartTrio, front: HttpFront, methods: Iterable[str]) -> None:
    """Adds a unary route per method in ``methods`` (the document store's included) and the
    StreamTasks route."""

    def connect_unary(method: str) -> None:
        path = CONNECT_PREFIX + method

        @front.observe(path, connect=True)
        async def handler() -> Response:
            check_headers(JSON)
            route: Route = "docs" if method in DOC_METHODS else "other"
            message, who = await front.body(method_request(method), route)
            return ok(await front.run(method, message, who), who)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["POST"])

    for method in sorted(set(methods) - {"StreamTasks"}):
        connect_unary(method)

    stream_path = CONNECT_PREFIX + "StreamTasks"

    @front.observe(stream_path, connect=True)
    async def connect_stream() -> Response:
        check_headers(framing.STREAM_JSON)
        try:
            payload = framing.single_message(await body_bytes())
            data = _wire.load_json(payload)
            who = front.caller(body=data)
            tasks = (await front.run("StreamTasks", _wire.parse_dict(data, "TasksRequest"), who)).tasks
        except Exception as exc:
            # Connect streams report errors in the final envelope of a 200 response.
            error = front.map_exception(exc)
            return Response(_stream([], error, BASE64), content_type=framing.STREAM_JSON)
        return Response(_stream(tasks, None, who.values), content_type=framing.STREAM_JSON)

    app.add_url_rule(stream_path, endpoint=stream_path, view_func=connect_stream, methods=["POST"])


def check_headers(expected: str) -> None:
    version = request.headers.get("Connect-Protocol-Version")
    if version is not None and version != "1":
        raise _errors.bad_request(f"unsupported Connect-Protocol-Version {version!r} (this server speaks 1)")
    media = framing.media_type(request.headers.get("Content-Type"))
    if media != expected:
        raise _errors.unsupported_media_type(media)


async def _stream(tasks: Any, error: ApiError | None, values: ValueEncoding) -> AsyncIterator[bytes]:
    for task in tasks:
        yield framing.envelope(_wire.to_json(_wire.one_task_response(task), values))
    yield framing.end_stream(error)
