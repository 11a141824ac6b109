"""The ``entroq-redis`` command line.

Each command lives in its own module exposing ``register(subparsers)``, which adds an
argparse sub-parser whose ``handler`` default is an ``(args) -> int`` function (the exit
code). Exit codes: 0 ok, 1 error, 2 usage, 3 dependency conflict (tasks or docs), 4 nothing to claim,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _serve

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DEPENDENCY = 3
EXIT_NOTHING = 4
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

# Imported after the exit codes, which these command modules use.
from . import (  # noqa: E402
    _claim,
    _clear,
    _doc_put,
    _doc_rm,
    _docs,
    _ins,
    _mod,
    _ns,
    _qs,
    _requeue,
    _rm,
    _time,
    _top,
    _tryclaimid,
    _ts,
    _worker,
)

COMMAND_MODULES = [
    _serve,
    _ins,
    _claim,
    _tryclaimid,
    _ts,
    _qs,
    _rm,
    _mod,
    _clear,
    _time,
    _requeue,
    _top,
    _worker,
    _docs,
    _doc_put,
    _doc_rm,
    _ns,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entroq-redis",
        description="EntroQ's task queue on Redis/Valkey: run the service, or work with tasks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
