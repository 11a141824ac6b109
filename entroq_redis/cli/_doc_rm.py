"""``entroq-redis doc-rm``: delete a doc by namespace, ID and version."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._doc_types import DocID
from . import EXIT_OK
from ._options import client_parent
from ._output import print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doc-rm",
        parents=[client_parent()],
        help="delete a doc",
        description="Delete the doc ID of the doc namespace NAMESPACE at --doc-version (fails with exit 3 if "
        "it does not exist, moved on, or it or its key's doc set is held by another claimant).",
    )
    parser.add_argument(
        "doc_namespace",
        metavar="DOC_NAMESPACE",
        help="doc namespace (not --namespace, the key namespace holding tasks and docs)",
    )
    parser.add_argument("id", metavar="ID", help="doc ID")
    parser.add_argument("--doc-version", type=int, required=True, metavar="N", help="the version to delete")
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    doc_id = DocID(args.doc_namespace, args.id, args.doc_version)

    async def body(eq: EntroQ) -> int:
        await eq.modify(doc_deletes=[doc_id])
        if args.json:
            print_json(
                {"deleted": [{"namespace": doc_id.namespace, "id": doc_id.id, "version": doc_id.version}]}
            )
        else:
            print(f"deleted doc {doc_id.id} v{doc_id.version} from {doc_id.namespace}")
        return EXIT_OK

    return run_client(args, body)
