"""Per-request hooks: the place where authorization (docs/design.md 2.12) plugs in.

Every EntroQ call, REST or Connect, is decoded first and then handed to the service's
:class:`Authorizer` before the library sees it. The default allows everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import entroq_redis

# Runs the call on the library with the given request message; returns the response message.
Proceed = Callable[[Any], Awaitable[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One decoded EntroQ call.

    Attributes:
        method: The EntroQ RPC name (TryClaim, Claim, Modify, Tasks, Queues, QueueStats, Time,
            StreamTasks), whichever route carried it.
        namespace: The namespace the call works in.
        headers: The HTTP request headers (case-insensitive lookup).
        request: The decoded ``api.*`` request message.
        request_id: The request's ID (its ``X-Request-Id`` response header), for the audit log.
    """

    method: str
    namespace: str
    headers: HeaderMap
    request: Any
    request_id: str = ""


class HeaderMap(Protocol):
    """Read access to request headers (werkzeug's Headers, or a dict in tests)."""

    def get(self, key: str, /) -> str | None: ...


class Authorizer(Protocol):
    async def authorize(self, call: Call) -> None:
        """Returns to allow the call; raises ``entroq_redis.PermissionDeniedError`` to refuse it
        (status 401: missing or bad credentials; 403: denied) or ``StoreUnavailableError`` when
        the policy cannot be evaluated (503: fail closed)."""
        ...

    async def run(self, call: Call, client: entroq_redis.EntroQ, proceed: Proceed) -> Any:
        """Runs a call that ``authorize`` let through: ``await proceed(call.request)`` at its
        simplest. An authorizer that needs the store to decide (the real source queue of a
        task a modify moves) looks it up with ``client``, may run a narrowed request, and may
        filter the response (listings show only the queues the caller may read). Raises as
        ``authorize`` does."""
        ...


class AllowAll:
    """The default: every call is allowed."""

    async def authorize(self, call: Call) -> None:
        return None

    async def run(self, call: Call, client: entroq_redis.EntroQ, proceed: Proceed) -> Any:
        return await proceed(call.request)
