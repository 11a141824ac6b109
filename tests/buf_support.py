"""`buf` (the Buf CLI), installed from npm once per machine, and `buf curl` calls against the service.

`buf curl --protocol grpc --http2-prior-knowledge` is a gRPC client nobody here wrote (connect-go
inside a Go binary), so the tests that use it check the service's gRPC framing, status codes and
error details from the outside. The npm package `@bufbuild/buf` ships the binary in a per-platform
optional dependency (`@bufbuild/buf-linux-x64`, ...); it is installed with `--ignore-scripts` (its
postinstall only re-checks that binary) into a cache directory outside the tree, keyed by the pinned
version, so a fresh CI machine installs it in the test setup and later runs reuse it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

import pytest

BUF_VERSION = "1.75.0"
PROTOS = pathlib.Path(__file__).resolve().parent / "protos"
# grpc.health.v1 (the standard health service), for `buf curl` of Health/Check.
HEALTH_PROTO = PROTOS / "health" / "health.proto"


def cache_root() -> pathlib.Path:
    """Where installed tools live: $ENTROQ_TEST_CACHE, else $XDG_CACHE_HOME or ~/.cache."""
    explicit = os.environ.get("ENTROQ_TEST_CACHE")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "entroq-redis-tests"


def _installed_binary(directory: pathlib.Path) -> pathlib.Path | None:
    # The one platform package npm chose for this machine (the shim in @bufbuild/buf/bin is a
    # Node script that would only look the same file up on every call).
    found = sorted(directory.glob("node_modules/@bufbuild/buf-*/bin/buf*"))
    binaries = [path for path in found if path.name in ("buf", "buf.exe")]
    return binaries[0] if binaries else None


def version_of(binary: pathlib.Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def install_buf(version: str = BUF_VERSION) -> pathlib.Path:
    """Returns the path of the `buf` binary, installing `@bufbuild/buf@VERSION` from npm first if needed.

    Skips the calling test only when npm is not installed; any other failure (no registry, no
    binary for this platform, a wrong version) fails it with npm's own output.
    """
    target = cache_root() / "buf" / version
    binary = _installed_binary(target)
    if binary is not None and version_of(binary) == version:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: `buf curl` (npm package @bufbuild/buf) cannot be installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two test sessions on one machine: the second waits for the first's install, then reuses it.
    with open(target.parent / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        binary = _installed_binary(target)
        if binary is not None and version_of(binary) == version:
            return binary
        # Installed beside the target and moved into place whole, so an interrupted install never
        # leaves a half-filled version directory that a later run would trust.
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            command = [
                npm, "install", "--prefix", str(staging), "--no-save", "--no-audit", "--no-fund",
                "--ignore-scripts", "--loglevel", "error", f"@bufbuild/buf@{version}",
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"`{shlex.join(command)}` failed:\n{done.stdout}\n{done.stderr}")
            staged = _installed_binary(staging)
            if staged is None:
                raise RuntimeError(f"@bufbuild/buf@{version} installed no binary for this platform")
            got = version_of(staged)
            if got != version:
                raise RuntimeError(f"the installed buf says version {got!r}, not {version}")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(staging)
    binary = _installed_binary(target)
    assert binary is not None
    return binary


@dataclasses.dataclass
class Call:
    """One `buf curl` call and what it printed."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def reply(self) -> Any:
        """The response message buf printed (JSON on stdout)."""
        return json.loads(self.stdout)

    def error(self) -> Any:
        """The error buf printed for a failed RPC: {"code", "message", "details": [{"type", "value"}]}.

        buf prints the Connect JSON form of the status; each detail's ``value`` is the
        message's wire bytes in base64 (buf does not decode details, even with a schema).
        """
        start = self.stderr.find("{")
        decoder = json.JSONDecoder()
        while start >= 0:
            try:
                found, _ = decoder.raw_decode(self.stderr, start)
            except ValueError:
                start = self.stderr.find("{", start + 1)
                continue
            if isinstance(found, dict) and "code" in found:
                return found
            start = self.stderr.find("{", start + 1)
        raise AssertionError(f"no error JSON in buf's output: {self.stderr!r}")

    @property
    def grpc_code(self) -> int | None:
        """The gRPC status code of a failed RPC (buf exits with the code shifted left by 3), else None."""
        return self.returncode >> 3 if self.returncode >= 8 else None

    def exchange(self) -> tuple[list[str], list[str]]:
        """With ``-v``: the response's header lines and its trailer lines, as buf printed them.

        buf prints ``< (#1) NAME: VALUE`` lines; an empty ``< (#1)`` line ends the headers, the
        trailers follow the (empty here) body. A trailers-only response has its grpc-status among
        the headers and no trailers.
        """
        received = [
            line.removeprefix("buf: < (#1)").strip()
            for line in self.stderr.splitlines()
            if line.startswith("buf: < (#1)")
        ]
        if "" not in received:
            return received, []
        end = received.index("")
        return received[:end], [line for line in received[end:] if line]

    def shown(self, root: pathlib.Path | None = None, verbose: re.Pattern[str] | None = None) -> str:
        """The command line (paths relative to ``root``) and its output, for a transcript; of buf's
        ``-v`` lines only those matching ``verbose``."""
        argv = list(self.argv)
        argv[0] = "buf"
        if root is not None:
            argv = [arg.replace(str(root) + os.sep, "") for arg in argv]
        lines = ["$ " + shlex.join(argv)]
        for line in (self.stdout + self.stderr).rstrip("\n").splitlines():
            if line.startswith("buf: ") and (verbose is None or not verbose.search(line)):
                continue
            lines.append(line)
        lines.append(f"(exit {self.returncode})")
        return "\n".join(lines)


@dataclasses.dataclass
class BufCurl:
    """`buf curl` over gRPC (h2c) to one service, schemas from local .proto files (no reflection)."""

    binary: pathlib.Path
    address: str  # host:port of the gRPC listener
    schemas: Sequence[pathlib.Path]
    headers: Sequence[str] = ()  # sent with every call ("name: value"), e.g. the namespace
    transcript: list[Call] = dataclasses.field(default_factory=list)

    def __call__(
        self,
        method: str,
        data: str | None = None,
        *,
        headers: Sequence[str] = (),
        timeout: float | None = None,
        verbose: bool = False,
        wait: float = 60,
    ) -> Call:
        argv = [str(self.binary), "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
        for schema in self.schemas:
            argv += ["--schema", str(schema)]
        for header in (*self.headers, *headers):
            argv += ["-H", header]
        if data is not None:
            argv += ["-d", data]
        if timeout is not None:
            # buf's global --timeout is the RPC's context deadline, which connect-go sends as
            # the grpc-timeout header.
            argv += ["--timeout", f"{timeout}s"]
        if verbose:
            argv.append("-v")
        argv.append(f"http://{self.address}/{method}")
        # No colour codes in what the tests read; no buf config or cache from the user's home.
        env = {**os.environ, "BUF_LOG_FORMAT": "text", "NO_COLOR": "1"}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=wait, env=env)
        call = Call(argv, done.returncode, done.stdout, done.stderr)
        self.transcript.append(call)
        return call
