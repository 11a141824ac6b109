"""``entroq-redis requeue``: move quarantined tasks back to their inbox for another try."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._errors import DependencyError
from .._types import Task
from . import EXIT_DEPENDENCY, EXIT_OK
from ._lookup import holder
from ._options import UsageError, add_queue_option, add_task_option, client_parent, one_queue
from ._output import last_line, plural, print_json, shorten, table, task_json
from ._run import reports_errors, run_client

ERR_SUFFIX = "/err"
# Tasks per modify: each is one atomic step, so a huge error queue is not one giant script.
BATCH = 500


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "requeue",
        parents=[client_parent()],
        help="move tasks from an error queue back to its inbox",
        description="Move the tasks of ERROR_QUEUE (default inbox: its name without the '/err' "
        "suffix, as the worker names it) to --to, available now, with attempt and claims reset to 0 "
        "and err cleared. Tasks someone holds are skipped (exit 3). --dry-run shows what would move.",
    )
    parser.add_argument("queue", nargs="?", metavar="ERROR_QUEUE", help="the quarantine queue, e.g. jobs/err")
    add_queue_option(parser, what="the quarantine queue (instead of ERROR_QUEUE)")
    parser.add_argument(
        "--to",
        "-Q",
        "--queue-to",
        dest="to",
        metavar="QUEUE",
        help="destination (default: ERROR_QUEUE without /err)",
    )
    add_task_option(parser, what="only this task", repeatable=True)
    parser.add_argument("--limit", "-n", type=int, default=0, help="move at most N tasks")
    parser.add_argument("--dry-run", action="store_true", help="only show what would move")
    parser.set_defaults(handler=run)


def inbox_for(error_queue: str) -> str:
    if error_queue.endswith(ERR_SUFFIX) and len(error_queue) > len(ERR_SUFFIX):
        return error_queue[: -len(ERR_SUFFIX)]
    raise UsageError(f"cannot tell the inbox of {error_queue!r} (no {ERR_SUFFIX} suffix): give --to")


async def move(eq: EntroQ, tasks: list[Task], inbox: str) -> tuple[list[Task], dict[str, str]]:
    """Moves tasks in batches; a task that conflicts is skipped, the rest of its batch still moves."""
    moved: list[Task] = []
    skipped: dict[str, str] = {}
    for start in range(0, len(tasks), BATCH):
        batch = tasks[start : start + BATCH]
        while batch:
            # Claims are reset too: a worker's max_claims would otherwise quarantine it again.
            changes = [
                t.as_change(queue=inbox, at=None, attempt=0, err="", mode="reset_claims") for t in batch
            ]
            try:
                _, changed = await eq.modify(changes=changes)
            except DependencyError as exc:
                for failure in exc.failures:
                    skipped[failure.id] = failure.describe()
                remaining = [t for t in batch if t.id not in skipped]
                if len(remaining) == len(batch):
                    raise  # the failures name none of our tasks: nothing to skip, so stop
                batch = remaining
                continue
            moved += changed
            break
    return moved, skipped


@reports_errors
def run(args: argparse.Namespace) -> int:
    args.queue = one_queue(args, args.queue)
    args.ids = args.task_option
    inbox = args.to or inbox_for(args.queue)

    async def body(eq: EntroQ) -> int:
        tasks = await eq.tasks(args.queue, ids=args.ids, limit=args.limit)
        now = await eq.time()
        skipped = {t.id: "held by claimant " + t.claimant for t in tasks if holder(eq, t, now) is not None}
        tasks = [t for t in tasks if t.id not in skipped]
        if args.dry_run:
            moved = tasks
        else:
            moved, conflicts = await move(eq, tasks, inbox)
            skipped.update(conflicts)
        before = {t.id: t for t in tasks}
        if args.json:
            print_json(
                {
                    "from": args.queue,
                    "to": inbox,
                    "dry_run": args.dry_run,
                    "moved": [task_json(t) for t in moved],
                    "skipped": [{"id": i, "reason": r} for i, r in skipped.items()],
                }
            )
        else:
            rows = [
                [t.id, before[t.id].attempt, shorten(last_line(before[t.id].err), 50) or "-"] for t in moved
            ]
            if rows:
                print(table(["ID", "ATTEMPTS", "LAST ERR"], rows, right=(1,)))
            verb = "would move" if args.dry_run else "moved"
            print(f"{verb} {plural(len(moved), 'task')} from {args.queue} to {inbox}")
            for task_id, reason in skipped.items():
                print(f"skipped {task_id}: {reason}")
        return EXIT_DEPENDENCY if skipped else EXIT_OK

    return run_client(args, body)
