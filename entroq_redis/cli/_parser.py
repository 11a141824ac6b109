"""The command line's argparse parser: usage errors as JSON on stderr when --json is asked for."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

EXIT_USAGE = 2


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one JSON object on stderr with ``json_errors``
    (``{"error": "usage", "message": ..., "exitCode": 2}``), the shape every error of a
    ``--json`` command line has (``_run.report``)."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        text = f"{self.prog}: {message}"
        json.dump({"error": "usage", "message": text, "exitCode": EXIT_USAGE}, sys.stderr)
        sys.stderr.write("\n")
        sys.exit(EXIT_USAGE)
