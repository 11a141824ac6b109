"""The example policy's published credentials, which ``serve --authz rego`` refuses to run with.

The example data (deploy/authz/data.json) holds a JWT secret and the SHA-256 of three tokens
that the docs and the tests print: anyone who has read them can sign a JWT or send a token
as alice, bob or ops. They are found by value wherever they sit in the policy data, so a copy
of the example data under another name, or one with only some entries replaced, is caught too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

EXAMPLE_JWT_SECRET = "example-only-replace-me"
EXAMPLE_TOKENS = ("alice-token", "bob-token", "ops-token")


def _published() -> dict[str, str]:
    """Each published value (the data holds token hashes; raw tokens would do as well) -> what it is."""
    found = {EXAMPLE_JWT_SECRET: "the example JWT secret"}
    for token in EXAMPLE_TOKENS:
        found[hashlib.sha256(token.encode()).hexdigest()] = f"the hash of example token {token!r}"
        found[token] = f"example token {token!r}"
    return found


PUBLISHED = _published()


def example_credentials_in(data: Any) -> list[str]:
    """Where ``data`` (a JSON document) holds a published credential, as keys or string values:
    ``["the example JWT secret at entroq.jwt.secret", ...]``, in document order."""
    found: list[str] = []
    # (where the value sits, the key naming it, the value); a list as a stack, not recursion:
    # the data may be nested deeper than Python's stack.
    pending: list[tuple[str, str | None, Any]] = [("", None, data)]
    while pending:
        parent, key, value = pending.pop()
        if key is not None and _what(key):
            found.append(f"{_what(key)} at {parent or '(top)'}")
        path = parent if key is None else (f"{parent}.{key}" if parent else key)
        if isinstance(value, dict):
            pending.extend((path, str(k), item) for k, item in reversed(list(value.items())))
        elif isinstance(value, list):
            pending.extend(
                (f"{path}[{index}]", None, item) for index, item in reversed(list(enumerate(value)))
            )
        elif isinstance(value, str) and _what(value):
            found.append(f"{_what(value)} at {path or '(top)'}")
    return found


def example_credentials_in_file(path: str) -> list[str]:
    """``example_credentials_in`` the JSON file at ``path`` (already checked to load)."""
    with open(path, encoding="utf-8") as handle:
        return example_credentials_in(json.load(handle))


def _what(text: str) -> str | None:
    # A digest written in capitals is the same digest.
    return PUBLISHED.get(text) or PUBLISHED.get(text.lower())
