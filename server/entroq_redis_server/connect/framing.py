"""The Connect protocol's framing and headers, and the long-poll deadline headers. I/O free.

Connect unary (``POST /api.EntroQ/<Method>``, ``application/json``) is just the bare
request and response messages; server streaming (``StreamTasks``,
``application/connect+json``) wraps each message in an envelope: one flag byte, a 4-byte
big-endian length, the JSON. The last envelope has flag 0x02 and carries ``{}`` or
``{"error": {...}}``. See https://connectrpc.com/docs/protocol.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from ..core.errors import ApiError, bad_request, connect_body
from ..core.hooks import HeaderMap

END_STREAM = 0x02
COMPRESSED = 0x01
_HEADER = struct.Struct(">BI")

UNARY_JSON = "application/json"
STREAM_JSON = "application/connect+json"


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_timeout_s(headers: HeaderMap) -> float | None:
    """The caller's deadline in seconds from ``Connect-Timeout-Ms`` or ``X-Server-Timeout``.

    ``Connect-Timeout-Ms`` is at most 10 digits of milliseconds (Connect's rule);
    ``X-Server-Timeout`` is seconds as a decimal number (the REST transcoder's header EntroQ's
    Go server honours). With both, the earlier wins. None means no deadline.
    """
    deadlines = []
    connect = headers.get("Connect-Timeout-Ms")
    if connect is not None:
        text = connect.strip()
        if not text.isdigit() or len(text) > 10:
            raise bad_request(f"Connect-Timeout-Ms must be 1 to 10 digits, got {connect!r}")
        deadlines.append(int(text) / 1000)
    server = headers.get("X-Server-Timeout")
    if server is not None:
        try:
            seconds = float(server)
        except ValueError:
            raise bad_request(f"X-Server-Timeout must be a number of seconds, got {server!r}") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise bad_request(f"X-Server-Timeout must be a non-negative number of seconds, got {server!r}")
        deadlines.append(seconds)
    return min(deadlines) if deadlines else None


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return _HEADER.pack(flags, len(payload)) + payload


def end_stream(error: ApiError | None = None) -> bytes:
    """The final envelope of a stream: ``{}`` on success, else the error in Connect's shape."""
    body: dict[str, Any] = {} if error is None else {"error": connect_body(error)}
    return envelope(json.dumps(body, separators=(",", ":")).encode(), END_STREAM)


def single_message(data: bytes) -> bytes:
    """The payload of a streaming request's one envelope (server streaming sends exactly one)."""
    if len(data) < _HEADER.size:
        raise bad_request("the streaming request body must be one Connect envelope")
    flags, length = _HEADER.unpack_from(data)
    if flags & COMPRESSED:
        raise bad_request("compressed Connect envelopes are not supported")
    payload = data[_HEADER.size : _HEADER.size + length]
    if len(payload) != length or len(data) != _HEADER.size + length:
        raise bad_request("the streaming request body must be exactly one complete Connect envelope")
    return payload
