"""BullMQ for Node for the peers part: benchmarks/node/ installed with npm into a cache directory.

The program and its pinned dependencies (package.json, package-lock.json) live in the tree;
``npm ci`` installs them into ``$XDG_CACHE_HOME/entroq-redis-bench/bullmq-<lock hash>`` (never
into the tree), once per lock file. Node resolves ``bullmq`` from the program's own directory,
so the program is copied next to its node_modules and run from there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess

SOURCE = pathlib.Path(__file__).resolve().parent / "node"
PROGRAM = "bullmq_bench.mjs"


class NodeUnavailable(RuntimeError):
    """node or npm is not installed: the BullMQ comparison cannot run."""


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "entroq-redis-bench"


def bullmq_version() -> str:
    import json

    lock = json.loads((SOURCE / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/bullmq"]["version"])


def bullmq_program() -> list[str]:
    """The command that runs benchmarks/node/bullmq_bench.mjs with BullMQ installed.

    Raises NodeUnavailable when node or npm is missing; a failed ``npm ci`` raises
    RuntimeError with npm's output.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeUnavailable(
            "node and npm are needed for the BullMQ comparison (apt-get install nodejs npm)"
        )
    lock = (SOURCE / "package-lock.json").read_bytes()
    target = cache_root() / f"bullmq-{hashlib.sha256(lock).hexdigest()[:16]}"
    target.mkdir(parents=True, exist_ok=True)
    # Two runs at once (a test session and a benchmark): the second waits for the first's install.
    with open(target / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (target / "node_modules" / "bullmq" / "package.json").exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(SOURCE / name, target / name)
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm ci in {target} failed:\n{done.stdout}\n{done.stderr}")
        # The program itself is copied every time, so an edit in the tree is what runs.
        shutil.copyfile(SOURCE / PROGRAM, target / PROGRAM)
    return [node, str(target / PROGRAM)]
