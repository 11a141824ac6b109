"""The Quart (trio) application: routes, request decoding, response rendering, request metrics.

Glue only: requests are decoded by ``_wire``/``_connect``, run by ``_calls``, and every
failure is rendered from ``_errors``. Routing notes:

- queue names in paths may hold ``/``, spaces and any unicode: ``{queue}`` matches greedily
  (``/api/v0/queues//a/b/tasks`` is queue ``/a/b``), and slashes are never merged or
  redirected;
- wrong methods get 405 with ``Allow``, unknown paths 404, both as JSON;
- every EntroQ client generation is served at once: each API request is identified by
  ``_generations`` (protocol, value encoding) before its body is decoded, every response says
  ``entroq-protocol: 1,2``, and the document-store routes of later EntroQ releases answer 501;
- Quart's defaults are set deliberately: no response timeout (long-poll claims wait as long
  as their caller or the cap allows; streams end when their data does), a body timeout of
  ``--body-timeout`` (60 s; bodies are small; a stalled upload must not hold a slot forever:
  408), and ``MAX_CONTENT_LENGTH`` = the service's body limit (413 beyond it);
- ``/metrics`` is served here unless it has a listener of its own (``--metrics-port``,
  ``_metrics_app``).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter

from . import _connect, _errors, _generations, _schema, _wire
from ._calls import Calls
from ._errors import ApiError
from ._generations import Caller, Generations
from ._namespaces import NAMESPACE_HEADER
from ._request_ids import REQUEST_ID_HEADER, request_id
from ._settings import ServiceSettings
from ._values import BASE64, ValueEncoding

log = logging.getLogger(__name__)

JSON = "application/json"
NDJSON = "application/x-ndjson"
CONNECT_PREFIX = "/api.EntroQ/"
# RPCs of later EntroQ releases' document store, answered 501 (Connect routes).
DOCUMENT_METHODS = ("Docs", "ClaimDocs", "NamespaceStats")

RouteHandler = Callable[..., Awaitable[Response]]


class _AnyPath(BaseConverter):
    """Matches any text, slashes, line breaks and the empty string included (greedy)."""

    # Not ".*": "." stops at a newline, and a queue name may hold one (%0A in the path).
    regex = r"[\s\S]*"
    part_isolating = False


def _json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, content_type=JSON, headers=headers)


def _error_response(error: ApiError, connect: bool) -> Response:
    body = _errors.connect_body(error) if connect else _errors.rest_body(error)
    return _json_response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), error.status, error.headers
    )


def _map_exception(exc: BaseException, max_body: int) -> ApiError:
    if isinstance(exc, HTTPException):
        if exc.code == 413:
            return _errors.too_large(max_body)
        if isinstance(exc, MethodNotAllowed):
            return _errors.method_not_allowed(request.method, exc.valid_methods or ())
        if exc.code == 404:
            return _errors.route_not_found(request.path)
        return ApiError(exc.code or 500, _errors.INVALID_ARGUMENT, exc.description or str(exc), "bad_request")
    error = _errors.from_exception(exc)
    if error.code == _errors.INTERNAL:
        log.exception("internal error serving %s %s", request.method, request.path, exc_info=exc)
    return error


def create_app(settings: ServiceSettings, calls: Calls) -> QuartTrio:
    """Builds the application for one service process."""
    app = QuartTrio(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        BODY_TIMEOUT=settings.listeners.body_timeout_s,
        RESPONSE_TIMEOUT=None,
    )
    app.url_map.converters["anypath"] = _AnyPath
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    metrics = calls.metrics
    openapi = importlib.resources.files(__package__).joinpath("openapi.json").read_bytes()
    generations = Generations(settings.value_encoding_default)

    def observe(route: str, connect: bool) -> Callable[[RouteHandler], RouteHandler]:
        """Renders errors and records request metrics for one route."""

        def decorate(handler: RouteHandler) -> RouteHandler:
            @functools.wraps(handler)
            async def wrapper(*args: Any, **kwargs: Any) -> Response:
                started = time.perf_counter()
                outcome = "error"
                try:
                    response = await handler(*args, **kwargs)
                    outcome = "ok"
                    return response
                except trio.Cancelled:
                    outcome = "cancelled"  # the client went away (or shutdown cut it)
                    raise
                except Exception as exc:
                    error = _map_exception(exc, settings.max_body_bytes)
                    outcome = error.outcome
                    return _error_response(error, connect)
                finally:
                    elapsed = time.perf_counter() - started
                    metrics.requests.labels(route, outcome).inc()
                    metrics.request_seconds.labels(route, outcome).observe(elapsed)

            return wrapper

        return decorate

    async def run(method: str, message: Any, who: Caller) -> Any:
        timeout_s = _connect.parse_timeout_s(request.headers)
        response = await calls.run(method, message, request.headers, timeout_s, _request_id())
        # Only a call that was authorized and served teaches the claimant memory.
        generations.learn(who)
        return response

    def caller(route: _generations.Route = "other", body: Any = None, claimant: str = "") -> Caller:
        headers = request.headers
        return generations.identify(
            protocol_values=headers.getlist(_generations.PROTOCOL_HEADER),
            encoding_values=headers.getlist(_generations.VALUE_ENCODING_HEADER),
            user_agent=headers.get("User-Agent", ""),
            route=route,
            body=body if isinstance(body, dict) else None,
            claimant=claimant,
            namespace=headers.get(NAMESPACE_HEADER, ""),
            credentials=headers.get("Authorization", ""),
        )

    async def body(message: str) -> tuple[Any, Caller]:
        raw = await _body_bytes()
        # A client of an unserved protocol hears that first, whatever its body looks like.
        _generations.protocol(request.headers.getlist(_generations.PROTOCOL_HEADER))
        # Oversized lists are refused before the caller identification walks them.
        data = _wire.check_counts(_wire.load_json(raw), message)
        who = caller(body=data)
        return _wire.parse_dict(data, message, who.values), who

    def query(message: str, route: _generations.Route = "other", **fixed: Any) -> tuple[Any, Caller]:
        claimant = request.args.get("claimantId") or request.args.get("claimant_id") or ""
        who = caller(route, claimant=claimant)
        return _wire.parse_query(request.args.items(multi=True), message, **fixed), who

    def ok(message: Any, who: Caller) -> Response:
        return _json_response(_wire.to_json(message, who.values))

    # REST: EntroQ's google.api.http routes (reference 4.2), plus /api/v0/tasks of later releases.
    def rest_post(path: str, method: str) -> None:
        @observe(path, connect=False)
        async def handler() -> Response:
            message, who = await body(_method_request(method))
            return ok(await run(method, message, who), who)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["POST"])

    def rest_get(path: str, method: str, route: _generations.Route = "other") -> None:
        @observe(_label(path), connect=False)
        async def handler(**fixed: str) -> Response:
            message, who = query(_method_request(method), route, **fixed)
            return ok(await run(method, message, who), who)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["GET"])

    def rest_stream(path: str, route: _generations.Route) -> None:
        @observe(_label(path), connect=False)
        async def handler(**fixed: str) -> Response:
            message, who = query("TasksRequest", route, **fixed)
            tasks = (await run("StreamTasks", message, who)).tasks
            return Response(_ndjson_tasks(tasks, who), content_type=NDJSON)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["GET"])

    rest_post("/api/v0/claim", "TryClaim")
    rest_post("/api/v0/claim/wait", "Claim")
    rest_post("/api/v0/modify", "Modify")
    # Full stats on the Queues route too: the 0.12+ clients read numClaimed, numAvailable and
    # numFuture from it (they have no stats call); the seed clients pass the dicts through.
    rest_get("/api/v0/queues", "QueueStats")
    rest_get("/api/v0/queues/stats", "QueueStats")
    rest_get("/api/v0/time", "Time")
    rest_get("/api/v0/queues/<anypath:queue>/tasks", "Tasks", "seed_tasks")
    rest_get("/api/v0/tasks", "Tasks", "tasks")
    rest_stream("/api/v0/queues/<anypath:queue>/tasks/stream", "seed_tasks")
    rest_stream("/api/v0/tasks/stream", "tasks")

    # The document store and namespaces of later EntroQ releases: a clear 501, not a 404 that
    # reads like a typo in the client's URL.
    def not_served(path: str, http_method: str, connect: bool) -> None:
        @observe(path, connect=connect)
        async def handler() -> Response:
            _generations.protocol(request.headers.getlist(_generations.PROTOCOL_HEADER))
            raise _errors.unimplemented(
                f"{http_method} {path}: this server serves EntroQ's task queue; the document store "
                "(docs, doc claims, namespaces) is not implemented"
            )

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=[http_method])

    not_served("/api/v0/docs", "GET", connect=False)
    not_served("/api/v0/docs/claim", "POST", connect=False)
    not_served("/api/v0/namespaces/stats", "GET", connect=False)
    for method in DOCUMENT_METHODS:
        not_served(CONNECT_PREFIX + method, "POST", connect=True)

    # Connect: POST /api.EntroQ/<Method>, JSON, with or without Connect-Protocol-Version.
    def connect_unary(method: str) -> None:
        path = CONNECT_PREFIX + method

        @observe(path, connect=True)
        async def handler() -> Response:
            _check_connect_headers(JSON)
            message, who = await body(_method_request(method))
            return ok(await run(method, message, who), who)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["POST"])

    for method in sorted(calls.methods - {"StreamTasks"}):
        connect_unary(method)

    stream_path = CONNECT_PREFIX + "StreamTasks"

    @observe(stream_path, connect=True)
    async def connect_stream() -> Response:
        _check_connect_headers(_connect.STREAM_JSON)
        try:
            payload = _connect.single_message(await _body_bytes())
            data = _wire.load_json(payload)
            who = caller(body=data)
            tasks = (await run("StreamTasks", _wire.parse_dict(data, "TasksRequest"), who)).tasks
        except Exception as exc:
            # Connect streams report errors in the final envelope of a 200 response.
            error = _map_exception(exc, settings.max_body_bytes)
            return Response(_connect_stream([], error, BASE64), content_type=_connect.STREAM_JSON)
        return Response(_connect_stream(tasks, None, who.values), content_type=_connect.STREAM_JSON)

    app.add_url_rule(stream_path, endpoint=stream_path, view_func=connect_stream, methods=["POST"])

    @observe("/healthz", connect=False)
    async def healthz() -> Response:
        return _json_response(b'{"status":"ok"}')

    @observe("/readyz", connect=False)
    async def readyz() -> Response:
        await calls.ready()
        return _json_response(b'{"status":"ready"}')

    async def metrics_route() -> Response:
        # A failed refresh keeps the previous snapshot: scrapes never fail because of the store.
        await calls.refresh_queue_sizes()
        return Response(metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_route() -> Response:
        return _json_response(openapi)

    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    app.add_url_rule("/readyz", view_func=readyz, methods=["GET"])
    if settings.metrics_bind is None:
        app.add_url_rule("/metrics", view_func=metrics_route, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=openapi_route, methods=["GET"])

    @app.before_request
    async def read_body() -> None:
        # Every request body is read before anything answers, even one no route wants (a
        # wrong method, an unknown path, a GET with a body): Hypercorn can only reuse the
        # connection once the whole request is in, and a body no one reads would stall it.
        if request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            await _body_bytes()

    @app.before_request
    async def one_authorization() -> Response | None:
        # Two Authorization headers are ambiguous (a proxy may read one, the policy the
        # other): refused outright rather than picking one.
        if len(request.headers.getlist("Authorization")) > 1:
            error = _errors.bad_request("more than one Authorization header: send exactly one")
            return _error_response(error, request.path.startswith(CONNECT_PREFIX))
        return None

    @app.after_request
    async def protocols(response: Response) -> Response:
        # On every answer, errors and non-API routes included: the 0.15 client checks it on
        # whatever its first GET /api/v0/time returns.
        response.headers[_generations.PROTOCOL_HEADER] = _generations.SERVED_HEADER_VALUE
        response.headers[REQUEST_ID_HEADER] = _request_id()
        return response

    @app.errorhandler(HTTPException)
    async def routing_error(exc: HTTPException) -> Response:
        # Unknown paths, wrong methods and oversized bodies never reach a route handler.
        error = _map_exception(exc, settings.max_body_bytes)
        route = _label(request.url_rule.rule) if request.url_rule is not None else "unmatched"
        metrics.requests.labels(route, error.outcome).inc()
        metrics.request_seconds.labels(route, error.outcome).observe(0.0)
        return _error_response(error, request.path.startswith(CONNECT_PREFIX))

    return app


def _label(rule: str) -> str:
    """A route's metrics label: its path template as OpenAPI writes it."""
    return rule.replace("<anypath:queue>", "{queue}")


