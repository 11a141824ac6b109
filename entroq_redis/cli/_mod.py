"""``entroq-redis mod``: change a task's queue, value or arrival."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .._client import EntroQ
from . import EXIT_OK
from ._lookup import find_tasks, holder
from ._options import (
    UsageError,
    add_arrival_options,
    add_task_option,
    add_value_options,
    client_parent,
    read_value,
)
from ._output import print_json, task_details, task_json
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mod",
        parents=[client_parent()],
        help="change a task's queue, value or arrival",
        description="Change the task ID (or -t ID, as eqc): move it (-Q/--queue-to), replace its value "
        "(-v/--value or -F/--file), set when it is available (--at, --delay, --now), reset its attempt "
        "and err (-r/--reset). Everything not named is kept. Applies to --task-version if given, else "
        "to the current version; a task another claimant holds needs -f/--force.",
    )
    parser.add_argument("id", nargs="?", help="task ID (or -t)")
    add_task_option(parser, what="task ID, as eqc's -t", repeatable=False)
    parser.add_argument(
        "--task-version", type=int, metavar="N", help="fail (exit 3) unless the task is at version N"
    )
    parser.add_argument(
        "--force", "-f", action="store_true", help="change it even if another claimant holds it"
    )
    parser.add_argument("--queue-to", "-Q", "--to", dest="queue_to", metavar="QUEUE", help="move it to QUEUE")
    add_value_options(parser, repeatable=False)
    add_arrival_options(parser, "make it available")
    parser.add_argument("--now", action="store_true", help="make it available now (releases a claim)")
    parser.add_argument("--reset", "-r", action="store_true", help="set attempt to 0 and clear err")
    parser.set_defaults(handler=run)


def task_id(args: argparse.Namespace) -> str:
    if args.id and args.task_option and args.id != args.task_option:
        raise UsageError(f"two task IDs named: {args.id!r} and -t {args.task_option!r}")
    found = args.id or args.task_option
    if not found:
        raise UsageError("name the task: mod ID or mod -t ID")
    return str(found)


@reports_errors
def run(args: argparse.Namespace) -> int:
    the_id = task_id(args)
    if args.now and (args.at is not None or args.delay is not None):
        raise UsageError("--now cannot be combined with --at or --delay")
    value = read_value(args)
    changes: dict[str, Any] = {}
    if args.queue_to is not None:
        changes["queue"] = args.queue_to
    if value is not None:
        changes["value"] = value
    if args.now:
        changes["at"] = None
    elif args.at is not None:
        changes["at"] = args.at
    elif args.delay is not None:
        changes["delay_ms"] = args.delay
    if args.reset:
        changes.update(attempt=0, err="")
    if not changes:
        raise UsageError("nothing to change: give -Q/--queue-to, -v/-F, --at/--delay/--now or -r/--reset")

    async def body(eq: EntroQ) -> int:
        [task] = await find_tasks(eq, [the_id])
        change = task.as_change(**changes)
        if args.task_version is not None:
            # The store checks it: a task that moved on since is a conflict (exit 3).
            change = dataclasses.replace(change, version=args.task_version)
        as_claimant = holder(eq, task, await eq.time()) if args.force else None
        _, [changed] = await eq.modify(changes=[change], unsafe_claimant_id=as_claimant)
        if args.json:
            print_json(task_json(changed))
        else:
            print(task_details(changed, await eq.time()))
        return EXIT_OK

    return run_client(args, body)
