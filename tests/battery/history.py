"""The battery's history log: one JSON line per completed operation, one file per process.

Jepsen's model (docs/reference/reliability-battery.md 2.2): every operation ends ``ok`` (it
happened), ``fail`` (it definitely did not) or ``info`` (unknown: a reset, a timeout, a
crash between request and reply). The checker must let ``info`` operations go either way.

Record fields (all operations):

- ``p``: the process (and coroutine) that ran it; ``op``: insert | claim | modify | read | final;
- ``ti``, ``td``: invocation and completion on ``time.monotonic()``, which on Linux is one
  system-wide clock, so times from different processes compare;
- ``type``: ok | fail | info; ``err``: the error's class and text when not ok.

Per kind:

- modify: ``batch`` (a client-chosen name shared by the retries of one modify), ``ins``
  [[id, queue]], ``chg`` [[id, version, queue]], ``dels`` [[id, version]], ``deps`` [[id, version]];
  when ok also ``out`` [[id, version, at_ms, modified_ms, claimant]] for every inserted and
  changed task (inserted ones at version 0);
- claim: ``queues``, ``fin`` [[id, version]] (finish deletes), ``claimant``; when ok and a
  task was claimed, ``task`` [id, version, queue, at_ms, modified_ms, claimant];
- read: ``ids`` asked, ``seen`` [[id, version, queue]]: one atomic snapshot (one script call);
- final: ``seen`` [[id, version, queue, value]]: the store's whole content at the end.

Inserts always carry client-chosen IDs, so an insert whose outcome is unknown still names
the task it may have created.

The side-effect log (a second file per process) records ``{"p", "id", "v", "claimant",
"phase": "effect" | "committed", "t"}``: "effect" before a worker commits a task it claimed
at version ``v``, "committed" (with the commit's ``stage``: a task moved to a second stage
is committed once per stage) once that commit was acknowledged. It makes "executed twice"
(allowed under faults, reported) and "committed twice" (never allowed) separately countable.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import entroq_redis

OpType = Literal["ok", "fail", "info"]
Record = dict[str, Any]


def outcome_of(exc: BaseException) -> OpType:
    """How an exception from a library call ends an operation.

    A refused modify (DependencyError), a bad request and a claim that found nothing in time
    definitely changed nothing. Everything else (unreachable store or service, a reset
    connection, an unconfirmed write) may or may not have been applied.
    """
    if isinstance(
        exc,
        entroq_redis.DependencyError | entroq_redis.InvalidArgumentError | entroq_redis.ClaimTimeoutError,
    ):
        return "fail"
    return "info"


def task_out(task: entroq_redis.Task) -> list[Any]:
    """A task's identity and lease as a modify's ``out`` entry records them."""
    return [task.id, task.version, task.at_ms, task.modified_ms, task.claimant]


def claimed(task: entroq_redis.Task) -> list[Any]:
    return [task.id, task.version, task.queue, task.at_ms, task.modified_ms, task.claimant]


class HistoryWriter:
    """Appends records to one process's history file (line-buffered, so a SIGKILL loses at
    most the operation in flight)."""

    def __init__(self, path: str | pathlib.Path, proc: str) -> None:
        self.proc = proc
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 (closed by close())

    def write(self, record: Record) -> None:
        record.setdefault("p", self.proc)
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    @contextlib.contextmanager
    def op(self, kind: str, **fields: Any) -> Iterator[Record]:
        """Times one operation; the body fills in its results.

        The record ends ok if the body returns, with the exception's outcome if it raises
        (the exception propagates), and is written either way.
        """
        record: Record = {"op": kind, "ti": time.monotonic(), **fields}
        try:
            yield record
        except BaseException as exc:
            record["type"] = outcome_of(exc)
            record["err"] = f"{type(exc).__name__}: {exc}"[:300]
            raise
        else:
            record.setdefault("type", "ok")
        finally:
            record["td"] = time.monotonic()
            self.write(record)

    def close(self) -> None:
        self._file.close()


class EffectLog:
    """One process's side-effect log (see the module doc)."""

    def __init__(self, path: str | pathlib.Path, proc: str) -> None:
        self.proc = proc
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 (closed by close())

    def effect(self, task: entroq_redis.Task, proc: str | None = None) -> None:
        self._write(task, "effect", proc)

    def committed(self, task: entroq_redis.Task, proc: str | None = None, stage: str = "done") -> None:
        self._write(task, "committed", proc, stage)

    def _write(self, task: entroq_redis.Task, phase: str, proc: str | None, stage: str = "") -> None:
        record = {
            "p": proc or self.proc,
            "id": task.id,
            "v": task.version,
            "claimant": task.claimant,
            "phase": phase,
            "t": time.monotonic(),
        }
        if stage:
            record["stage"] = stage
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


def load(paths: Iterable[str | pathlib.Path]) -> list[Record]:
    """Every record of the given files (missing files count as empty).

    A process killed mid-write may leave a torn last line; it is skipped (that operation
    never completed, so it has no outcome to check).
    """
    records: list[Record] = []
    for path in paths:
        path = pathlib.Path(path)
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def final_record(tasks: Iterable[entroq_redis.Task]) -> Record:
    """The ``final`` record: the store's whole content after the run."""
    now = time.monotonic()
    seen = [[t.id, t.version, t.queue, t.value.decode("utf-8", "replace")] for t in tasks]
    return {"p": "final", "op": "final", "ti": now, "td": now, "type": "ok", "seen": seen}
