"""What every dashboard route shares: the caller's identity, calls through the core, rendering
(Jinja with autoescaping on for every template), error pages, request metrics and the
security headers of every answer.

The dashboard is a front end like REST: each call goes through ``Calls.run`` (namespace,
authorization, library call), never to the store directly.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
import trio
from quart import Response, g, request
from quart_trio import QuartTrio

import entroq_redis

from ..core import errors as _errors
from ..core import schema as _schema
from ..core.calls import Calls
from ..core.errors import ApiError
from ..http_front import current_request_id
from .access import COOKIE_PATH, CSRF_COOKIE, Access, Refused, access_of
from .feed import QueueFeed, Snapshot
from .throughput import SAMPLE_EVERY_S, Throughput

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
# Everything the pages load comes from this origin; no inline script, style or handler runs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Page = Callable[..., Awaitable[Response]]


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,  # every template, whatever its name: queue names, IDs and values are user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago
    env.filters["utc"] = utc
    return env


class Dashboard:
    """The dashboard of one service process."""

    def __init__(self, app: QuartTrio, calls: Calls, refresh_s: float) -> None:
        self.app = app
        self.calls = calls
        self.metrics = calls.metrics
        self.feed = QueueFeed(calls, refresh_s)
        self.throughput = Throughput(lambda: calls.metrics.registry.collect())
        self.templates = _templates()

    async def sample_throughput(self) -> None:
        """Samples the metrics for the throughput page, for the service's lifetime."""
        while True:
            self.throughput.sample()
            await trio.sleep(SAMPLE_EVERY_S)

    # Identity and calls.

    @property
    def access(self) -> Access:
        if "ui_access" not in g:
            g.ui_access = access_of(request.headers, request.cookies)
        found: Access = g.ui_access
        return found

    async def namespace(self) -> str:
        """The request's namespace, once its credentials pass (401 otherwise)."""
        return await self.calls.authenticate(self.access.headers, current_request_id())

    async def call(self, method: str, message: Any) -> Any:
        return await self.calls.run(method, message, self.access.headers, None, current_request_id())

    async def permits(self, method: str, message: Any) -> bool:
        return await self.calls.permits(method, message, self.access.headers, current_request_id())

    async def visible(self, snapshot: Snapshot) -> list[Any]:
        """The snapshot's queues this caller may read."""
        return await self.feed.visible(snapshot, self.access.headers, current_request_id())

    async def now_ms(self) -> int:
        response = await self.call("Time", _schema.TimeRequest())
        return int(response.time_ms)

    async def tasks(self, queue: str = "", ids: list[str] | None = None, **options: Any) -> list[Any]:
        message = _schema.TasksRequest(queue=queue, task_id=ids or [], **options)
        return list((await self.call("Tasks", message)).tasks)

    # Answers.

    def render(self, template: str, http_status: int = 200, **context: Any) -> Response:
        return Response(self.fragment(template, **context), status=http_status, content_type=HTML)

    def fragment(self, template: str, **context: Any) -> str:
        access = self.access
        context.setdefault("csrf", access.csrf)
        context.setdefault("logged_in", access.logged_in)
        context.setdefault("namespace", access.headers.get("EntroQ-Namespace") or "")
        return self.templates.get_template(template).render(**context)

    def error_page(self, exc: BaseException) -> Response:
        if isinstance(exc, Refused):
            return self.render("error.html", 403, status=403, message=str(exc))
        error = _errors.from_exception(exc)
        if error.code == _errors.INTERNAL:
            log.exception("internal error serving %s %s", request.method, request.path, exc_info=exc)
        if error.status == 401:
            return self.render("login.html", 401, message=error.message)
        return self.render("error.html", error.status, status=error.status, message=error.message)

    def finish(self, response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if self.access.new_csrf:
            self.set_cookie(response, CSRF_COOKIE, self.access.csrf)
        return response

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )

    def route(
        self, path: str, methods: tuple[str, ...] = ("GET",), aliases: tuple[str, ...] = ()
    ) -> Callable[[Page], Page]:
        """Adds a page: errors become HTML pages, every answer gets the security headers, and
        requests are counted in ``entroq_http_requests_total`` under the path."""

        def decorate(handler: Page) -> Page:
            @functools.wraps(handler)
            async def view(**kwargs: Any) -> Response:
                started = time.perf_counter()
                outcome = "error"
                try:
                    response = await handler(**kwargs)
                    outcome = _STATUS_OUTCOMES.get(
                        response.status_code, "ok" if response.status_code < 400 else "error"
                    )
                except trio.Cancelled:
                    outcome = "cancelled"
                    raise
                except Exception as exc:
                    response = self.error_page(exc)
                    outcome = _outcome(exc)
                finally:
                    self.metrics.requests.labels(path, outcome).inc()
                    self.metrics.request_seconds.labels(path, outcome).observe(time.perf_counter() - started)
                return self.finish(response)

            for rule in (path, *aliases):
                self.app.add_url_rule(
                    rule, endpoint=f"ui {','.join(methods)} {rule}", view_func=view, methods=list(methods)
                )
            return view

        return decorate


# Pages answered with an error status without raising (a refused action's report, a 404).
_STATUS_OUTCOMES = {401: "denied", 403: "denied", 404: "not_found", 409: "dependency"}


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, Refused):
        return "denied"
    if isinstance(exc, entroq_redis.DependencyError):
        return "dependency"
    error = exc if isinstance(exc, ApiError) else _errors.from_exception(exc)
    return error.outcome


def ago(ms: int, now_ms: int) -> str:
    """``ms`` relative to ``now_ms``: "3 min ago", "in 20 s"."""
    delta = (ms - now_ms) / 1000
    size = abs(delta)
    if size < 1:
        return "now"
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if size >= seconds:
            text = f"{int(size // seconds)} {unit}"
            break
    return f"in {text}" if delta > 0 else f"{text} ago"


def utc(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
