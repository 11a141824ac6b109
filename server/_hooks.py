"""Per-request hooks: the place where authorization (issue 7) plugs in.

Every EntroQ call, REST or Connect, is decoded first and then handed to the service's
:class:`Authorizer` before the library sees it. The default allows everything.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One decoded EntroQ call.

    Attributes:
        method: The EntroQ RPC name (TryClaim, Claim, Modify, Tasks, Queues, QueueStats, Time,
            StreamTasks), whichever route carried it.
        namespace: The namespace the call works in.
        headers: The HTTP request headers (case-insensitive lookup).
        request: The decoded ``api.*`` request message.
    """

    method: str
    namespace: str
    headers: HeaderMap
    request: Any


class HeaderMap(Protocol):
    """Read access to request headers (werkzeug's Headers, or a dict in tests)."""

    def get(self, key: str, /) -> str | None: ...


class Authorizer(Protocol):
    async def authorize(self, call: Call) -> None:
        """Returns to allow the call; raises ``entroq_redis.PermissionDeniedError`` to refuse it
        (status 401: missing or bad credentials; 403: denied) or ``StoreUnavailableError`` when
        the policy cannot be evaluated (503: fail closed)."""
        ...


class AllowAll:
    """The default: every call is allowed."""

    async def authorize(self, call: Call) -> None:
        return None