def _method_request(method: str) -> str:
    """The request message name of an EntroQ method."""
    return _schema.METHODS[method][0]


def _request_id() -> str:
    """This request's ID (``_request_ids``), chosen once."""
    if "request_id" not in g:
        g.request_id = request_id(request.headers.getlist(REQUEST_ID_HEADER))
    return str(g.request_id)


async def _body_bytes() -> bytes:
    # Reads the body within MAX_CONTENT_LENGTH and BODY_TIMEOUT (werkzeug's 413 beyond the limit).
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)


def _check_connect_headers(expected: str) -> None:
    version = request.headers.get("Connect-Protocol-Version")
    if version is not None and version != "1":
        raise _errors.bad_request(f"unsupported Connect-Protocol-Version {version!r} (this server speaks 1)")
    media = _connect.media_type(request.headers.get("Content-Type"))
    if media != expected:
        raise _errors.unsupported_media_type(media)


async def _ndjson_tasks(tasks: Any, who: Caller) -> AsyncIterator[bytes]:
    for task in tasks:
        yield _wire.to_json(_wire.one_task_response(task), who.values) + b"\n"


async def _connect_stream(tasks: Any, error: ApiError | None, values: ValueEncoding) -> AsyncIterator[bytes]:
    for task in tasks:
        yield _connect.envelope(_wire.to_json(_wire.one_task_response(task), values))
    yield _connect.end_stream(error)
