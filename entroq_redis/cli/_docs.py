"""``entroq-redis docs``: list the docs of a doc namespace, by key range or by ID."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._options import UsageError, client_parent
from ._output import doc_json, docs_table, print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "docs",
        parents=[client_parent()],
        help="list docs",
        description="List the docs of the doc namespace NAMESPACE whose key is in [--key-start, "
        "--key-end) (default: all), sorted by key then secondary key; or those with the given --id, "
        "in the order given (missing ones are left out; the key range and --limit then do not apply).",
    )
    parser.add_argument(
        "doc_namespace",
        metavar="DOC_NAMESPACE",
        help="doc namespace to list (not --namespace, the key namespace holding tasks and docs)",
    )
    parser.add_argument(
        "--id", "-t", dest="ids", action="append", default=[], metavar="ID", help="doc ID (repeatable)"
    )
    parser.add_argument("--key", "-k", help="only docs whose key is exactly KEY")
    parser.add_argument("--key-start", default="", metavar="KEY", help="first key (inclusive)")
    parser.add_argument(
        "--key-end", "-e", default="", metavar="KEY", help="end of the range (exclusive; default: none)"
    )
    parser.add_argument("--limit", "-n", type=int, default=0, help="list at most N docs (default: all)")
    parser.add_argument("--omit-values", "-V", action="store_true", help="do not fetch contents")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError("--limit must not be negative")
    key_start, key_end = args.key_start, args.key_end
    if args.key is not None:
        if key_start or key_end:
            raise UsageError("--key cannot be combined with --key-start or --key-end")
        # [KEY, KEY + NUL) holds exactly KEY: no string sorts between the two.
        key_start, key_end = args.key, args.key + "\x00"
    if args.ids and (key_start or key_end or args.limit):
        raise UsageError("--id lists those docs; it cannot be combined with a key range or --limit")

    async def body(eq: EntroQ) -> int:
        docs = await eq.docs(
            args.doc_namespace,
            ids=args.ids,
            key_start=key_start,
            key_end=key_end,
            limit=args.limit,
            omit_values=args.omit_values,
        )
        if args.json:
            print_json([doc_json(d, omit_value=args.omit_values) for d in docs])
        elif docs:
            print(docs_table(docs, await eq.time(), show_values=not args.omit_values))
        else:
            print(_nothing_found(args, bool(key_start or key_end)))
        return EXIT_OK

    return run_client(args, body)


def _nothing_found(args: argparse.Namespace, key_range: bool) -> str:
    """What an empty listing says (as ``qs`` and ``ts`` do): nothing at all, or nothing that matches."""
    if args.ids:
        return "no such docs"
    return f"no docs in {args.doc_namespace}" + (" match" if key_range else "")
