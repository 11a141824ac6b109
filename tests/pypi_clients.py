"""EntroQ's own PyPI clients, each in a virtualenv of its own, for the generations tests.

Each release is installed from PyPI into a throwaway virtualenv with this session's httpx,
cached outside the repository in ``$XDG_CACHE_HOME/entroq-redis/entroq-clients`` (default
``~/.cache``; a few seconds to build the first time, reused after). A program under
tests/programs/ then runs in it, against a running service, through the client's public API.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

PROGRAMS = pathlib.Path(__file__).parent / "programs"
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "entroq-redis"
VERSIONS = ["0.12.4", "0.14.0", "0.15.0"]


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    """One builder at a time (parallel test runs share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def client_python(version: str) -> pathlib.Path:
    """The interpreter of a virtualenv holding ``entroq==version`` and our httpx version.

    Built under a temporary name and renamed when complete, so an interrupted build is
    never reused.
    """
    python_tag = "py" + ".".join(map(str, sys.version_info[:3]))
    target = CACHE / "entroq-clients" / python_tag / f"entroq-{version}-httpx-{httpx.__version__}"
    python = target / "bin" / "python"
    if (target / "complete").exists():
        return python
    with _locked(CACHE / "entroq-clients" / "build.lock"):
        if (target / "complete").exists():
            return python
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
        install = subprocess.run(
            [
                str(building / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"entroq=={version}",
                f"httpx=={httpx.__version__}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if install.returncode != 0:
            pytest.fail(f"cannot install entroq=={version} from PyPI:\n{install.stdout}\n{install.stderr}")
        (building / "complete").write_text(f"entroq=={version}\n")
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    return python


def run_program(version: str, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs tests/programs/PROGRAM ARGS with the interpreter of ``entroq==version`` (never
    this project: PYTHONPATH is dropped)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(client_python(version)), str(PROGRAMS / program), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def run_report(version: str, program: str, *args: str) -> dict[str, Any]:
    """Runs a program that prints one JSON report on stdout, and returns the report."""
    done = run_program(version, program, *args)
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report
