"""Which namespace a request works in, and a library client of it: views over one store connection.

This is the one place that maps a request to a namespace: the ``EntroQ-Namespace`` header
picks one of the namespaces the service was started with (``--namespace``, repeatable; the
first is the default when the header is absent). A request works in exactly one namespace,
so a claim or modify can never span two (each namespace is one hash tag, one cluster slot:
docs/design.md 2.4); no field of any request body names a namespace. On a cluster
(``redis+cluster://``) each namespace's client runs its scripts on the primary that owns the
namespace's slot, so namespaces spread the load over the cluster's primaries.

Every namespace's client is a view (``EntroQ.for_namespace``) of one library client opened
on first use: the process holds one connection pool and one wake subscription however many
namespaces it serves (each namespace in use adds only its wake channel to the subscription).

``--test-any-namespace`` lets the header name any namespace; the test suite uses it to give
every test its own namespace through one service process. Views of such extra namespaces
are made on first use and closed again when idle (least recently used first), which takes
their wake channels off the subscription, so the number of channels stays bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

import trio

import entroq_redis

from .errors import NOT_FOUND, ApiError, bad_request
from .hooks import HeaderMap

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "EntroQ-Namespace"


@dataclasses.dataclass
class _Entry:
    client: entroq_redis.EntroQ
    users: int = 0
    last_used: float = 0.0


class Namespaces:
    """Library clients by namespace: views of one client, opened lazily on the store.

    Args:
        store_url: The store every namespace lives on.
        configured: The namespaces served; the first is the default.
        any_namespace: Serve any namespace the header names (testing only).
        nursery: Where the store client's holder task runs (and idle views close).
        allow_evicting_store: Passed to :func:`entroq_redis.connect`.
        durability: Passed to :func:`entroq_redis.connect` (WAIT/WAITAOF after each mutation).
        max_idle: How many idle views of unconfigured namespaces stay open.
    """

    def __init__(
        self,
        store_url: str,
        configured: Sequence[str],
        *,
        any_namespace: bool,
        nursery: trio.Nursery,
        allow_evicting_store: bool = False,
        durability: entroq_redis.Durability | None = None,
        max_idle: int = 16,
    ) -> None:
        if not configured:
            raise ValueError("at least one namespace is required")
        for name in configured:
            entroq_redis.Keys(name)  # validates the name
        self.store_url = store_url
        self.configured = tuple(dict.fromkeys(configured))
        self.default = self.configured[0]
        self.any_namespace = any_namespace
        self._nursery = nursery
        self._allow_evicting_store = allow_evicting_store
        self._durability = durability
        self._max_idle = max_idle
        self._entries: dict[str, _Entry] = {}
        self._open_lock = trio.Lock()
        # The one store client every namespace's view runs on, and what ends its holder task.
        self._store: entroq_redis.EntroQ | None = None
        self._release = trio.Event()

    def select(self, headers: HeaderMap) -> str:
        """The namespace a request names (or the default), or a 400/404 ApiError."""
        # Repeated headers or a comma list would ask for a claim or modify across namespaces,
        # which cannot be atomic (two hash tags, maybe two primaries): refuse it, naming them.
        # Namespace names have no commas (Keys checks), so splitting on them is exact.
        getlist = getattr(headers, "getlist", None)
        values = getlist(NAMESPACE_HEADER) if getlist is not None else [headers.get(NAMESPACE_HEADER)]
        names = sorted({part.strip() for value in values if value for part in value.split(",")} - {""})
        if len(names) > 1:
            raise bad_request(
                "a request works in exactly one namespace (a claim or modify is atomic only within "
                f"one); this one names {len(names)}: {', '.join(repr(n) for n in names)}"
            )
        if not names:
            return self.default
        name = names[0]
        if name in self.configured:
            return name
        if not self.any_namespace:
            raise ApiError(404, NOT_FOUND, f"namespace {name!r} is not served here", "not_found")
        try:
            entroq_redis.Keys(name)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return name

    @contextlib.asynccontextmanager
    async def client(self, name: str) -> AsyncIterator[entroq_redis.EntroQ]:
        """A client of the namespace for the duration of the block (opened if needed).

        Raises:
            entroq_redis.StoreUnavailableError: the store cannot be reached.
            entroq_redis.UnsafeStoreError: the store may evict keys (and that was not allowed).
        """
        entry = self._entries.get(name)
        if entry is None:
            entry = await self._open(name)  # counts this user
        else:
            entry.users += 1  # no checkpoint since the lookup, so it is still open
        entry.last_used = trio.current_time()
        try:
            yield entry.client
        finally:
            entry.users -= 1
            self._close_idle()

    async def _open(self, name: str) -> _Entry:
        async with self._open_lock:
            entry = self._entries.get(name)
            if entry is None:
                if self._store is None:
                    # Opened on first use, not at startup, so a store that is down when the
                    # service starts only fails requests (503) until it is back.
                    self._store = await self._nursery.start(self._hold)
                entry = _Entry(self._store.for_namespace(name))
                self._entries[name] = entry
            # Counted before the lock is released, so no idle sweep can close it first.
            entry.users += 1
            return entry

    async def _hold(
        self, *, task_status: trio.TaskStatus[entroq_redis.EntroQ] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # A client's task group must be entered and left in one task: this one.
        async with entroq_redis.connect(
            self.store_url,
            namespace=self.default,
            allow_evicting_store=self._allow_evicting_store,
            durability=self._durability,
        ) as client:
            task_status.started(client)
            await self._release.wait()
        log.debug("closed the store client")

    @property
    def store(self) -> entroq_redis.EntroQ | None:
        """The client every namespace's view shares (None until the first request opens it)."""
        return self._store

    def _close_idle(self) -> None:
        extra = [
            (entry.last_used, name)
            for name, entry in self._entries.items()
            if entry.users == 0 and name not in self.configured
        ]
        for _, name in sorted(extra)[: max(0, len(extra) - self._max_idle)]:
            # Only its wake channel to drop; the connections are the store client's.
            self._nursery.start_soon(self._entries.pop(name).client.aclose)

    def close_all(self) -> None:
        """Lets the store client close (at shutdown, after the last request)."""
        self._entries.clear()
        self._store = None
        self._release.set()


@contextlib.asynccontextmanager
async def open_namespaces(
    store_url: str,
    configured: Sequence[str],
    *,
    any_namespace: bool = False,
    allow_evicting_store: bool = False,
    durability: entroq_redis.Durability | None = None,
) -> AsyncIterator[Namespaces]:
    """Yields the service's namespaces; closes every client on exit."""
    async with trio.open_nursery() as nursery:
        namespaces = Namespaces(
            store_url,
            configured,
            any_namespace=any_namespace,
            nursery=nursery,
            allow_evicting_store=allow_evicting_store,
            durability=durability,
        )
        try:
            yield namespaces
        finally:
            namespaces.close_all()
