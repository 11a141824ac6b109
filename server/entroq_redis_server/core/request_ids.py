"""Request IDs: every response carries ``X-Request-Id``, and the audit log names the same ID.

An incoming ``X-Request-Id`` is kept when it is well formed (1 to 64 characters of letters,
digits and ``._:-``, starting with a letter or digit; a single header), so an ID set by a
proxy or the client follows the request through this service's audit log and answers.
Anything else (missing, repeated, too long, other characters) is replaced by a new random
ID. A kept ID is the caller's claim, not proof: the audit line also carries the time and the
caller's identity.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def request_id(incoming: Sequence[str]) -> str:
    """The ID of a request whose ``X-Request-Id`` headers are ``incoming``."""
    if len(incoming) == 1 and _WELL_FORMED.fullmatch(incoming[0]):
        return incoming[0]
    return uuid.uuid4().hex
