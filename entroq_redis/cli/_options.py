"""Options every client command shares, and parsers for durations, times and values."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys

from .._types import datetime_to_ms
from ._secret_options import file_argument, secret_argument, url_argument

DEFAULT_URL = "http://127.0.0.1:9100"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def client_parent() -> argparse.ArgumentParser:
    """The options of every command that talks to a store or service (argparse parent)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        default=os.environ.get("ENTROQ_URL", DEFAULT_URL),
        help="store (redis://, rediss://, unix://) or service (http://, https://) to use; "
        f"default $ENTROQ_URL or {DEFAULT_URL}. A URL holding a password is better given in "
        "$ENTROQ_URL or --url-file: every local user can read command lines (ps)",
        **url_argument("ENTROQ_URL or --url-file FILE"),
    )
    group.add_argument("--url-file", dest="url", **file_argument("the --url URL"))
    group.add_argument(
        "--namespace",
        default=os.environ.get("ENTROQ_NAMESPACE") or None,
        help="namespace: the key namespace on a redis:// store (default eq), or the one an http:// "
        "service should use (sent as EntroQ-Namespace; default: the service's own); "
        "default $ENTROQ_NAMESPACE",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("ENTROQ_TOKEN"),
        help="bearer token for an http:// service; default $ENTROQ_TOKEN. Better given in "
        "$ENTROQ_TOKEN or --token-file: every local user can read command lines (ps)",
        **secret_argument("ENTROQ_TOKEN or --token-file FILE"),
    )
    group.add_argument("--token-file", dest="token", **file_argument("the bearer token"))
    group.add_argument(
        "--claimant",
        default=os.environ.get("ENTROQ_CLAIMANT"),
        metavar="ID",
        help="claimant ID to act as (default $ENTROQ_CLAIMANT, else random per run): give the same "
        "one to claim with one command and commit with another",
    )
    group.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    return parent


def duration_ms(text: str) -> int:
    """'30s', '500ms', '2m', '1.5h', '1d' or a bare number of seconds -> milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30s, 500ms, 2m, 1h)")
    number, unit = match.groups()
    return round(float(number) * _UNIT_MS[unit or "s"])


def arrival(text: str) -> int:
    """An absolute time: ISO 8601 (naive means UTC) or integer ms since the epoch -> ms."""
    if re.fullmatch(r"\d+", text.strip()):
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 such as 2030-01-02T03:04:05Z, or ms since the epoch)"
        ) from exc
    return datetime_to_ms(moment)


def add_arrival_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--at / --delay (mutually exclusive) for when a task becomes available."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--at", type=arrival, metavar="TIME", help=f"{what} at TIME (ISO 8601, naive = UTC; or epoch ms)"
    )
    group.add_argument(
        "--delay",
        type=duration_ms,
        metavar="DURATION",
        help=f"{what} after DURATION on the store's clock (30s, 500ms, 2m, 1h)",
    )


def add_value_options(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """A task value from an argument, --file PATH, or --file - (stdin)."""
    if positional:
        parser.add_argument("value", nargs="?", help="the value as text (or use --file)")
    else:
        parser.add_argument("--value", help="new value as text (or use --file)")
    parser.add_argument(
        "--file", "-f", metavar="PATH", help="read the value from PATH ('-' = standard input), as bytes"
    )


def read_value(args: argparse.Namespace) -> bytes | None:
    """The value given by add_value_options' arguments, or None if neither was given."""
    if args.value is not None and args.file is not None:
        raise UsageError("give the value as an argument or with --file, not both")
    if args.file == "-":
        return sys.stdin.buffer.read()
    if args.file is not None:
        with open(args.file, "rb") as handle:
            return handle.read()
    if args.value is not None:
        return str(args.value).encode("utf-8", "surrogateescape")
    return None


class UsageError(Exception):
    """A command line that parses but makes no sense; exits with status 2."""
