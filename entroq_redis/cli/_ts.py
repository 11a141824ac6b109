"""``entroq-redis ts``: list tasks of a queue, or tasks by ID."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._options import UsageError, client_parent
from ._output import print_json, task_json, tasks_table
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ts",
        parents=[client_parent()],
        help="list tasks",
        description="List the tasks of QUEUE in arrival order, or the tasks with the given --id "
        "(from any queue, or only QUEUE if given).",
    )
    parser.add_argument("queue", nargs="?", default="", help="queue to list")
    parser.add_argument(
        "--id", "-t", dest="ids", action="append", default=[], metavar="ID", help="task ID (repeatable)"
    )
    parser.add_argument("--limit", "-n", type=int, default=0, help="list at most N tasks (default: all)")
    parser.add_argument("--omit-values", "-V", action="store_true", help="do not fetch values")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if not args.queue and not args.ids:
        raise UsageError("name a queue or at least one --id")

    async def body(eq: EntroQ) -> int:
        tasks = await eq.tasks(args.queue, ids=args.ids, limit=args.limit, omit_values=args.omit_values)
        if args.json:
            print_json([task_json(t, omit_value=args.omit_values) for t in tasks])
        elif tasks:
            print(tasks_table(tasks, await eq.time(), show_values=not args.omit_values))
        return EXIT_OK

    return run_client(args, body)
