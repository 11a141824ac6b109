"""The command line's help, usage errors and error exit codes (no store needed for most)."""

from __future__ import annotations

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
}


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
