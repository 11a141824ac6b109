"""``connect()``: one entry point for both backends, chosen by the URL's scheme."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ._client import EntroQ
from ._errors import InvalidArgumentError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
HTTP_SCHEMES = ("http://", "https://")


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    namespace: str = "eq",
    claimant_id: str | None = None,
    allow_evicting_store: bool = False,
    token: str | None = None,
) -> AsyncIterator[EntroQ]:
    """Opens a client on a store (redis://, rediss://, unix://) or a service (http://, https://).

    Args:
        url: Where to connect.
        namespace: The key namespace on a store (all its keys share the hash tag
            ``{namespace}``); ignored for HTTP, where the service chose it.
        claimant_id: This client's claimant ID; random by default.
        allow_evicting_store: Connect even if the store's maxmemory-policy may evict keys.
        token: Bearer token sent to an HTTP service.

    Yields:
        An :class:`EntroQ` client, closed when the block exits.
    """
    if url.startswith(REDIS_SCHEMES):
        from ._redis_backend import open_redis_backend

        async with open_redis_backend(url, namespace, allow_evicting_store=allow_evicting_store) as backend:
            yield EntroQ(backend, claimant_id)
    elif url.startswith(HTTP_SCHEMES):
        from ._http_backend import open_http_backend

        async with open_http_backend(url, token=token) as http_backend:
            yield EntroQ(http_backend, claimant_id)
    else:
        raise InvalidArgumentError(
            f"unsupported URL {url!r}: use redis://, rediss://, unix:// for a store "
            "or http://, https:// for an entroq-redis service"
        )
