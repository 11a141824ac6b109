"""``entroq-redis clear``: delete every task of a queue."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from .._client import EntroQ
from .._contract import MAX_PAGE
from .._errors import DependencyError
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from ._lookup import by_holder
from ._options import add_queue_option, client_parent, one_queue
from ._output import plural, print_json
from ._run import error, reports_errors, run_client

# Deletes that keep failing mean workers are changing the queue as fast as we delete.
MAX_CONFLICT_ROUNDS = 20


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clear",
        parents=[client_parent()],
        help="delete every task of a queue",
        description="Delete every task in QUEUE, claimed ones included (as their holder, like "
        "eqc clear --force). Asks for confirmation unless --yes is given; refuses without --yes "
        "when standard input is not a terminal.",
    )
    parser.add_argument("queue", nargs="?", help="queue to empty (or -q)")
    add_queue_option(parser, what="queue to empty, as eqc's -q")
    parser.add_argument("--yes", "-y", "--force", "-f", action="store_true", help="do not ask (eqc: -f)")
    parser.set_defaults(handler=run)


async def refusal(queue: str, count: int) -> int | None:
    """None if the user confirms; else the exit code (2 without a terminal to ask, 1 if declined)."""
    if not sys.stdin.isatty():
        return error(
            f"refusing to delete {count} tasks from {queue!r} without --yes (stdin is not a terminal)",
            EXIT_USAGE,
            "usage",
        )
    answer = await trio.to_thread.run_sync(input, f"Delete all {count} tasks in {queue!r}? [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return None
    return error("cancelled; nothing deleted", EXIT_ERROR, "cancelled")


async def delete_all(eq: EntroQ, queue: str) -> int:
    """Deletes page after page until the queue is empty; returns how many were deleted."""
    deleted = conflicts = 0
    while page := await eq.tasks(queue, limit=MAX_PAGE, omit_values=True):
        try:
            for holder, group in by_holder(eq, page, await eq.time()).items():
                await eq.modify(deletes=[t.as_id() for t in group], unsafe_claimant_id=holder)
                deleted += len(group)
        except DependencyError:
            # A worker changed a task between listing and deleting: list again.
            conflicts += 1
            if conflicts >= MAX_CONFLICT_ROUNDS:
                raise
    return deleted


@reports_errors
def run(args: argparse.Namespace) -> int:
    args.queue = one_queue(args, args.queue)

    async def body(eq: EntroQ) -> int:
        count = (await eq.queues(exact=[args.queue])).get(args.queue, 0)
        if count and not args.yes and (code := await refusal(args.queue, count)) is not None:
            return code
        deleted = await delete_all(eq, args.queue) if count else 0
        if args.json:
            print_json({"queue": args.queue, "deleted": deleted})
        else:
            print(f"deleted {plural(deleted, 'task')} from {args.queue}")
        return EXIT_OK

    return run_client(args, body)
