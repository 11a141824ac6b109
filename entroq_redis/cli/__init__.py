"""The ``entroq-redis`` command line.

Each command lives in its own module exposing ``register(subparsers)``, which adds an
argparse sub-parser whose ``handler`` default is an ``(args) -> int`` function (the exit
code). Exit codes: 0 ok, 1 error, 2 usage, 3 dependency conflict (tasks or docs) or not
found, 4 nothing to claim, 130 interrupted (Ctrl-C), 141 standard output closed early
(``| head``: what a shell reports for a program killed by SIGPIPE, said without a message).

The global options (``--url``, ``-s``, ``--json``...) are the top-level parser's, and every
client command takes them again after its name (``_options.client_parent``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._extras import extra_of, install_command
from . import _serve
from ._options import add_global_options, json_requested
from ._parser import CliParser

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DEPENDENCY = 3
EXIT_NOTHING = 4
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_PIPE_CLOSED = 141  # stdout's reader went away, as shells report SIGPIPE

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


def build_parser(*, json_errors: bool = False) -> CliParser:
    parser = CliParser(
        prog="entroq-redis",
        description="EntroQ's task queue on Redis/Valkey: run the service, or work with tasks. "
        "Global options go before or after the command.",
        json_errors=json_errors,
        # Abbreviations would make the top level claim a command's own option (--to: --token?).
        allow_abbrev=False,
    )
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    # Sub-parsers inherit how the top level reports usage errors.
    for sub in subparsers.choices.values():
        sub.json_errors = json_errors
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from . import _run

    words = list(sys.argv[1:] if argv is None else argv)
    as_json = json_requested(words)
    _run.guard_stdout()
    parser = build_parser(json_errors=as_json)
    try:
        args = parser.parse_args(words)
    except _run.StdoutClosedError:  # --help or --version into a closed pipe
        return _run.stdout_closed()
    _run.set_json_errors(bool(getattr(args, "json", False)))
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
    except ModuleNotFoundError as exc:
        # A package of an extra that is not installed, past the commands' own checks: still
        # one line naming the install command, not a traceback.
        extra = extra_of(exc)
        if extra is None:
            raise
        print(
            f"entroq-redis {args.command}: {exc.name} is missing: {install_command(extra)}", file=sys.stderr
        )
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
