"""Runs a command's async body under trio and turns its outcome into an exit code.

Errors go to stderr as one line (``entroq-redis: message``), or with --json as one JSON object
``{"error": KIND, "message": ..., "exitCode": N}`` (a dependency conflict adds ``failures``).
A closed standard output (``| head``) ends the command quietly with status 141.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._client import EntroQ
from .._connect import connect
from .._errors import (
    ClaimTimeoutError,
    DependencyError,
    EntroQError,
    InvalidArgumentError,
)
from . import EXIT_DEPENDENCY, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_PIPE_CLOSED, EXIT_USAGE
from ._lookup import DocNotFoundError, TaskNotFoundError
from ._options import UsageError, claimant_for, connection_url

Body = Callable[[EntroQ], Awaitable[int]]


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside task-group wrappers (trio groups even a single exception)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        if len(leaves) != 1:
            return exc
        exc = leaves[0]
    return exc


_json_errors = False


def set_json_errors(enabled: bool) -> None:
    """Report errors as JSON from now on (the command line asked for --json)."""
    global _json_errors
    _json_errors = enabled


def report(kind: str, message: str, code: int, **extra: Any) -> int:
    """Says what went wrong on stderr, as a line or (--json) a JSON object; returns ``code``."""
    if _json_errors:
        body = {"error": kind, "message": message, "exitCode": code, **extra}
        print(json.dumps(body, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"entroq-redis: {message}", file=sys.stderr)
    return code


def error(message: str, code: int = EXIT_ERROR, kind: str = "error") -> int:
    """A command's own explanation of a non-zero exit (nothing claimed, refused...): ``code``."""
    return report(kind, message, code)


class StdoutClosedError(BrokenPipeError):
    """Standard output's reader went away (``entroq-redis ts q | head``)."""


class _GuardedStdout(io.TextIOBase):
    """Standard output, telling a closed pipe (StdoutClosedError) from a broken socket to the
    store or service (a plain BrokenPipeError, an error to report)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError as exc:
            raise StdoutClosedError(*exc.args) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError as exc:
            raise StdoutClosedError(*exc.args) from None

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream.fileno())

    @property
    def buffer(self) -> Any:
        return self._stream.buffer

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(self._stream.encoding)


def guard_stdout() -> None:
    if not isinstance(sys.stdout, _GuardedStdout) and sys.stdout is not None:
        sys.stdout = _GuardedStdout(sys.stdout)


def stdout_closed() -> int:
    """Ends quietly after stdout closed: later writes (and the interpreter's final flush) go
    to /dev/null instead of printing 'Broken pipe' at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
    os.close(devnull)
    return EXIT_PIPE_CLOSED


def exit_code_for(exc: BaseException) -> int:
    """Reports ``exc`` on stderr and returns the exit code it stands for."""
    exc = _leaf(exc)
    if isinstance(exc, StdoutClosedError):
        return stdout_closed()
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, DependencyError):
        return _dependency(exc)
    if isinstance(exc, TaskNotFoundError | DocNotFoundError):
        return report("not_found", str(exc), EXIT_DEPENDENCY)
    if isinstance(exc, ClaimTimeoutError):
        return report("nothing_claimed", str(exc), EXIT_NOTHING)
    if isinstance(exc, UsageError | InvalidArgumentError):
        return report("usage", str(exc), EXIT_USAGE)
    if isinstance(exc, EntroQError | OSError | ValueError | NotImplementedError):
        return report("error", str(exc) or type(exc).__name__, EXIT_ERROR)
    raise exc


def _dependency(exc: DependencyError) -> int:
    """A refused modify: every failing item, tasks then docs, as lines or (--json) under
    ``failures`` (a doc's names its ``namespace`` and, for a doc set, its ``key``; a task's its
    ``queue``)."""
    if _json_errors:
        failures: list[dict[str, Any]] = [
            {
                "kind": f.kind,
                "reason": f.reason,
                "id": f.id,
                "version": f.version,
                "queue": f.queue,
                "currentVersion": f.current_version,
                "message": f.describe(),
            }
            for f in exc.failures
        ]
        failures += [
            {
                "kind": f.kind,
                "reason": f.reason,
                "namespace": f.namespace,
                "id": f.id,
                "key": f.key,
                "version": f.version,
                "currentVersion": f.current_version,
                "message": f.describe(),
            }
            for f in exc.doc_failures
        ]
        return report("dependency", str(exc), EXIT_DEPENDENCY, failures=failures)
    print("entroq-redis: dependency conflict, nothing was changed:", file=sys.stderr)
    for failure in exc.failures:
        print(f"  {failure.describe()}", file=sys.stderr)
        if failure.kind == "CLAIM":
            print(
                "  (another claimant holds it: act as that claimant with --claimant ID, or use --force)",
                file=sys.stderr,
            )
    for doc_failure in exc.doc_failures:
        print(f"  {doc_failure.describe()}", file=sys.stderr)
        if doc_failure.kind == "CLAIM":
            # The doc commands have no --force.
            print("  (another claimant holds it: act as that claimant with --claimant ID)", file=sys.stderr)
    if not exc.failures and not exc.doc_failures:
        print(f"  {exc}", file=sys.stderr)
    return EXIT_DEPENDENCY


Handler = Callable[[argparse.Namespace], int]


def reports_errors(handler: Handler) -> Handler:
    """Wraps a command handler: an exception becomes a message on stderr and its exit code."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BaseException as exc:
            return exit_code_for(exc)

    return wrapper


def run_client(args: argparse.Namespace, body: Body) -> int:
    """Connects as the common options say and runs ``body`` under trio."""

    async def main() -> int:
        async with connect(
            connection_url(args), namespace=args.namespace, token=args.token, claimant_id=claimant_for(args)
        ) as eq:
            return await body(eq)

    return trio.run(main)
