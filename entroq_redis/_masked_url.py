"""Store and service URLs as they may be shown: with any password masked.

A URL can carry a password (``redis://user:PASSWORD@host``, ``redis://:PASSWORD@host``, or a
``?password=`` query argument, which coredis accepts too). Every message and log line that names
a URL shows it through ``masked_url``, so a password never reaches a log, a terminal or a bug
report, whatever the error.
"""

from __future__ import annotations

import re

MASK = "***"

# Query arguments whose value is a credential (coredis reads ``password`` and ``username``
# from the query string; the others are common in service URLs).
_SECRET_QUERY = re.compile(
    r"([?&](?:password|passwd|pass|pwd|token|access_token|secret|auth)=)[^&#]*", re.IGNORECASE
)
_MASKED_VALUE = rf"\g<1>{MASK}"


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``.

    The user name stays (it helps to tell stores apart); a user part without a ``:``
    (``redis://SECRET@host``) is masked whole, because some clients read it as a password.
    The authority ends where ``urllib.parse`` (and so coredis and httpx) ends it: at the first
    ``/``, ``?`` or ``#``. A URL whose password holds one of those unescaped has its ``@``
    after that point: then everything up to its last ``@`` is masked, rather than risk
    showing part of a password.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _SECRET_QUERY.sub(_MASKED_VALUE, url)
    ends = [at for at in (rest.find(mark) for mark in "/?#") if at >= 0]
    authority_end = min(ends, default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    user, at_sign, host = authority.rpartition("@")
    if not at_sign and "@" in tail:
        return f"{scheme}://{MASK}@{rest.rpartition('@')[2]}"
    if at_sign:
        name, colon, _password = user.partition(":")
        authority = f"{name}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    return f"{scheme}://{authority}{_SECRET_QUERY.sub(_MASKED_VALUE, tail)}"


def url_has_secret(url: str) -> bool:
    """Whether ``url`` carries a password (or anything ``masked_url`` would hide)."""
    return masked_url(url) != url
