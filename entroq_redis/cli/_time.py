"""``entroq-redis time``: the store's clock, which every lease and arrival is measured on."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._options import client_parent
from ._output import iso, print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "time",
        parents=[client_parent()],
        help="print the store's time",
        description="Print the store's clock (UTC, and ms since the epoch): the clock that decides "
        "when leases run out and delayed tasks become available.",
    )
    parser.add_argument("--millis", "-m", action="store_true", help="print only ms since the epoch")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    async def body(eq: EntroQ) -> int:
        now = await eq.time()
        if args.json:
            print_json({"time_ms": now, "time": iso(now)})
        elif args.millis:
            print(now)
        else:
            print(f"{iso(now)}  ({now} ms since the epoch)")
        return EXIT_OK

    return run_client(args, body)
