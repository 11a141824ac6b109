"""``entroq-redis qs``: queues with their stats."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._options import client_parent
from ._output import print_json, stats_json, stats_table
from ._run import reports_errors, run_client


def add_queue_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        "-p",
        action="append",
        default=[],
        help="queues whose name starts with PREFIX (repeatable)",
    )
    parser.add_argument(
        "--queue",
        "-q",
        "--exact",
        dest="exact",
        action="append",
        default=[],
        metavar="QUEUE",
        help="this queue, exactly (repeatable; eqc's -q)",
    )
    parser.add_argument("--limit", "-n", type=int, default=0, help="at most N queues (default: all)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "qs",
        parents=[client_parent()],
        help="list queues with their stats",
        description="List non-empty queues (all, or those matching any --prefix or --exact name) with "
        "their task counts: available now, claimed, future (delayed), and the largest claims count.",
    )
    add_queue_filters(parser)
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    async def body(eq: EntroQ) -> int:
        stats = await eq.queue_stats(args.prefix, args.exact, args.limit)
        if args.json:
            print_json([stats_json(s) for s in stats])
        elif stats:
            print(stats_table(stats))
        else:
            print("no queues" + (" match" if args.prefix or args.exact else ""))
        return EXIT_OK

    return run_client(args, body)
