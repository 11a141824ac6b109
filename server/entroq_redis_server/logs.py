"""How the service logs: the level and the format (``serve --log-level``, ``--log-format``).

``text`` is one line per message (time, level, logger, message); ``json`` one JSON object per
line, ``{"time", "level", "logger", "message"}`` plus ``process`` with several worker
processes and ``exception`` (the traceback's text) when one is logged, for log collectors
that parse lines. Every service process (``--workers N`` spawns them) applies the same.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Literal

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, *, with_process: bool = False) -> None:
        super().__init__()
        self.with_process = with_process

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.with_process:
            entry["process"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: LogLevel, fmt: LogFormat, *, with_process: bool = False) -> None:
    """Sends log records of ``level`` and above to stderr in ``fmt`` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter(with_process=with_process))
    else:
        process = " %(process)d" if with_process else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s{process} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
