"""``entroq-redis ins``: insert a task (or one per value, or one per input line)."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import EntroQ
from .._types import TaskData
from . import EXIT_OK
from ._options import (
    UsageError,
    add_arrival_options,
    add_queue_option,
    add_value_options,
    client_parent,
    read_file_value,
)
from ._output import print_json, task_json, tasks_table
from ._run import reports_errors, run_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ins",
        parents=[client_parent()],
        help="insert a task",
        description="Insert a task into QUEUE (or -q QUEUE, as eqc). Each VALUE (after the queue, or "
        "-v VALUE, repeatable) becomes a task; so does the content of -F/--file (standard input with "
        "-F -); with --lines, every line of them becomes its own task. No value at all inserts one "
        "task with an empty value. All go in one atomic modify. Prints the inserted tasks.",
    )
    parser.add_argument("words", nargs="*", metavar="QUEUE [VALUE...]", help="queue, then values")
    add_queue_option(parser, what="queue to insert into, as eqc's -q (then every positional is a value)")
    add_value_options(parser, repeatable=True)
    parser.add_argument("--lines", action="store_true", help="insert one task per line of the values")
    parser.add_argument("--id", help="choose the task ID (at most 64 bytes; default: a random UUID)")
    add_arrival_options(parser, "make the task available")
    parser.set_defaults(handler=run)


def queue_and_values(args: argparse.Namespace) -> tuple[str, list[bytes]]:
    words: list[str] = list(args.words)
    queue = args.queue_option
    if queue is None:
        if not words:
            raise UsageError("name the queue: ins QUEUE [VALUE...] or ins -q QUEUE [-v VALUE]...")
        queue = words.pop(0)
    values = [w.encode("utf-8", "surrogateescape") for w in [*words, *args.value]]
    if args.file is not None:
        values.append(read_file_value(args.file))
    if args.lines:
        values = [line for value in values for line in value.splitlines()]
    elif not values:
        values = [b""]
    if not values:
        raise UsageError("--lines found no lines: nothing to insert")
    return queue, values


@reports_errors
def run(args: argparse.Namespace) -> int:
    queue, values = queue_and_values(args)
    if args.id and len(values) != 1:
        raise UsageError("--id names one task; it cannot be used with several values or --lines")
    inserts = [TaskData(queue, at=args.at, value=v, id=args.id, delay_ms=args.delay) for v in values]

    async def body(eq: EntroQ) -> int:
        inserted, _ = await eq.modify(inserts=inserts)
        if args.json:
            print_json([task_json(t) for t in inserted])
        else:
            print(tasks_table(inserted, await eq.time()))
        return EXIT_OK

    return run_client(args, body)
