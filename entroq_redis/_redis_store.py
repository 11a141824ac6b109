"""One store connection per process: the client, its pool, the scripts and the wake subscription.

Everything here is shared by every namespace a process uses: a namespace is only a key
prefix (``{namespace}:``, one hash tag), so a view of a namespace (``RedisBackend``) needs
nothing of its own but its ``Keys``. A service serving hundreds of namespaces therefore
holds one connection pool, checks the eviction policy once and keeps one pub/sub
subscription (one connection; on a cluster one per primary), whatever the number of
namespaces; each namespace adds only its wake channel to that subscription.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import coredis
import coredis.exceptions

from ._contract import SCRIPT_NAMES
from ._durability import Durability
from ._errors import StoreError, StoreUnavailableError, UnsafeStoreError
from ._masked_url import masked_url
from ._scripts import script_source
from ._wake import WakeSubscription

# Policies that may evict keys that have no TTL, i.e. our tasks.
EVICTING_POLICIES = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random", "allkeys-lrm"})

# A cluster is named by any one node, with the scheme marking it as a cluster seed.
CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


class RedisStore:
    """The connection to one store (or cluster) that every namespace view runs on.

    Holds the coredis client (one connection pool), the registered scripts, how modify
    announces available tasks, the durability setting and the wake subscription, started
    on the first blocking claim of any namespace. Get one from :func:`open_redis_store`;
    it is closed by whoever opened it, never by a view.
    """

    def __init__(
        self,
        redis: coredis.Redis[bytes] | coredis.RedisCluster[bytes],
        task_group: anyio.abc.TaskGroup,
        notify: str,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.notify = notify
        self.durability = durability
        self.cluster = isinstance(redis, coredis.RedisCluster)
        self.scripts = {name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES}
        # Plain client, no OpenTelemetry: scripts go straight onto a pooled connection
        # (RedisBackend._evalsha). On a cluster, through coredis's command layer.
        self.direct = isinstance(redis, coredis.Redis) and not coredis.Config.otel_enabled
        self._task_group = task_group
        self._wakes: WakeSubscription | None = None
        self._wakes_lock = anyio.Lock()

    async def wake_subscription(self) -> WakeSubscription:
        """The store's one wake subscription, connected on first use.

        Raises:
            TimeoutError, coredis.exceptions.ConnectionError (maybe in an exception group):
                the subscription could not connect.
        """
        if self._wakes is None:
            async with self._wakes_lock:
                if self._wakes is None:
                    wakes = WakeSubscription(self.redis, sharded=self.cluster)
                    await self._task_group.start(wakes.run)
                    self._wakes = wakes
        return self._wakes

    async def leave_wakes(self, channel: str) -> None:
        """Undoes one ``join`` of ``channel`` on the wake subscription (see WakeSubscription)."""
        if self._wakes is not None:
            await self._wakes.leave(channel)

    @property
    def wake_channels(self) -> int:
        """How many namespaces' wake channels the subscription carries (0 before its start)."""
        return self._wakes.channels if self._wakes is not None else 0

    async def stop_background(self) -> None:
        """Ends the wake subscription cleanly (before the connections close)."""
        if self._wakes is not None:
            await self._wakes.stop()

    async def aclose(self) -> None:
        """Stops the background tasks; the pool closes when ``open_redis_store``'s block ends."""
        await self.stop_background()
        self._task_group.cancel_scope.cancel()


def is_cluster_url(url: str) -> bool:
    return url.startswith(tuple(CLUSTER_SCHEMES))


def store_client(url: str, **kwargs: Any) -> coredis.Redis[bytes] | coredis.RedisCluster[bytes]:
    """A coredis client for a single store (redis://, rediss://, unix://) or a cluster seed."""
    try:
        for scheme, plain in CLUSTER_SCHEMES.items():
            if url.startswith(scheme):
                with warnings.catch_warnings():
                    # coredis 6.9's from_url passes its startup node in the form its own
                    # constructor deprecates; nothing the caller can change.
                    warnings.filterwarnings(
                        "ignore", "Use coredis.connection.TCPLocation", DeprecationWarning
                    )
                    return coredis.RedisCluster.from_url(
                        plain + url[len(scheme) :], decode_responses=False, **kwargs
                    )
        return coredis.Redis.from_url(url, decode_responses=False, **kwargs)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot use store URL {masked_url(url)!r}: {exc}") from exc


@contextlib.asynccontextmanager
async def _opened(redis: coredis.Redis[bytes] | coredis.RedisCluster[bytes]) -> AsyncIterator[None]:
    """Enters the client; on a cluster, also closes what coredis 6.9 leaves open.

    Its cluster layout keeps an error stream that nothing closes, so every closed cluster
    client raised a ResourceWarning when collected (an error where warnings are errors).
    """
    try:
        async with redis:
            yield
    finally:
        layout = getattr(redis.connection_pool, "cluster_layout", None)
        for stream in getattr(layout, "_error_stream", ()):
            stream.close()


async def check_eviction_policy(redis: coredis.Redis[bytes] | coredis.RedisCluster[bytes]) -> str:
    """Returns the store's maxmemory-policy (from INFO, which needs no CONFIG rights).

    On a cluster coredis asks one node; cluster nodes are configured alike in practice.
    """
    info = await redis.info("memory")
    policy = info.get("maxmemory_policy", "noeviction")
    return policy.decode() if isinstance(policy, bytes) else str(policy)


@contextlib.asynccontextmanager
async def open_redis_store(
    url: str,
    *,
    allow_evicting_store: bool = False,
    notify: str | None = None,
    durability: Durability | None = None,
    max_connections: int | None = None,
) -> AsyncIterator[RedisStore]:
    """Connects to the store (or cluster) at ``url`` once, for any number of namespaces.

    Args:
        notify: How modify announces available tasks: PUBLISH on a single store,
            SPUBLISH (sharded, follows the slot) on a cluster by default.
        max_connections: The pool's bound (coredis's default if None).

    Raises:
        StoreUnavailableError: the store cannot be reached.
        UnsafeStoreError: the store may evict keys (and that was not allowed).
    """
    kwargs: dict[str, Any] = {}
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    redis = store_client(url, **kwargs)
    if notify is None:
        notify = "SPUBLISH" if isinstance(redis, coredis.RedisCluster) else "PUBLISH"
    async with _opened(redis):
        try:
            policy = await check_eviction_policy(redis)
        except coredis.exceptions.RedisError as exc:
            raise StoreUnavailableError(f"cannot reach the store at {masked_url(url)}: {exc}") from exc
        if policy in EVICTING_POLICIES and not allow_evicting_store:
            raise UnsafeStoreError(
                f"the store at {masked_url(url)} has maxmemory-policy {policy}, which can evict tasks; "
                "set it to noeviction, or pass allow_evicting_store=True "
                "(--allow-evicting-store) if losing tasks is acceptable"
            )
        async with anyio.create_task_group() as task_group:
            store = RedisStore(redis, task_group, notify, durability)
            try:
                yield store
            finally:
                with anyio.CancelScope(shield=True):
                    await store.stop_background()
                task_group.cancel_scope.cancel()
