"""Options every client command shares, and parsers for durations, times and values.

The shared options are global: the top-level parser holds them with their defaults (from the
environment), and every client command accepts them again after its name with
``default=SUPPRESS``, so ``entroq-redis --url U ts q`` and ``entroq-redis ts q --url U`` mean
the same and a value given after the command wins.

One meaning per short flag across every command, EntroQ's ``eqc`` letters where it has one
(docs/eqc.md maps them): -q queue, -t task ID, -v value, -f force, -d duration, -n limit,
-p prefix, -Q destination queue, -F file, -r reset, -V omit values, -m millis, -y yes,
-i interval, -c concurrency, -k key, -e key end, -x exact doc namespace; globals -s service
address, -S secure, -j JSON. -t is --id everywhere, a task's or (doc commands) a doc's
(tests/test_cli_usage.py checks that every letter stands for one long option).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import importlib.metadata
import os
import re
import socket
import sys
from typing import Any

from .._types import datetime_to_ms
from ._secret_options import file_argument, secret_argument, store_once, url_argument

DEFAULT_URL = "http://127.0.0.1:9100"
DEFAULT_SERVICE_PORT = 9100
# The suffix of the default claimant: what the CLI claims as in every shell of USER on HOST.
CLAIMANT_SUFFIX = "/entroq-cli"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def program_version() -> str:
    try:
        return importlib.metadata.version("entroq-redis")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class ProgramVersion(argparse.Action):
    """``--version``: prints the program's version and exits, in front of every command.

    It takes an optional value only to refuse one: ``rm ID --version 3`` once meant the
    task's version, and printing the program's version there would let a script believe the
    task was deleted.
    """

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.pop("default", None)
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, metavar="", **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if values is not None:
            parser.error(
                f"--version prints the program's version and takes no value ({values!r}); "
                "a task's version is --task-version N"
            )
        print(f"entroq-redis {program_version()}")
        parser.exit()


def default_claimant() -> str:
    """USER@HOST plus a fixed suffix: the same in every shell, so a task claimed by one command
    can be committed by the next (``claim`` then ``rm``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}{CLAIMANT_SUFFIX}"


def claimant_for(args: argparse.Namespace) -> str:
    """The claimant the command acts as: --claimant, else $ENTROQ_CLAIMANT, else the default."""
    return str(getattr(args, "claimant", None) or default_claimant())


def service_url(address: str) -> str:
    """``-s/--svcaddr`` as eqc takes it (HOST, HOST:PORT or :PORT) -> the service's URL.

    A full URL (any scheme --url takes) is used as is. Without a port, the HTTP port 9100 is
    used (eqc appends its gRPC port, 37706; the CLI speaks HTTP).
    """
    if "://" in address:
        return address
    host, colon, port = address.rpartition(":") if ":" in address else (address, "", "")
    if not colon:
        host, port = address, str(DEFAULT_SERVICE_PORT)
    if port and not port.isdigit():
        raise UsageError(f"-s/--svcaddr {address!r}: not HOST, HOST:PORT or :PORT")
    if port == "37706":
        raise UsageError(
            "-s/--svcaddr: 37706 is the gRPC port (eqc's); the command line speaks HTTP: use "
            f"{host or '127.0.0.1'}:{DEFAULT_SERVICE_PORT}"
        )
    return f"http://{host or '127.0.0.1'}:{port}"


class ServiceAddress(argparse.Action):
    """``-s/--svcaddr``: stores the service's URL under ``url`` (refused next to --url)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        try:
            url = service_url(str(values))
        except UsageError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        store_once(self, namespace, url, option)


def connection_url(args: argparse.Namespace) -> str:
    """The URL to connect to; -S/--secure turns http:// into https://, redis:// into rediss://."""
    url = str(args.url)
    if getattr(args, "secure", False):
        for plain, secure in (("http://", "https://"), ("redis://", "rediss://")):
            if url.startswith(plain):
                return secure + url[len(plain) :]
    return url


