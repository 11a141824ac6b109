"""What the REST and Connect routes share on the Quart app: decoding a request into the core's
typed call, running it, rendering the answer or the error, and the request metrics.

The routes themselves (``rest.routes``, ``connect.routes``) only choose which message a path
carries and how its bytes are framed; every check, limit, error mapping and metric is here or
in ``core``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from quart import Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .connect import framing as _connect
from .core import doc_wire as _doc_wire
from .core import errors as _errors
from .core import generations as _generations
from .core import schema as _schema
from .core import wire as _wire
from .core.calls import Calls
from .core.errors import ApiError
from .core.generations import Caller, Generations
from .core.namespaces import NAMESPACE_HEADER
from .core.request_ids import REQUEST_ID_HEADER, request_id
from .settings import ServiceSettings

log = logging.getLogger(__name__)

JSON = "application/json"
CONNECT_PREFIX = "/api.EntroQ/"

RouteHandler = Callable[..., Awaitable[Response]]


class HttpFront:
    """The per-request steps every REST and Connect route takes, for one service process."""

    def __init__(self, settings: ServiceSettings, calls: Calls) -> None:
        self.settings = settings
        self.calls = calls
        self.metrics = calls.metrics
        self.generations = Generations(settings.value_encoding_default)

    def observe(self, route: str, connect: bool) -> Callable[[RouteHandler], RouteHandler]:
        """Renders errors and records request metrics for one route."""
        metrics = self.metrics

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
                    error = self.map_exception(exc)
                    outcome = error.outcome
                    return error_response(error, connect)
                finally:
                    elapsed = time.perf_counter() - started
                    metrics.requests.labels(route, outcome).inc()
                    metrics.request_seconds.labels(route, outcome).observe(elapsed)

            return wrapper

        return decorate

    def map_exception(self, exc: BaseException) -> ApiError:
        if isinstance(exc, HTTPException):
            if exc.code == 413:
                return _errors.too_large(self.settings.max_body_bytes)
            if isinstance(exc, MethodNotAllowed):
                return _errors.method_not_allowed(request.method, exc.valid_methods or ())
            if exc.code == 404:
                return _errors.route_not_found(request.path)
            return ApiError(
                exc.code or 500, _errors.INVALID_ARGUMENT, exc.description or str(exc), "bad_request"
            )
        error = _errors.from_exception(exc)
        if error.code == _errors.INTERNAL:
            log.exception("internal error serving %s %s", request.method, request.path, exc_info=exc)
        return error

    async def run(self, method: str, message: Any, who: Caller) -> Any:
        timeout_s = _connect.parse_timeout_s(request.headers)
        response = await self.calls.run(method, message, request.headers, timeout_s, current_request_id())
        # Only a call that was authorized and served teaches the claimant memory.
        self.generations.learn(who)
        return response

    def caller(self, route: _generations.Route = "other", body: Any = None, claimant: str = "") -> Caller:
        headers = request.headers
        return self.generations.identify(
            protocol_values=headers.getlist(_generations.PROTOCOL_HEADER),
            encoding_values=headers.getlist(_generations.VALUE_ENCODING_HEADER),
            user_agent=headers.get("User-Agent", ""),
            route=route,
            body=body if isinstance(body, dict) else None,
            claimant=claimant,
            namespace=headers.get(NAMESPACE_HEADER, ""),
            credentials=headers.get("Authorization", ""),
        )

    async def body(self, message: str, route: _generations.Route = "other") -> tuple[Any, Caller]:
        raw = await body_bytes()
        # A client of an unserved protocol hears that first, whatever its body looks like.
        _generations.protocol(request.headers.getlist(_generations.PROTOCOL_HEADER))
        # Oversized lists are refused before the caller identification walks them.
        data = _wire.check_counts(_wire.load_json(raw), message)
        who = self.caller(route, body=data)
        return _wire.parse_dict(data, message, who.values), who

    def query(self, message: str, route: _generations.Route = "other", **fixed: Any) -> tuple[Any, Caller]:
        claimant = request.args.get("claimantId") or request.args.get("claimant_id") or ""
        who = self.caller(route, claimant=claimant)
        return _wire.parse_query(request.args.items(multi=True), message, **fixed), who

    def docs_query(self) -> tuple[Any, Caller]:
        """A ``GET /api/v0/docs`` request (``query.``-prefixed parameters or not)."""
        who = self.caller("docs")
        return _doc_wire.parse_docs_query(request.args.items(multi=True)), who


def ok(message: Any, who: Caller) -> Response:
    return json_response(_wire.to_json(message, who.values))


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, content_type=JSON, headers=headers)


def error_response(error: ApiError, connect: bool) -> Response:
    body = _errors.connect_body(error) if connect else _errors.rest_body(error)
    return json_response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), error.status, error.headers
    )


def method_request(method: str) -> str:
    """The request message name of an EntroQ method."""
    return _schema.METHODS[method][0]


def current_request_id() -> str:
    """This request's ID (``core.request_ids``), chosen once."""
    if "request_id" not in g:
        g.request_id = request_id(request.headers.getlist(REQUEST_ID_HEADER))
    return str(g.request_id)


async def body_bytes() -> bytes:
    # Reads the body within MAX_CONTENT_LENGTH and BODY_TIMEOUT (werkzeug's 413 beyond the limit).
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)
