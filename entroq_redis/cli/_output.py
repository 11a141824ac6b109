"""How commands print: readable tables by default, JSON with --json.

JSON forms use the HTTP API's field names, camelCase as in EntroQ's wire format (``atMs``,
``claimantId``, ``numTasks``); unlike proto3 JSON, 64-bit numbers are JSON numbers, not strings,
and times are ms since the epoch on the store's clock. A task's ``value`` is standard base64
(values are bytes); ``valueText`` is added when the value is valid UTF-8. A doc's ``content`` is
printed the same way (``contentText`` when UTF-8), and its holder is ``claimant``, the name
EntroQ's Doc message gives it (server/entroq_redis_server/core/schema.py), where a task's is ``claimantId``.
``print_json`` camelCases every key it is given, so a command may build its output with
Python's names.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any

from .._doc_types import Doc, NamespaceStats
from .._types import QueueStats, Task, ms_to_datetime


def task_json(task: Task, *, omit_value: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": task.id,
        "version": task.version,
        "queue": task.queue,
        "at_ms": task.at_ms,
        "claimant_id": task.claimant,
        "claims": task.claims,
        "attempt": task.attempt,
        "err": task.err,
        "created_ms": task.created_ms,
        "modified_ms": task.modified_ms,
    }
    if not omit_value:
        data["value"] = base64.b64encode(task.value).decode("ascii")
        with contextlib.suppress(UnicodeDecodeError):
            data["value_text"] = task.value.decode("utf-8")
    return data


def stats_json(stats: QueueStats) -> dict[str, Any]:
    return {
        "name": stats.name,
        "num_tasks": stats.num_tasks,
        "num_available": stats.num_available,
        "num_claimed": stats.num_claimed,
        "num_future": stats.num_future,
        "max_claims": stats.max_claims,
    }


def camel(name: str) -> str:
    """``num_tasks`` -> ``numTasks``."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(data: Any) -> Any:
    """``data`` with every dict key camelCased, at any depth."""
    if isinstance(data, dict):
        return {camel(str(key)): camel_keys(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [camel_keys(item) for item in data]
    return data


def print_json(data: Any) -> None:
    json.dump(camel_keys(data), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def iso(ms: int) -> str:
    moment = ms_to_datetime(ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shorten(text: str, width: int) -> str:
    text = text.replace("\n", " | ").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def value_preview(value: bytes, width: int = 40) -> str:
    try:
        return shorten(value.decode("utf-8"), width)
    except UnicodeDecodeError:
        return f"<{len(value)} bytes, binary>"


def plural(n: int, noun: str) -> str:
    """'1 task', '2 tasks'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def last_line(err: str) -> str:
    return err.rstrip("\n").rsplit("\n", 1)[-1] if err else ""


def arrival_text(at_ms: int, now_ms: int) -> str:
    """When a task is available, relative to the store's clock."""
    if at_ms <= now_ms:
        return "now"
    seconds = (at_ms - now_ms) / 1000
    if seconds < 120:
        return f"in {seconds:.1f}s"
    if seconds < 7200:
        return f"in {seconds / 60:.1f}m"
    return iso(at_ms)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """A plain text table; columns in ``right`` (indexes) are right-aligned (numbers)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def held(task: Task, now_ms: int) -> bool:
    """Whether ``task`` is claimed now, as queue stats count it (lua/queues.lua): a claimant, an
    arrival in the future and at least one claim. A delayed insert keeps its inserter as claimant
    but was never claimed: it is future, not held."""
    return bool(task.claimant) and task.at_ms > now_ms and task.claims > 0


def tasks_table(tasks: Sequence[Task], now_ms: int, *, show_values: bool = True) -> str:
    headers = ["ID", "VERSION", "QUEUE", "AVAILABLE", "HELD BY", "CLAIMS", "ATTEMPT", "ERR"]
    if show_values:
        headers.append("VALUE")
    rows = []
    for task in tasks:
        row: list[object] = [
            task.id,
            task.version,
            task.queue,
            arrival_text(task.at_ms, now_ms),
            shorten(task.claimant, 20) if held(task, now_ms) else "-",
            task.claims,
            task.attempt,
            shorten(last_line(task.err), 30) if task.err else "-",
        ]
        if show_values:
            row.append(value_preview(task.value))
        rows.append(row)
    return table(headers, rows, right=(1, 5, 6))


def task_details(task: Task, now_ms: int) -> str:
    """One task, every field, the value in full when it is text."""
    try:
        value = task.value.decode("utf-8")
    except UnicodeDecodeError:
        value = f"<{len(task.value)} bytes, binary; use --json for base64>"
    fields = [
        ("id", task.id),
        ("version", str(task.version)),
        ("queue", task.queue),
        ("at", f"{iso(task.at_ms)} ({arrival_text(task.at_ms, now_ms)})"),
        ("claimant", task.claimant or "-"),
        ("claims", str(task.claims)),
        ("attempt", str(task.attempt)),
        ("created", iso(task.created_ms)),
        ("modified", iso(task.modified_ms)),
        ("err", task.err.replace("\n", "\n" + " " * 10) if task.err else "-"),
        ("value", value),
    ]
    return "\n".join(f"{name + ':':<9} {text}" for name, text in fields)


def stats_table(stats: Sequence[QueueStats]) -> str:
    rows = [[s.name, s.num_tasks, s.num_available, s.num_claimed, s.num_future, s.max_claims] for s in stats]
    headers = ["QUEUE", "TASKS", "AVAILABLE", "CLAIMED", "FUTURE", "MAX CLAIMS"]
    return table(headers, rows, right=(1, 2, 3, 4, 5))


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def doc_json(doc: Doc, *, omit_value: bool = False) -> dict[str, Any]:
    """A doc as the doc commands print it: the HTTP API's Doc fields (camelCased by print_json),
    content as a task value."""
    data: dict[str, Any] = {
        "namespace": doc.namespace,
        "id": doc.id,
        "version": doc.version,
        "key": doc.key,
        "secondary_key": doc.secondary_key,
        "claimant": doc.claimant,
        "at_ms": doc.at_ms,
        "created_ms": doc.created_ms,
        "modified_ms": doc.modified_ms,
    }
    if not omit_value:
        data["content"] = base64.b64encode(doc.content).decode("ascii")
        with contextlib.suppress(UnicodeDecodeError):
            data["content_text"] = doc.content.decode("utf-8")
    return data


def docs_table(docs: Sequence[Doc], now_ms: int, *, show_values: bool = True) -> str:
    headers = ["ID", "VERSION", "KEY", "SECONDARY KEY", "HELD BY", "MODIFIED"]
    if show_values:
        headers.append("CONTENT")
    rows = []
    for doc in docs:
        row: list[object] = [
            doc.id,
            doc.version,
            shorten(doc.key, 30),
            shorten(doc.secondary_key, 30),
            # As for tasks: a claimant counts only while its claim lasts.
            shorten(doc.claimant, 20) if doc.claimant and doc.at_ms > now_ms else "-",
            iso(doc.modified_ms),
        ]
        if show_values:
            row.append(value_preview(doc.content))
        rows.append(row)
    return table(headers, rows, right=(1,))


def namespace_stats_json(stats: NamespaceStats) -> dict[str, Any]:
    return {"name": stats.name, "num_docs": stats.num_docs, "num_claimed": stats.num_claimed}


def namespace_stats_table(stats: Sequence[NamespaceStats]) -> str:
    rows = [[s.name, s.num_docs, s.num_claimed] for s in stats]
    return table(["NAMESPACE", "DOCS", "CLAIMED"], rows, right=(1, 2))
