"""``connect()``: one entry point for both backends, chosen by the URL's scheme."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._client import EntroQ
from ._errors import EntroQError, InvalidArgumentError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
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
) -> AsyncIterator[EntroQ]:
    """Opens a client on a store (redis://, rediss://, unix://) or a service (http://, https://).

    Args:
        url: Where to connect.
        namespace: The key namespace on a store (all its keys share the hash tag
            ``{namespace}``; default ``eq``). Over HTTP it is sent as the
            ``EntroQ-Namespace`` header when given, else the service uses its default.
        claimant_id: This client's claimant ID; random by default.
        allow_evicting_store: Connect even if the store's maxmemory-policy may evict keys.
        token: Bearer token sent to an HTTP service.

    Yields:
        An :class:`EntroQ` client, closed when the block exits.
    """
    if url.startswith(REDIS_SCHEMES):
        from ._redis_backend import open_redis_backend

        async with _unwrapping(
            open_redis_backend(url, namespace or "eq", allow_evicting_store=allow_evicting_store)
        ) as backend:
            yield EntroQ(backend, claimant_id)
    elif url.startswith(HTTP_SCHEMES):
        from ._http_backend import open_http_backend

        async with _unwrapping(open_http_backend(url, token=token, namespace=namespace)) as http_backend:
            yield EntroQ(http_backend, claimant_id)
    else:
        raise InvalidArgumentError(
            f"unsupported URL {url!r}: use redis://, rediss://, unix:// for a store "
            "or http://, https:// for an entroq-redis service"
        )
