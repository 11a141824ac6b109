"""``entroq-redis worker``: run a command for each task, through :class:`entroq_redis.Worker`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
from typing import Any

import anyio
import anyio.abc
import trio

from .._client import EntroQ
from .._types import Task
from .._worker import Worker, WorkerEvent
from .._worker_outcomes import Backoff, MoveTaskError, RetryTaskError
from . import EXIT_OK
from ._options import UsageError, client_parent, duration_ms
from ._output import print_json
from ._run import reports_errors, run_client

# After SIGTERM, a command gets this long to exit before SIGKILL.
TERMINATE_GRACE_S = 3.0
# The err line recorded for a failed command ends with this much of its last stderr line.
ERR_TAIL_CHARS = 500

EPILOG = """\
The command gets the task's value on standard input and these environment variables:
  ENTROQ_TASK_ID, ENTROQ_TASK_VERSION, ENTROQ_TASK_QUEUE, ENTROQ_TASK_ATTEMPT, ENTROQ_TASK_CLAIMS

Exit status 0: the task is done (deleted). Any other status, death by a signal, or --timeout:
the attempt failed; the task is retried after a backoff, with attempt+1 and a line added to
its err ("exit status N: <last line of stderr>"); once attempt reaches --max-attempts it moves
to the error queue. A status listed in --quarantine-exit moves it there at once.

The command's output goes to this process's stderr, each line prefixed with the task ID.
This process prints one line per finished task on stdout (JSON lines with --json).
SIGINT/SIGTERM: stop claiming and let running commands finish within --grace; a second
signal (or the end of the grace period) terminates them and releases their tasks.

Example: entroq-redis worker -q jobs -c 4 --max-attempts 5 -- ./process-one.sh
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        parents=[client_parent()],
        help="run a command for each task",
        description="Claim tasks from the --queue(s) and run COMMAND for each one, renewing the "
        "task's lease while it runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--queue",
        "-q",
        dest="queues",
        action="append",
        required=True,
        metavar="QUEUE",
        help="queue to work on (repeatable)",
    )
    parser.add_argument(
        "--concurrency", "-c", type=int, metavar="N", default=1, help="commands run at once (1)"
    )
    parser.add_argument(
        "--lease",
        type=duration_ms,
        default=30_000,
        metavar="DURATION",
        help="claim lease, renewed at half (30s)",
    )
    parser.add_argument(
        "--timeout", type=duration_ms, metavar="DURATION", help="fail a command running longer"
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        default=0,
        help="quarantine after N failed attempts (0 = never)",
    )
    parser.add_argument(
        "--max-claims",
        type=int,
        metavar="N",
        default=0,
        help="quarantine, without running, a task claimed over N times",
    )
    parser.add_argument(
        "--quarantine-exit",
        type=int,
        action="append",
        default=[],
        metavar="STATUS",
        help="exit status that quarantines the task at once (repeatable)",
    )
    parser.add_argument(
        "--err-queue", default="{queue}/err", metavar="TEMPLATE", help="error queue name ({queue}/err)"
    )
    parser.add_argument(
        "--retry-delay",
        type=duration_ms,
        default=30_000,
        metavar="DURATION",
        help="delay after a first failure (30s)",
    )
    parser.add_argument(
        "--backoff",
        choices=["exponential", "fixed"],
        default="exponential",
        help="how the delay grows (exponential)",
    )
    parser.add_argument(
        "--max-delay",
        type=duration_ms,
        default=3_600_000,
        metavar="DURATION",
        help="longest retry delay (1h)",
    )
    parser.add_argument(
        "--jitter",
        type=float,
        metavar="FRACTION",
        default=0.2,
        help="random fraction taken off each delay (0.2)",
    )
    parser.add_argument(
        "--grace", type=duration_ms, default=30_000, metavar="DURATION", help="on stop, time to finish (30s)"
    )
    parser.add_argument("--max-tasks", type=int, metavar="N", help="exit after handling N tasks")
    parser.add_argument("--quiet", action="store_true", help="do not pass the command's output through")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    parser.set_defaults(handler=run)


async def _forward(stream: anyio.abc.ByteReceiveStream, prefix: str, quiet: bool, tail: list[str]) -> None:
    """Passes the command's output to stderr line by line; remembers its last non-empty line."""
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _note_line(line, prefix, quiet, tail)
    if pending:
        _note_line(pending, prefix, quiet, tail)


def _note_line(raw: bytes, prefix: str, quiet: bool, tail: list[str]) -> None:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    if text.strip():
        tail[:] = [text]
    if not quiet:
        print(f"{prefix}{text}", file=sys.stderr, flush=True)


async def _feed(stream: anyio.abc.ByteSendStream, value: bytes) -> None:
    # A command that exits without reading its input is fine.
    try:
        if value:
            await stream.send(value)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


