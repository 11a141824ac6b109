"""The dashboard at ``/ui`` (``serve --ui``, on by default): live queues, a queue's tasks, a
task, quarantine with versioned requeue and delete, leases, find, throughput.

A front end like REST: server-rendered Jinja templates and vendored, pinned htmx (``static/vendor``,
see its README), calling the library only through the core (``core.calls``), with the API's
authorization. ``dashboard`` holds what every route shares, ``access`` the login cookie and
the guards of actions, ``feed`` the shared queue stats, ``events`` the live table,
``pages`` the read-only pages, ``actions`` the forms, ``quarantine``, ``preview``,
``queue_table`` and ``throughput`` the logic behind them.
"""

from __future__ import annotations

import importlib.resources

from quart import Response
from quart_trio import QuartTrio

from ..core.calls import Calls
from . import actions, events, pages
from .dashboard import Dashboard

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def register(app: QuartTrio, calls: Calls, refresh_s: float) -> Dashboard:
    """Adds the dashboard's routes to ``app``."""
    dash = Dashboard(app, calls, refresh_s)
    pages.register(dash)
    events.register(dash)
    actions.register(dash)
    _register_static(dash)

    @app.before_serving
    async def start_sampling() -> None:
        app.nursery.start_soon(dash.sample_throughput)

    return dash


def _register_static(dash: Dashboard) -> None:
    # Only the files shipped in the package, read once: no path from a request reaches the disk.
    root = importlib.resources.files(__package__).joinpath("static")
    files: dict[str, tuple[bytes, str]] = {}
    for folder in (root, root.joinpath("vendor")):
        for item in folder.iterdir():
            suffix = "." + item.name.rsplit(".", 1)[-1]
            if item.is_file() and suffix in STATIC_TYPES:
                files[item.name] = (item.read_bytes(), STATIC_TYPES[suffix])

    async def static(name: str) -> Response:
        body, content_type = files[name]
        return Response(body, content_type=content_type, headers={"Cache-Control": "public, max-age=3600"})

    @dash.route("/ui/static/<name>")
    async def static_file(name: str) -> Response:
        if name not in files:
            return dash.render("error.html", 404, status=404, message=f"no static file {name!r}")
        return await static(name)
