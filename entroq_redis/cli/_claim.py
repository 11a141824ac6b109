"""``entroq-redis claim``: claim a task, waiting for one or not."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_NOTHING, EXIT_OK
from ._options import UsageError, add_queue_option, client_parent, duration_ms
from ._output import print_json, task_details, task_json
from ._run import error, reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "claim",
        parents=[client_parent()],
        help="claim a task from one or more queues",
        description="Claim a random available task from one of the QUEUEs for --duration and print it. "
        "Waits for a task unless --try is given. Exits with 4 when nothing was claimed "
        "(--try found nothing, or --timeout passed).",
    )
    parser.add_argument("queues", nargs="*", metavar="QUEUE", help="queues to claim from (or -q)")
    add_queue_option(parser, what="a queue to claim from, as eqc's -q", repeatable=True)
    parser.add_argument(
        "--duration",
        "-d",
        type=duration_ms,
        default=30_000,
        metavar="DURATION",
        help="lease: how long the task stays claimed (default 30s)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--try", dest="try_only", action="store_true", help="do not wait; exit 4 if none")
    mode.add_argument(
        "--timeout", type=duration_ms, metavar="DURATION", help="wait at most DURATION (default: forever)"
    )
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    args.queues = [*args.queues, *args.queue_option]
    if not args.queues:
        raise UsageError("name at least one queue (QUEUE... or -q QUEUE)")

    async def body(eq: EntroQ) -> int:
        if args.try_only:
            task = await eq.try_claim(args.queues, args.duration)
            if task is None:
                return error(
                    f"no task available in {', '.join(args.queues)}", EXIT_NOTHING, "nothing_claimed"
                )
        else:
            timeout_s = args.timeout / 1000 if args.timeout is not None else None
            task = await eq.claim(args.queues, args.duration, timeout_s=timeout_s)
        if args.json:
            print_json(task_json(task))
        else:
            print(task_details(task, await eq.time()))
        return EXIT_OK

    return run_client(args, body)
