"""``entroq-redis rm``: delete tasks by ID and version."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._types import TaskID
from . import EXIT_OK
from ._lookup import by_holder, find_tasks
from ._options import UsageError, client_parent
from ._output import print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rm",
        parents=[client_parent()],
        help="delete tasks",
        description="Delete the task ID at --version (fails with exit 3 if it moved on or someone else "
        "holds it), or with --force whatever its current version and holder. Several IDs need --force.",
    )
    parser.add_argument("ids", nargs="+", metavar="ID", help="task ID")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", "-v", type=int, help="the version to delete")
    which.add_argument(
        "--force", action="store_true", help="delete the current version, even if another claimant holds it"
    )
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.version is not None and len(args.ids) > 1:
        raise UsageError("--version names one task; use --force for several")

    async def body(eq: EntroQ) -> int:
        deleted: list[TaskID] = []
        if args.force:
            tasks = await find_tasks(eq, args.ids, omit_values=True)
            for holder, group in by_holder(eq, tasks, await eq.time()).items():
                ids = [t.as_id() for t in group]
                await eq.modify(deletes=ids, unsafe_claimant_id=holder)
                deleted += ids
        else:
            task_id = TaskID(args.ids[0], args.version)
            await eq.modify(deletes=[task_id])
            deleted.append(task_id)
        if args.json:
            print_json({"deleted": [{"id": d.id, "version": d.version, "queue": d.queue} for d in deleted]})
        else:
            for d in deleted:
                print(f"deleted {d.id} v{d.version}" + (f" from {d.queue}" if d.queue else ""))
        return EXIT_OK

    return run_client(args, body)
