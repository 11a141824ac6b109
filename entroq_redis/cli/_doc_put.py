"""``entroq-redis doc-put``: insert a doc, or (with --id and --doc-version) change one."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._doc_types import DocChange, DocData
from . import EXIT_OK
from ._lookup import DocNotFoundError
from ._options import UsageError, add_arrival_options, client_parent, read_value
from ._output import doc_json, docs_table, print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doc-put",
        parents=[client_parent()],
        help="insert or change a doc",
        description="Insert a doc into the doc namespace NAMESPACE with primary key KEY, or, with --id "
        "and --doc-version, change that version of the doc (fails with exit 3 if it moved on, or if it or "
        "its key's doc set is held by another claimant). The content comes from the CONTENT argument, "
        "a file, or standard input (-F -); a change keeps the content and secondary key not given. "
        "Prints the doc written.",
    )
    parser.add_argument(
        "doc_namespace",
        metavar="DOC_NAMESPACE",
        help="doc namespace (not --namespace, the key namespace holding tasks and docs)",
    )
    parser.add_argument("key", help="primary key (a change moves the doc to it)")
    parser.add_argument("value", nargs="?", metavar="CONTENT", help="the content as text (or use --file)")
    parser.add_argument(
        "--file", "-F", metavar="PATH", help="read the content from PATH ('-' = standard input), as bytes"
    )
    parser.add_argument("--secondary-key", metavar="KEY", help="secondary key (default: empty)")
    parser.add_argument(
        "--id", "-t", help="the doc's ID: a new doc's (default: a random UUID), or the doc to change"
    )
    parser.add_argument(
        "--doc-version",
        type=int,
        metavar="N",
        help="change the doc --id at version N instead of inserting",
    )
    add_arrival_options(parser, "hold the doc (as this claimant) until")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.doc_version is not None and not args.id:
        raise UsageError("--doc-version changes a doc: name it with --id")
    content = read_value(args)

    async def body(eq: EntroQ) -> int:
        if args.doc_version is None:
            doc = DocData(
                args.doc_namespace,
                id=args.id,
                key=args.key,
                secondary_key=args.secondary_key or "",
                content=content or b"",
                at=args.at,
                delay_ms=args.delay,
            )
            [written] = (await eq.modify(doc_inserts=[doc])).inserted_docs
        else:
            found = await eq.docs(args.doc_namespace, ids=[args.id])
            if not found:
                raise DocNotFoundError(f"no doc {args.id} in doc namespace {args.doc_namespace!r}")
            current = found[0]
            change = DocChange(
                args.doc_namespace,
                args.id,
                # The store checks the version: a doc that moved on since is a conflict (exit 3).
                args.doc_version,
                key=args.key,
                secondary_key=current.secondary_key if args.secondary_key is None else args.secondary_key,
                content=current.content if content is None else content,
                at=args.at,
                delay_ms=args.delay,
            )
            [written] = (await eq.modify(doc_changes=[change])).changed_docs
        if args.json:
            print_json(doc_json(written))
        else:
            print(docs_table([written], await eq.time()))
        return EXIT_OK

    return run_client(args, body)
