"""Running ``entroq-redis`` client commands in a subprocess against one URL and namespace
(tests/test_cli.py, tests/test_cli_docs.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

TIMEOUT_S = 30


def clean_env() -> dict[str, str]:
    """The environment for the CLI, without the caller's ENTROQ_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}


@dataclasses.dataclass
class Cli:
    """Runs ``entroq-redis`` against one URL and namespace."""

    url: str
    namespace: str

    def argv(self, command: str, *args: str) -> list[str]:
        # The connection options go right after the command: worker's COMMAND takes the rest.
        # The URL is in the environment (env()): the session's store URL holds its password.
        connection = ["--namespace", self.namespace]
        return [sys.executable, "-m", "entroq_redis.cli", command, *connection, *args]

    def env(self) -> dict[str, str]:
        return {**clean_env(), "ENTROQ_URL": self.url}

    def run(
        self, *args: str, stdin: bytes | str | None = None, expect: int = 0, timeout: float = TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        data = stdin.decode() if isinstance(stdin, bytes) else stdin
        done = subprocess.run(
            self.argv(*args),
            input=data,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            stdin=None if data is not None else subprocess.DEVNULL,
        )
        assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kwargs).stdout)

    def tasks(self, queue: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.json("ts", queue)
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )
