"""``serve --log-level`` and ``--log-format``, applied (the service's ``configure_logging``
formats; imported only when ``serve`` runs). The options are ``ServiceSettings``' fields."""

from __future__ import annotations

from entroq_redis_server.logs import LogFormat, LogLevel


def configure_logging(level: LogLevel, fmt: LogFormat) -> None:
    from entroq_redis_server import configure_logging as configure

    configure(level, fmt)
