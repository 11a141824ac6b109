"""``entroq-redis ins``: insert a task (or one per input line)."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._types import TaskData
from . import EXIT_OK
from ._options import UsageError, add_arrival_options, add_value_options, client_parent, read_value
from ._output import print_json, task_json, tasks_table
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ins",
        parents=[client_parent()],
        help="insert a task",
        description="Insert a task into QUEUE. The value comes from the VALUE argument, a file, or "
        "standard input (--file -); with --lines, every line of that input becomes its own task "
        "(all inserted in one atomic modify). Prints the inserted tasks.",
    )
    parser.add_argument("queue", help="queue to insert into")
    add_value_options(parser, positional=True)
    parser.add_argument("--lines", action="store_true", help="insert one task per line of the value")
    parser.add_argument("--id", help="choose the task ID (at most 64 bytes; default: a random UUID)")
    add_arrival_options(parser, "make the task available")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.lines and args.id:
        raise UsageError("--id names one task; it cannot be used with --lines")
    value = read_value(args) or b""
    values = value.splitlines() if args.lines else [value]
    inserts = [TaskData(args.queue, at=args.at, value=v, id=args.id, delay_ms=args.delay) for v in values]

    async def body(eq: EntroQ) -> int:
        inserted, _ = await eq.modify(inserts=inserts)
        if args.json:
            print_json([task_json(t) for t in inserted])
        else:
            print(tasks_table(inserted, await eq.time()))
        return EXIT_OK

    return run_client(args, body)