async def _terminate(process: anyio.abc.Process) -> None:
    """SIGTERM to the command's process group, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with anyio.move_on_after(TERMINATE_GRACE_S):
            await process.wait()
            return


def make_handler(args: argparse.Namespace) -> Any:
    command: list[str] = args.command
    timeout_s = args.timeout / 1000 if args.timeout else None

    async def handle(task: Task) -> None:
        env = {
            **os.environ,
            "ENTROQ_TASK_ID": task.id,
            "ENTROQ_TASK_VERSION": str(task.version),
            "ENTROQ_TASK_QUEUE": task.queue,
            "ENTROQ_TASK_ATTEMPT": str(task.attempt),
            "ENTROQ_TASK_CLAIMS": str(task.claims),
        }
        prefix = f"[{task.id[:8]}] "
        err_tail: list[str] = []
        # Its own session: a Ctrl-C at the terminal reaches the worker (which stops
        # gracefully), not the running commands; and terminating reaches their children.
        process = await anyio.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            with anyio.move_on_after(timeout_s) as timer:
                async with anyio.create_task_group() as group:
                    assert process.stdin and process.stdout and process.stderr
                    group.start_soon(_feed, process.stdin, task.value)
                    group.start_soon(_forward, process.stdout, prefix, args.quiet, [])
                    group.start_soon(_forward, process.stderr, prefix, args.quiet, err_tail)
                    await process.wait()
        finally:
            if process.returncode is None:
                # Timed out, lease lost, or the worker is stopping: the command must end too.
                with anyio.CancelScope(shield=True):
                    await _terminate(process)
        if timer.cancelled_caught:
            raise RetryTaskError(f"timed out after {timeout_s:g} s")
        code = process.returncode
        if code == 0:
            return
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        if err_tail:
            reason += ": " + err_tail[0][:ERR_TAIL_CHARS]
        if code in args.quarantine_exit:
            raise MoveTaskError(reason)
        raise RetryTaskError(reason)

    return handle


def print_event(event: WorkerEvent, as_json: bool) -> None:
    result = event.result
    attempt = result.attempt if result else event.task.attempt
    if as_json:
        print_json(
            {
                "event": event.kind,
                "id": event.task.id,
                "queue": result.queue if result else event.task.queue,
                "version": result.version if result else None,
                "attempt": attempt,
                "message": event.message,
                "elapsed_s": round(event.elapsed_s, 3),
            }
        )
        return
    where = f"{event.task.queue}" + (
        f" -> {result.queue}" if result and result.queue != event.task.queue else ""
    )
    line = f"{event.kind:<11} {event.task.id}  {where}  attempt={attempt}  {event.elapsed_s:.2f}s"
    if event.message:
        line += "  " + event.message.splitlines()[0]
    print(line, flush=True)


async def _watch_signals(worker: Worker, grace_s: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if not worker.stopping:
                print(
                    f"entroq-redis worker: stopping; running tasks get {grace_s:g} s "
                    "(signal again to release them now)",
                    file=sys.stderr,
                    flush=True,
                )
                worker.stop()
            else:
                print("entroq-redis worker: releasing running tasks", file=sys.stderr, flush=True)
                worker.stop(grace_s=0)


def _backoff(args: argparse.Namespace) -> Backoff:
    if args.backoff == "fixed":
        return Backoff.fixed(args.retry_delay, jitter=args.jitter)
    return Backoff.exponential(args.retry_delay, max(args.max_delay, args.retry_delay), jitter=args.jitter)


def _configure_logging() -> None:
    """Library warnings (claim or renewal trouble) to stderr; per-task events are on stdout already."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("entroq-redis worker: %(levelname)s %(message)s"))
    handler.addFilter(lambda record: not hasattr(record, "worker_event"))
    logger = logging.getLogger("entroq_redis")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


@reports_errors
def run(args: argparse.Namespace) -> int:
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        raise UsageError("give the command to run after --, e.g. worker -q jobs -- ./handle.sh")
    if shutil.which(args.command[0]) is None:
        raise UsageError(f"command not found: {args.command[0]}")
    if "{queue}" not in args.err_queue:
        raise UsageError("--err-queue must contain {queue}")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    _configure_logging()

    async def body(eq: EntroQ) -> int:
        worker = Worker(
            eq,
            args.queues,
            make_handler(args),
            lease_ms=args.lease,
            concurrency=args.concurrency,
            max_attempts=args.max_attempts,
            max_claims=args.max_claims,
            backoff=_backoff(args),
            err_queue=lambda queue: args.err_queue.replace("{queue}", queue),
            grace_s=args.grace / 1000,
            max_tasks=args.max_tasks,
            on_event=lambda event: print_event(event, args.json),
        )
        print(
            f"entroq-redis worker: claiming from {', '.join(args.queues)} as {worker.claimant_id} "
            f"(concurrency {args.concurrency}, lease {args.lease / 1000:g} s)",
            file=sys.stderr,
            flush=True,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, worker, args.grace / 1000)
            await worker.run()
            nursery.cancel_scope.cancel()
        return EXIT_OK

    return run_client(args, body)
