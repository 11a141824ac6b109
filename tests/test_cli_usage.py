"""The command line's help, usage errors and error exit codes (no store needed for most)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from entroq_redis.cli import COMMAND_MODULES, build_parser

CLIENT_COMMANDS = [
    "ins",
    "claim",
    "tryclaimid",
    "ts",
    "qs",
    "rm",
    "mod",
    "clear",
    "time",
    "requeue",
    "top",
    "worker",
    "docs",
    "doc-put",
    "doc-rm",
    "ns",
]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entroq_redis.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


def test_top_level_help_lists_every_command() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in CLIENT_COMMANDS:
        # A name longer than argparse's column (tryclaimid) has its help on the next line.
        assert re.search(rf"^    {command}\s", done.stdout, re.M), command
    assert len(COMMAND_MODULES) == len(CLIENT_COMMANDS) + 1  # and serve


def test_no_command_is_a_usage_error() -> None:
    done = run()
    assert done.returncode == 2 and "COMMAND" in done.stdout


# The least each command needs besides the shared options.
REQUIRED_ARGS = {
    "ins": ["q"],
    "claim": ["q"],
    "tryclaimid": ["-q", "q", "-t", "i"],
    "rm": ["i", "--force"],
    "mod": ["i"],
    "clear": ["q"],
    "requeue": ["q/err"],
    "worker": ["-q", "q", "--", "true"],
    "docs": ["dns"],
    "doc-put": ["dns", "k"],
    "doc-rm": ["dns", "i", "--doc-version", "0"],
}


def test_each_short_flag_has_one_meaning_across_commands() -> None:
    """A letter is always an alias of one long option, whatever the command (docs/eqc.md's
    table): the long names each command gives a letter share at least one name."""
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    longs_by_letter: dict[str, list[tuple[str, set[str]]]] = {}
    for command, sub in [("(global)", parser), *subparsers.choices.items()]:
        for action in sub._actions:
            longs = {o for o in action.option_strings if o.startswith("--")}
            for short in (o for o in action.option_strings if re.fullmatch(r"-[^-]", o)):
                longs_by_letter.setdefault(short, []).append((command, longs))
    clashes = {
        short: uses
        for short, uses in longs_by_letter.items()
        if short != "-h" and not set.intersection(*(longs for _, longs in uses))
    }
    assert not clashes
    # The letters the doc commands gave up for the global ones.
    assert {"--svcaddr"} == {long for _, longs in longs_by_letter["-s"] for long in longs}
    assert {"--secure"} == {long for _, longs in longs_by_letter["-S"] for long in longs}
    assert "--file" in set.intersection(*(longs for _, longs in longs_by_letter["-F"]))
    assert "--id" in set.intersection(*(longs for _, longs in longs_by_letter["-t"]))


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_command_has_help_and_the_shared_options(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENTROQ_URL", "ENTROQ_NAMESPACE", "ENTROQ_TOKEN", "ENTROQ_CLAIMANT"):
        monkeypatch.delenv(name, raising=False)
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([command, "--help"])
    assert exit_info.value.code == 0
    args = parser.parse_args([command, *REQUIRED_ARGS.get(command, [])])
    assert (args.url, args.namespace, args.claimant, args.json) == (
        "http://127.0.0.1:9100",
        None,
        None,
        False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["claim"],  # a queue is required
        ["tryclaimid", "-t", "i"],  # eqc's flags: --queue is required
        ["tryclaimid", "--queue", "q"],  # and --task
        ["ins", "q", "--at", "yesterday"],
        ["claim", "q", "--duration", "forever"],
        ["ts"],  # a queue or an --id
        ["ins"],  # no queue
        ["ins", "-v", "x"],  # no queue: -v is a value
        ["rm", "i", "--version", "3"],  # --version is the program's; the task's is --task-version
        ["worker", "-q", "q"],  # no command
        ["worker", "-q", "q", "--", "no-such-command-anywhere"],
        ["requeue", "plain-queue", "--url", "redis://127.0.0.1:1"],
        ["time", "--url", "ftp://nowhere"],
        ["docs"],  # a doc namespace is required
        ["docs", "dns", "--id", "a", "--key-start", "k"],  # IDs or a key range
        ["docs", "dns", "--key", "k", "--key-end", "z"],
        ["doc-put", "dns", "k", "--doc-version", "3"],  # a change names its doc with --id
        ["doc-put", "dns", "k", "-t", "i", "--version", "3"],  # the doc's version is --doc-version
        ["doc-put", "dns", "k", "v", "--file", "-"],  # content twice
        ["doc-rm", "dns", "i"],  # --doc-version is required
        ["ns", "--limit", "-1"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1", "http://127.0.0.1:1"])
def test_unreachable_store_exits_1_with_a_message(url: str) -> None:
    done = run("time", "--url", url)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("entroq-redis: ") and "Traceback" not in done.stderr


def test_url_from_the_environment(store_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "entroq_redis.cli", "time", "--millis"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean_env(), "ENTROQ_URL": store_url},
    )
    assert done.returncode == 0 and done.stdout.strip().isdigit()
