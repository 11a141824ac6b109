"""Counting a client's connections to the store: name them, then read CLIENT LIST."""

from __future__ import annotations

import urllib.parse
from typing import Any

import redis

# coredis's default pool bound (neither the library nor the service changes it).
POOL_BOUND = 64


def named_url(store_url: str, client_name: str) -> str:
    """``store_url`` with the name every connection made from it sets (CLIENT SETNAME)."""
    parts = urllib.parse.urlsplit(store_url)
    query = "&".join(q for q in (parts.query, f"client_name={client_name}") if q)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path or "/", query=query))


def service_clients(store: redis.Redis, name: str) -> list[dict[str, Any]]:
    """The connections named ``name`` (see ``named_url``), as CLIENT LIST describes them."""
    return [c for c in store.client_list() if c.get("name") == name]


def subscribed(client: dict[str, Any]) -> int:
    """How many channels and patterns a connection is subscribed to."""
    return sum(int(client.get(field, 0)) for field in ("sub", "psub", "ssub"))
