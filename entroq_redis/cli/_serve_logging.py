"""``serve --log-level`` and ``--log-format``: the choices, and applying them (the service's
``configure_logging`` formats; imported only when ``serve`` runs)."""

from __future__ import annotations

from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def configure_logging(level: Any, fmt: Any) -> None:
    from entroq_redis_server import configure_logging as configure

    configure(level, fmt)
