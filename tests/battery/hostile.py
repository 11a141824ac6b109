"""Helpers for the hostile-input battery (row f): store snapshots, raw HTTP, odd strings.

A rejected request must leave the store exactly as it was, so the tests compare snapshots of
every key (``DUMP`` of each: type, contents and encoding) before and after. Raw HTTP over a
socket is for what httpx will not send: bodies larger than the limit streamed past the point
where the server answers, and bytes that are not valid UTF-8 in a request line.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import redis
import redis.crc

# Strings that mean something to Lua, Redis, glob patterns, key layouts, JSON, shells or
# terminals, and unicode that normalizes, reorders or hides. Each is at most 64 bytes, so it
# can also be a task ID. They must be stored and returned byte for byte: they only ever travel
# as script ARGV data, never inside Lua source or a key's hash tag.
HOSTILE_STRINGS = [
    "]] redis.call('FLUSHALL') --",
    "'); redis.call('FLUSHDB'); --",
    "${jndi:ldap://x}",
    "{eq}:queues",
    "{other}:t:x",
    "}{",
    "{",
    "}",
    "a:b:c",
    "t:",
    "*",
    "?",
    "[a-z]",
    "\\",
    "%00%ff",
    "\x00",
    "a\x00b",
    "\r\n*1\r\n$8\r\nFLUSHALL\r\n",
    "\x1b[2J",
    '"quoted"',
    "\u00e9",  # NFC e-acute
    "e\u0301",  # NFD: e + combining acute; a different queue from the NFC one
    "\u202eevil\u202c",  # right-to-left override
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew (RTL)
    "\U0001f600",  # emoji
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ family emoji
    "\ufeffbom",
    "\uffff\U0010ffff",  # noncharacters
    " ",
    "x" * 64,
]

# Lua-looking values, stored as bytes.
HOSTILE_VALUES = [
    b"]] redis.call('FLUSHALL') --",
    b"\x00",
    b"\x00" * 1000,
    bytes(range(256)),
    b"[" * 1024 * 1024,
    b"\xff\xfe\xfd",
    b"\xc0\xaf",  # overlong UTF-8
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def namespace_state(client: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of a namespace with its DUMP (contents and type)."""
    return {key: client.dump(key) for key in client.scan_iter(match="{" + namespace + "}:*", count=1000)}


def store_digest(client: redis.Redis) -> bytes:
    """DEBUG DIGEST of the whole store (private stores, started with debug commands on)."""
    return bytes(client.execute_command("DEBUG", "DIGEST"))


def store_state(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the database with its DUMP: for private stores only."""
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


def outside_namespace(keys: Iterator[bytes] | list[bytes], namespace: str) -> list[bytes]:
    """Keys that are not in the namespace, or not in its cluster slot."""
    prefix = ("{" + namespace + "}:").encode()
    slot = redis.crc.key_slot(prefix)
    return [key for key in keys if not key.startswith(prefix) or redis.crc.key_slot(key) != slot]


@dataclasses.dataclass
class RssSampler:
    """Samples a process's resident memory (with its children) in a thread, to see the peak
    while a request streams into it."""

    pid: int
    interval: float = 0.01
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _rss(self) -> int:
        process = psutil.Process(self.pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
        return total

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self._rss()

        def run() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / (1024 * 1024)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
