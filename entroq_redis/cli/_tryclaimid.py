"""``entroq-redis tryclaimid``: claim one given task by ID if it is available (``eqc tryclaimid``)."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_NOTHING, EXIT_OK
from ._options import client_parent, duration_ms
from ._output import iso, print_json, task_details, task_json
from ._run import error, reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tryclaimid",
        parents=[client_parent()],
        help="claim one given task by ID if it is available now",
        description="Claim the task --task in --queue for --duration if it is available now (its arrival "
        "has come: never claimed, delayed until now, or its lease ran out) and print it, as EntroQ's "
        "`eqc tryclaimid` does. A claim like any other: the version moves, so whoever held the task "
        "before can no longer commit it. Exits with 4 when the task is leased or delayed, or not in "
        "the queue.",
    )
    # eqc's flags and defaults (-q, -t, -d 30 seconds), so scripts written for eqc read the same.
    parser.add_argument("--queue", "-q", required=True, help="the queue holding the task")
    # --id as in ts, rm and mod: -t is always --id, a task's or (doc commands) a doc's.
    parser.add_argument(
        "--task", "-t", "--id", required=True, metavar="ID", help="the ID of the task to claim"
    )
    parser.add_argument(
        "--duration",
        "-d",
        type=duration_ms,
        default=30_000,
        metavar="DURATION",
        help="lease: how long the task stays claimed (default 30s; a bare number is seconds, as in eqc)",
    )
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    async def body(eq: EntroQ) -> int:
        task = await eq.try_claim_id(args.queue, args.task, args.duration)
        if task is None:
            # Only to say why: the claim above was the atomic part.
            found = await eq.tasks(args.queue, ids=[args.task], omit_values=True)
            if not found:
                message = f"task {args.task} not found in queue {args.queue}"
            else:
                held = f" by {found[0].claimant}" if found[0].claimant else ""
                message = (
                    f"task {args.task} is not available: leased or delayed{held} until {iso(found[0].at_ms)}"
                )
            return error(message, EXIT_NOTHING, "nothing_claimed")
        if args.json:
            print_json(task_json(task))
        else:
            print(task_details(task, await eq.time()))
        return EXIT_OK

    return run_client(args, body)
