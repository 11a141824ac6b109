"""``entroq-redis top``: a live, refreshing table of queue stats."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from .._client import EntroQ
from .._masked_url import masked_url
from .._types import QueueStats
from . import EXIT_OK
from ._options import client_parent, duration_ms
from ._output import iso, print_json, stats_json, table
from ._qs import add_queue_filters
from ._run import reports_errors, run_client

CLEAR_SCREEN = "\x1b[H\x1b[2J"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "top",
        parents=[client_parent()],
        help="watch queue stats live",
        description="Show queue stats, refreshed every --interval, with how fast each queue's task "
        "count changes. Ctrl-C quits. With --json, prints one JSON object per refresh (JSON lines).",
    )
    add_queue_filters(parser)
    parser.add_argument(
        "--interval",
        "-i",
        type=duration_ms,
        default=1_000,
        metavar="DURATION",
        help="refresh every DURATION (1s)",
    )
    parser.add_argument(
        "--iterations", type=int, default=0, metavar="N", help="stop after N refreshes (default: never)"
    )
    parser.set_defaults(handler=run)


def render(url: str, now_ms: int, stats: list[QueueStats], rates: dict[str, float]) -> str:
    rows = [
        [
            s.name,
            s.num_tasks,
            s.num_available,
            s.num_claimed,
            s.num_future,
            s.max_claims,
            f"{rates.get(s.name, 0.0):+.1f}",
        ]
        for s in stats
    ]
    headers = ["QUEUE", "TASKS", "AVAILABLE", "CLAIMED", "FUTURE", "MAX CLAIMS", "TASKS/S"]
    title = f"entroq-redis top  {url}  store time {iso(now_ms)}  {len(stats)} queues"
    return title + "\n\n" + (table(headers, rows, right=(1, 2, 3, 4, 5, 6)) if rows else "(no tasks)")


@reports_errors
def run(args: argparse.Namespace) -> int:
    live = sys.stdout.isatty() and not args.json

    async def body(eq: EntroQ) -> int:
        previous: tuple[int, dict[str, int]] | None = None
        refreshes = 0
        while True:
            stats = await eq.queue_stats(args.prefix, args.exact, args.limit)
            now = await eq.time()
            sizes = {s.name: s.num_tasks for s in stats}
            rates: dict[str, float] = {}
            if previous is not None and now > previous[0]:
                elapsed_s = (now - previous[0]) / 1000
                for name in sizes.keys() | previous[1].keys():
                    rates[name] = (sizes.get(name, 0) - previous[1].get(name, 0)) / elapsed_s
            previous = (now, sizes)
            if args.json:
                print_json(
                    {
                        "time_ms": now,
                        "queues": [stats_json(s) | {"tasks_per_s": rates.get(s.name, 0.0)} for s in stats],
                    }
                )
            else:
                screen = render(masked_url(args.url), now, stats, rates)
                print((CLEAR_SCREEN if live else "") + screen + ("" if live else "\n"), flush=True)
            refreshes += 1
            if args.iterations and refreshes >= args.iterations:
                return EXIT_OK
            await trio.sleep(args.interval / 1000)

    try:
        return run_client(args, body)
    except KeyboardInterrupt:
        return EXIT_OK  # the way to leave a live view
