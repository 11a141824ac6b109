"""A short memory of credentials the policy recently did not refuse, to skip the
credentials-only decision that starts every authorized call. I/O free.

Every call first asks the policy about its credentials alone (an input with no queues), so
that a caller with bad credentials gets its 401 before the service builds, and the policy
walks, an input of the request's queues. That costs one small decision per call (measured
with the example policy in process: 0.17 ms for a static token, 0.34 ms for a JWT); for
credentials the policy did not refuse within the last REMEMBER_S seconds (accepted, or not
judged: a policy without ``authenticated``) it is skipped.

Why this is safe: the memory only skips that early check. The call's own decision still
carries the credentials and the policy still judges them, so a token that expired or was
revoked a moment ago gets its 401 from that decision; nothing remembered changes what any
call is allowed. Entries are keyed by the exact header and namespace (one caller's input
cannot add or change another's), refused credentials are never kept, a JWT's entry ends at
its ``exp`` if that comes first, and the memory holds at most MAX_REMEMBERED entries.
"""

from __future__ import annotations

import base64
import binascii
import json
import time

REMEMBER_S = 10.0
MAX_REMEMBERED = 10_000


class RecentlyAuthenticated:
    def __init__(self, remember_s: float = REMEMBER_S) -> None:
        self.remember_s = remember_s
        self._until: dict[tuple[str, str], float] = {}

    def knows(self, header: str, namespace: str) -> bool:
        until = self._until.get((header, namespace))
        if until is None:
            return False
        if time.time() >= until:
            del self._until[(header, namespace)]
            return False
        return True

    def remember(self, header: str, namespace: str) -> None:
        if len(self._until) >= MAX_REMEMBERED:
            self._until.clear()  # rare; the next calls simply ask again
        until = time.time() + self.remember_s
        expiry = jwt_expiry(header)
        if expiry is not None:
            until = min(until, expiry)
        self._until[(header, namespace)] = until


def jwt_expiry(header: str) -> float | None:
    """The unverified ``exp`` of a bearer JWT, or None (not a JWT, no numeric exp).

    Unverified is enough here: it can only shorten how long an entry is kept."""
    token = header.partition(" ")[2]
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1].rstrip("=")
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)
