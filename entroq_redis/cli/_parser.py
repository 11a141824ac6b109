"""The command line's argparse parser: usage errors as JSON on stderr when --json is asked for."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

# Sets a parser's defaults from elsewhere (serve: the environment, a file) before it parses
# ``argv``; returns what to do with the parsed arguments.
Configure = Callable[[argparse.ArgumentParser, Sequence[str]], Callable[[argparse.Namespace], None]]

EXIT_USAGE = 2


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one JSON object on stderr with ``json_errors``
    (``{"error": "usage", "message": ..., "exitCode": 2}``), the shape every error of a
    ``--json`` command line has (``_run.report``)."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors
        self.configure: Configure | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.configure is None:
            return super().parse_known_args(args, namespace)
        words = list(sys.argv[1:] if args is None else args)
        finish = self.configure(self, words)
        parsed, rest = super().parse_known_args(words, namespace)
        finish(parsed)
        return parsed, rest

    def format_usage(self) -> str:
        return _plain_version(super().format_usage())

    def format_help(self) -> str:
        return _plain_version(super().format_help())

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        text = f"{self.prog}: {message}"
        json.dump({"error": "usage", "message": text, "exitCode": EXIT_USAGE}, sys.stderr)
        sys.stderr.write("\n")
        sys.exit(EXIT_USAGE)


def _plain_version(text: str) -> str:
    """``--version`` as it is typed: its optional value exists only to refuse one (see
    ``_options.ProgramVersion``), so help and usage do not show it."""
    return text.replace("[--version ]", "[--version]").replace("--version []", "--version   ")
