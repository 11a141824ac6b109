"""Looking at and breaking a store's keys from outside the library (tests/test_battery_lua.py,
tests/test_battery_lua_docs.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis


def state(raw: redis.Redis, namespace: str, leave_out: bytes = b"") -> dict[bytes, bytes | None]:
    return {
        key: raw.dump(key)
        for key in raw.scan_iter(match="{" + namespace + "}:*", count=1000)
        if key != leave_out
    }


def plant_wrong_type(raw: redis.Redis, key: bytes) -> None:
    """Replaces a key by one of a type no script expects there."""
    kind = raw.type(key)
    raw.delete(key)
    if kind == b"string":
        raw.hset(key, "planted", "1")  # a GET on a hash: WRONGTYPE
    else:
        raw.set(key, "planted")  # a ZSET or HASH command on a string: WRONGTYPE


@contextlib.contextmanager
def slowlog(raw: redis.Redis) -> Iterator[list[float]]:
    """Collects the store-side duration (ms) of every EVALSHA/EVAL run inside the block."""
    old = raw.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    raw.config_set("slowlog-max-len", 10_000)
    raw.config_set("slowlog-log-slower-than", 0)
    raw.slowlog_reset()
    durations: list[float] = []
    try:
        yield durations
    finally:
        for entry in raw.slowlog_get(10_000):
            if entry["command"].split(b" ")[0].upper() in (b"EVALSHA", b"EVAL", b"EVALSHA_RO"):
                durations.append(entry["duration"] / 1000)
        raw.config_set("slowlog-log-slower-than", old)
