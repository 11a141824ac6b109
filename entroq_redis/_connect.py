"""``connect()``: one entry point for both backends, chosen by the URL's scheme."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._client import EntroQ
from ._durability import Durability
from ._errors import EntroQError, InvalidArgumentError
from ._masked_url import masked_url

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
HTTP_SCHEMES = ("http://", "https://")


def _leaves(group: BaseExceptionGroup[Any]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextlib.asynccontextmanager
async def _unwrapping(manager: contextlib.AbstractAsyncContextManager[Any]) -> AsyncIterator[Any]:
    """Enters ``manager``; an exception from the body leaves unwrapped.

    The backends run background tasks in task groups (coredis does too), and task groups
    wrap whatever crosses them in exception groups. A caller who writes
    ``except DependencyError`` around ``async with connect(...)`` must get exactly what
    their own code raised, so a group holding only that exception is unwrapped.
    """
    raised: list[BaseException] = []
    try:
        async with manager as value:
            try:
                yield value
            except BaseException as exc:
                raised.append(exc)
                raise
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1 and (leaves[0] in raised or isinstance(leaves[0], EntroQError)):
            # Our own setup errors (unreachable or unsafe store) are unwrapped too.
            raise leaves[0] from leaves[0].__cause__
        raise


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    namespace: str | None = None,
    claimant_id: str | None = None,
    allow_evicting_store: bool = False,
    token: str | None = None,
    durability: Durability | None = None,
) -> AsyncIterator[EntroQ]:
    """Opens a client on a store, a cluster, or an entroq-redis service.

    Args:
        url: Where to connect: ``redis://``, ``rediss://`` or ``unix://`` for one store;
            ``redis+cluster://host:port`` (or ``rediss+cluster://``) naming any node of a
            Redis/Valkey Cluster; ``http://`` or ``https://`` for the HTTP service.
        namespace: The key namespace on a store (all its keys share the hash tag
            ``{namespace}``; default ``eq``). Over HTTP it is sent as the
            ``EntroQ-Namespace`` header when given, else the service uses its default.
        claimant_id: This client's claimant ID; random by default.
        allow_evicting_store: Connect even if the store's maxmemory-policy may evict keys.
        token: Bearer token sent to an HTTP service.
        durability: On a store, wait for replica (and optionally AOF) acknowledgements
            after each claim and modify; see :class:`Durability`. A mutation not
            confirmed in time raises OutcomeUnknownError.

    Yields:
        An :class:`EntroQ` client, closed when the block exits. To work in several namespaces,
        open one client and take a view of each with :meth:`EntroQ.for_namespace`: every view
        shares the client's connection pool and wake subscription (on a store, a process then
        holds the connections of one namespace however many it uses), and they all close
        with this block.
    """
    if url.startswith(REDIS_SCHEMES):
        from ._redis_backend import open_redis_backend

        async with _unwrapping(
            open_redis_backend(
                url, namespace or "eq", allow_evicting_store=allow_evicting_store, durability=durability
            )
        ) as backend:
            yield EntroQ(backend, claimant_id)
    elif url.startswith(HTTP_SCHEMES):
        from ._http_backend import open_http_backend

        if durability is not None:
            raise InvalidArgumentError(
                "durability is the service's setting over HTTP (serve --wait-replicas)"
            )

        async with _unwrapping(open_http_backend(url, token=token, namespace=namespace)) as http_backend:
            yield EntroQ(http_backend, claimant_id)
    else:
        raise InvalidArgumentError(
            f"unsupported URL {masked_url(url)!r}: use redis://, rediss://, unix:// for a store, "
            "redis+cluster:// for a cluster, or http://, https:// for an entroq-redis service"
        )
