"""EntroQ's REST routes: its google.api.http transcoding (docs/reference/entroq-protocol.md 4.2), plus the
``/api/v0/tasks`` form of later releases, and NDJSON task streams.

Queue names in paths may hold ``/``, spaces and any unicode: ``{queue}`` matches greedily
(``/api/v0/queues//a/b/tasks`` is queue ``/a/b``), and slashes are never merged or
redirected (``http_app`` sets the URL map so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from quart import Response
from quart_trio import QuartTrio

from ..core import generations as _generations
from ..core import wire as _wire
from ..core.generations import Caller
from ..http_front import HttpFront, method_request, ok

NDJSON = "application/x-ndjson"


def label(rule: str) -> str:
    """A route's metrics label: its path template as OpenAPI writes it."""
    return rule.replace("<anypath:queue>", "{queue}")


def register(app: QuartTrio, front: HttpFront) -> None:
    """Adds every REST route to ``app``."""

    def rest_post(path: str, method: str, route: _generations.Route = "other") -> None:
        @front.observe(path, connect=False)
        async def handler() -> Response:
            message, who = await front.body(method_request(method), route)
            return ok(await front.run(method, message, who), who)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["POST"])

    def rest_get(path: str, method: str, route: _generations.Route = "other") -> None:
        @front.observe(label(path), connect=False)
        async def handler(**fixed: str) -> Response:
            message, who = front.query(method_request(method), route, **fixed)
            return ok(await front.run(method, message, who), who)

        app.add_url_rule(path, endpoint=path, view_func=handler, methods=["GET"])

    def rest_stream(path: str, route: _generations.Route) -> None:
        @front.observe(label(path), connect=False)
        async def handler(**fixed: str) -> Response:
            message, who = front.query("TasksRequest", route, **fixed)
            tasks = (await front.run("StreamTasks", message, who)).tasks
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

    # The document store (EntroQ v1.1): the listing takes its parameters with or without the
    # ``query.`` prefix (the PyPI clients send both forms), so it has a parser of its own.
    @front.observe("/api/v0/docs", connect=False)
    async def docs() -> Response:
        message, who = front.docs_query()
        return ok(await front.run("Docs", message, who), who)

    app.add_url_rule("/api/v0/docs", endpoint="/api/v0/docs", view_func=docs, methods=["GET"])
    rest_post("/api/v0/docs/claim", "ClaimDocs", "docs")
    rest_get("/api/v0/namespaces/stats", "NamespaceStats", "docs")


async def _ndjson_tasks(tasks: Any, who: Caller) -> AsyncIterator[bytes]:
    for task in tasks:
        yield _wire.to_json(_wire.one_task_response(task), who.values) + b"\n"
