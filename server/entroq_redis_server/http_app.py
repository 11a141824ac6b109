"""The Quart (trio) application of the HTTP port: REST and Connect routes, health, metrics.

Assembly only: the routes are in ``rest.routes`` and ``connect.routes``, what they share
(decoding, running, rendering, request metrics) in ``http_front``, and everything else in
``core``. Notes:

- slashes in paths are never merged or redirected (queue names may hold them, ``rest.routes``);
- wrong methods get 405 with ``Allow``, unknown paths 404, both as JSON;
- every EntroQ client generation is served at once: each API request is identified by
  ``core.generations`` (protocol, value encoding) before its body is decoded, every response says
  ``entroq-protocol: 1,2``, and EntroQ v1.1's document store is served on its REST and
  Connect routes as the task calls are;
- Quart's defaults are set deliberately: no response timeout (long-poll claims wait as long
  as their caller or the cap allows; streams end when their data does), a body timeout of
  ``--body-timeout`` (60 s; bodies are small; a stalled upload must not hold a slot forever:
  408), and ``MAX_CONTENT_LENGTH`` = the service's body limit (413 beyond it);
- ``/metrics`` is served here unless it has a listener of its own (``--metrics-port``,
  ``listen.metrics_app``);
- the dashboard (``ui``) is mounted under ``/ui`` unless ``--no-ui``.
"""

from __future__ import annotations

import importlib.resources
import logging

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from .connect import routes as connect_routes
from .core import errors as _errors
from .core import generations as _generations
from .core.calls import Calls
from .core.request_ids import REQUEST_ID_HEADER
from .http_front import (
    CONNECT_PREFIX,
    HttpFront,
    body_bytes,
    current_request_id,
    error_response,
    json_response,
)
from .rest import routes as rest_routes
from .settings import ServiceSettings

log = logging.getLogger(__name__)


class _AnyPath(BaseConverter):
    """Matches any text, slashes, line breaks and the empty string included (greedy)."""

    # Not ".*": "." stops at a newline, and a queue name may hold one (%0A in the path).
    regex = r"[\s\S]*"
    part_isolating = False


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
    front = HttpFront(settings, calls)
    rest_routes.register(app, front)
    connect_routes.register(app, front, calls.methods)

    @front.observe("/healthz", connect=False)
    async def healthz() -> Response:
        return json_response(b'{"status":"ok"}')

    @front.observe("/readyz", connect=False)
    async def readyz() -> Response:
        await calls.ready()
        return json_response(b'{"status":"ready"}')

    async def metrics_route() -> Response:
        # A failed refresh keeps the previous snapshot: scrapes never fail because of the store.
        await calls.refresh_queue_sizes()
        return Response(metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_route() -> Response:
        return json_response(openapi)

    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    app.add_url_rule("/readyz", view_func=readyz, methods=["GET"])
    if settings.metrics_bind is None:
        app.add_url_rule("/metrics", view_func=metrics_route, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=openapi_route, methods=["GET"])
    if settings.ui:
        from . import ui  # Jinja and the templates load only when the dashboard is served

        ui.register(app, calls, settings.ui_refresh_s)

    @app.before_request
    async def read_body() -> None:
        # Every request body is read before anything answers, even one no route wants (a
        # wrong method, an unknown path, a GET with a body): Hypercorn can only reuse the
        # connection once the whole request is in, and a body no one reads would stall it.
        if request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            await body_bytes()

    @app.before_request
    async def one_authorization() -> Response | None:
        # Two Authorization headers are ambiguous (a proxy may read one, the policy the
        # other): refused outright rather than picking one.
        if len(request.headers.getlist("Authorization")) > 1:
            error = _errors.bad_request("more than one Authorization header: send exactly one")
            return error_response(error, request.path.startswith(CONNECT_PREFIX))
        return None

    @app.after_request
    async def protocols(response: Response) -> Response:
        # On every answer, errors and non-API routes included: the 0.15 client checks it on
        # whatever its first GET /api/v0/time returns.
        response.headers[_generations.PROTOCOL_HEADER] = _generations.SERVED_HEADER_VALUE
        response.headers[REQUEST_ID_HEADER] = current_request_id()
        return response

    @app.errorhandler(HTTPException)
    async def routing_error(exc: HTTPException) -> Response:
        # Unknown paths, wrong methods and oversized bodies never reach a route handler.
        error = front.map_exception(exc)
        route = rest_routes.label(request.url_rule.rule) if request.url_rule is not None else "unmatched"
        metrics.requests.labels(route, error.outcome).inc()
        metrics.request_seconds.labels(route, error.outcome).observe(0.0)
        return error_response(error, request.path.startswith(CONNECT_PREFIX))

    return app
