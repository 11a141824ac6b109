"""Runs a command's async body under trio and turns its outcome into an exit code."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable

import trio

from .._client import EntroQ
from .._connect import connect
from .._errors import (
    ClaimTimeoutError,
    DependencyError,
    EntroQError,
    InvalidArgumentError,
)
from . import EXIT_DEPENDENCY, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_USAGE
from ._lookup import DocNotFoundError, TaskNotFoundError
from ._options import UsageError

Body = Callable[[EntroQ], Awaitable[int]]


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside task-group wrappers (trio groups even a single exception)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        if len(leaves) != 1:
            return exc
        exc = leaves[0]
    return exc


def error(message: str) -> None:
    print(f"entroq-redis: {message}", file=sys.stderr)


def exit_code_for(exc: BaseException) -> int:
    """Reports ``exc`` on stderr and returns the exit code it stands for."""
    exc = _leaf(exc)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, DependencyError):
        error("dependency conflict, nothing was changed:")
        for failure in exc.failures:
            print(f"  {failure.describe()}", file=sys.stderr)
        for doc_failure in exc.doc_failures:
            print(f"  {doc_failure.describe()}", file=sys.stderr)
        if not exc.failures and not exc.doc_failures:
            print(f"  {exc}", file=sys.stderr)
        return EXIT_DEPENDENCY
    if isinstance(exc, TaskNotFoundError | DocNotFoundError):
        error(str(exc))
        return EXIT_DEPENDENCY
    if isinstance(exc, ClaimTimeoutError):
        error(str(exc))
        return EXIT_NOTHING
    if isinstance(exc, UsageError | InvalidArgumentError):
        error(str(exc))
        return EXIT_USAGE
    if isinstance(exc, EntroQError | OSError | ValueError | NotImplementedError):
        error(str(exc) or type(exc).__name__)
        return EXIT_ERROR
    raise exc


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
            args.url, namespace=args.namespace, token=args.token, claimant_id=args.claimant
        ) as eq:
            return await body(eq)

    return trio.run(main)
