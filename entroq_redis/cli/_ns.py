"""``entroq-redis ns``: doc namespaces with their doc counts (eqc's ``ns``)."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._options import UsageError, client_parent
from ._output import namespace_stats_json, namespace_stats_table, print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ns",
        parents=[client_parent()],
        help="list doc namespaces with their stats",
        description="List the doc namespaces holding docs (all, or those matching any --prefix or "
        "--exact name) with their doc counts: all docs, and those held by a claimant now.",
    )
    parser.add_argument(
        "--prefix", "-p", action="append", default=[], help="doc namespaces starting with PREFIX (repeatable)"
    )
    parser.add_argument(
        "--exact",
        "-x",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="this doc namespace (repeatable)",
    )
    parser.add_argument("--limit", "-n", type=int, default=0, help="at most N namespaces (default: all)")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError("--limit must not be negative")

    async def body(eq: EntroQ) -> int:
        stats = await eq.namespace_stats(args.prefix, args.exact, args.limit)
        if args.json:
            print_json([namespace_stats_json(s) for s in stats])
        elif stats:
            print(namespace_stats_table(stats))
        else:
            print("no doc namespaces" + (" match" if args.prefix or args.exact else ""))
        return EXIT_OK

    return run_client(args, body)