def _client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The global options; defaults at the top level only (SUPPRESS after the command)."""

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group(
        "global options (before or after the command)" if top_level else "global options"
    )
    group.add_argument(
        "--url",
        default=default(os.environ.get("ENTROQ_URL", DEFAULT_URL)),
        help="store (redis://, rediss://, unix://) or service (http://, https://) to use; "
        f"default $ENTROQ_URL or {DEFAULT_URL}. A URL holding a password is better given in "
        "$ENTROQ_URL or --url-file: every local user can read command lines (ps)",
        **url_argument("ENTROQ_URL or --url-file FILE"),
    )
    group.add_argument("--url-file", dest="url", **file_argument("the --url URL"))
    group.add_argument(
        "-s",
        "--svcaddr",
        dest="url",
        action=ServiceAddress,
        default=argparse.SUPPRESS,
        metavar="HOST[:PORT]",
        help="the service at HOST:PORT, as eqc's -s (HTTP; port 9100 unless given); instead of --url",
    )
    group.add_argument(
        "-S",
        "--secure",
        action="store_true",
        default=default(False),
        help="TLS: http:// becomes https://, redis:// rediss:// (eqc's -S)",
    )
    group.add_argument(
        "--namespace",
        default=default(os.environ.get("ENTROQ_NAMESPACE") or None),
        help="namespace: the key namespace on a redis:// store (default eq), or the one an http:// "
        "service should use (sent as EntroQ-Namespace; default: the service's own); "
        "default $ENTROQ_NAMESPACE",
    )
    group.add_argument(
        "--token",
        "--authz-token",
        default=default(os.environ.get("ENTROQ_TOKEN")),
        help="bearer token for an http:// service (eqc: --authz_token); default $ENTROQ_TOKEN. "
        "Better given in $ENTROQ_TOKEN or --token-file: every local user can read command lines (ps)",
        **secret_argument("ENTROQ_TOKEN or --token-file FILE"),
    )
    group.add_argument("--token-file", dest="token", **file_argument("the bearer token"))
    group.add_argument(
        "--claimant",
        default=default(os.environ.get("ENTROQ_CLAIMANT") or None),
        metavar="ID",
        help="claimant ID to act as; default $ENTROQ_CLAIMANT, else USER@HOST"
        f"{CLAIMANT_SUFFIX} (here {default_claimant()}), the same in every shell, so a task "
        "claimed by one command can be changed or deleted by the next",
    )
    group.add_argument(
        "-j",
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON for scripts instead of tables (errors too, on stderr)",
    )
    group.add_argument("--version", action=ProgramVersion, help="print the program's version and exit")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The top-level parser's global options, with their defaults."""
    _client_options(parser, top_level=True)


def client_parent() -> argparse.ArgumentParser:
    """The global options again, for after a client command's name (argparse parent)."""
    parent = argparse.ArgumentParser(add_help=False)
    _client_options(parent, top_level=False)
    return parent


def version_parent() -> argparse.ArgumentParser:
    """Only --version, for commands without the client options (serve)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--version", action=ProgramVersion, help="print the program's version and exit")
    return parent


def json_requested(argv: list[str]) -> bool:
    """Whether the command line asks for JSON (looked at before parsing, for usage errors)."""
    words = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in words or "-j" in words


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


def add_value_options(parser: argparse.ArgumentParser, *, repeatable: bool) -> None:
    """A task value from -v/--value (eqc's -v; repeatable: one task each), or -F/--file."""
    parser.add_argument(
        "--value",
        "-v",
        action="append" if repeatable else "store",
        default=[] if repeatable else None,
        help="the value as text" + (" (repeatable: one task per value)" if repeatable else ""),
    )
    parser.add_argument(
        "--file", "-F", metavar="PATH", help="read the value from PATH ('-' = standard input), as bytes"
    )


def read_file_value(path: str) -> bytes:
    """--file's value: PATH's bytes, or standard input's for '-'."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def read_value(args: argparse.Namespace) -> bytes | None:
    """mod's new value (-v or -F), or None if neither was given."""
    if args.value is not None and args.file is not None:
        raise UsageError("give the value with -v/--value or -F/--file, not both")
    if args.file is not None:
        return read_file_value(args.file)
    if args.value is not None:
        return str(args.value).encode("utf-8", "surrogateescape")
    return None


def add_queue_option(parser: argparse.ArgumentParser, *, what: str, repeatable: bool = False) -> None:
    """-q/--queue, eqc's way to name the queue(s) a command works on (the positional works too)."""
    parser.add_argument(
        "--queue",
        "-q",
        dest="queue_option",
        action="append" if repeatable else "store",
        default=[] if repeatable else None,
        metavar="QUEUE",
        help=what + (" (repeatable)" if repeatable else ""),
    )


def one_queue(args: argparse.Namespace, positional: str | None, *, required: bool = True) -> str:
    """The queue named by the positional or by -q/--queue (the same one, if both)."""
    option = args.queue_option
    if positional and option and positional != option:
        raise UsageError(f"two queues named: {positional!r} and -q {option!r}")
    queue = positional or option or ""
    if required and not queue:
        raise UsageError("name a queue (QUEUE or -q QUEUE)")
    return str(queue)


def add_task_option(parser: argparse.ArgumentParser, *, what: str, repeatable: bool) -> None:
    """-t/--task, eqc's way to name task IDs (--id is the same option)."""
    parser.add_argument(
        "--task",
        "-t",
        "--id",
        dest="task_option",
        action="append" if repeatable else "store",
        default=[] if repeatable else None,
        metavar="ID",
        help=what + (" (repeatable)" if repeatable else ""),
    )


class UsageError(Exception):
    """A command line that parses but makes no sense; exits with status 2."""
