"""``entroq-redis ts``: list tasks of a queue, or tasks by ID."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._options import UsageError, add_queue_option, add_task_option, client_parent, one_queue
from ._output import print_json, task_json, tasks_table
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ts",
        parents=[client_parent()],
        help="list tasks",
        description="List the tasks of QUEUE (or -q QUEUE, as eqc) in arrival order, or the tasks "
        "with the given -t/--task IDs (from any queue, or only QUEUE if given).",
    )
    parser.add_argument("queue", nargs="?", default="", help="queue to list (or -q)")
    add_queue_option(parser, what="queue to list, as eqc's -q")
    add_task_option(parser, what="task ID, as eqc's -t", repeatable=True)
    parser.add_argument("--limit", "-n", type=int, default=0, help="list at most N tasks (default: all)")
    parser.add_argument("--omit-values", "-V", action="store_true", help="do not fetch values")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    args.queue = one_queue(args, args.queue, required=False)
    args.ids = args.task_option
    if not args.queue and not args.ids:
        raise UsageError("name a queue (QUEUE or -q QUEUE) or at least one -t/--task ID")

    async def body(eq: EntroQ) -> int:
        tasks = await eq.tasks(args.queue, ids=args.ids, limit=args.limit, omit_values=args.omit_values)
        if args.json:
            print_json([task_json(t, omit_value=args.omit_values) for t in tasks])
        elif tasks:
            print(tasks_table(tasks, await eq.time(), show_values=not args.omit_values))
        else:
            print(f"no tasks in {args.queue}" if args.queue and not args.ids else "no such tasks")
        return EXIT_OK

    return run_client(args, body)
