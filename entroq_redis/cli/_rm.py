"""``entroq-redis rm``: delete tasks by ID (at a version, the current one, or forced)."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._types import TaskID
from . import EXIT_OK
from ._lookup import by_holder, find_tasks
from ._options import UsageError, add_task_option, client_parent
from ._output import print_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rm",
        parents=[client_parent()],
        help="delete tasks",
        description="Delete the tasks ID... (or -t ID, repeatable, as eqc): at --task-version N "
        "(one task), else at their current version. Fails with exit 3, deleting nothing, if a task "
        "moved on or another claimant holds it; -f/--force deletes it anyway, as its holder.",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="task ID")
    add_task_option(parser, what="task ID, as eqc's -t", repeatable=True)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--task-version", type=int, metavar="N", help="delete only at version N")
    which.add_argument(
        "--force",
        "-f",
        action="store_true",
        help="delete the current version, even if another claimant holds it",
    )
    parser.set_defaults(handler=run)


@reports_errors
def run(args: argparse.Namespace) -> int:
    ids = [*args.ids, *args.task_option]
    if not ids:
        raise UsageError("name the tasks: rm ID... or rm -t ID")
    if args.task_version is not None and len(ids) > 1:
        raise UsageError("--task-version names one task's version; give one ID")

    async def body(eq: EntroQ) -> int:
        deleted: list[TaskID] = []
        if args.task_version is not None:
            task_id = TaskID(ids[0], args.task_version)
            await eq.modify(deletes=[task_id])
            deleted.append(task_id)
        else:
            tasks = await find_tasks(eq, ids, omit_values=True)
            groups = by_holder(eq, tasks, await eq.time()) if args.force else {None: tasks}
            for holder, group in groups.items():
                task_ids = [t.as_id() for t in group]
                await eq.modify(deletes=task_ids, unsafe_claimant_id=holder)
                deleted += task_ids
        if args.json:
            print_json({"deleted": [{"id": d.id, "version": d.version, "queue": d.queue} for d in deleted]})
        else:
            for d in deleted:
                print(f"deleted {d.id} v{d.version}" + (f" from {d.queue}" if d.queue else ""))
        return EXIT_OK

    return run_client(args, body)
