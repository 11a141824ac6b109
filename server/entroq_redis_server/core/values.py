"""Task values between the store (bytes) and the wire: base64 or JSON. I/O free.

Values are bytes end to end (docs/design.md 2.2). EntroQ's seed-era clients send and read them as
base64 (protobuf ``bytes``); every later client (PyPI ``entroq`` 0.12 on) sends and reads any
JSON value (``google.protobuf.Value``). The store keeps no "this was JSON" flag, so:

- a JSON value is stored as its compact JSON text in UTF-8 (``null`` as no value at all), and
  read back as the JSON it parses to: equal JSON, not the same text;
- bytes read by a JSON-era caller are parsed as JSON when they are JSON text (what a seed-era
  producer of JSON work items stores); otherwise UTF-8 text (no control characters but tab,
  newline and carriage return) becomes a JSON string, and any other bytes a base64 string,
  which that caller cannot tell from a real string (the lossy cross-generation case of the
  compatibility plan, docs/reference/entroq-client-generations.md 5.3 point 2, documented in
  docs/migrating.md);
- a JSON value read by a seed-era caller is base64 of its JSON text.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any, Literal

ValueEncoding = Literal["base64", "json"]
BASE64: ValueEncoding = "base64"
JSON: ValueEncoding = "json"
ENCODINGS: tuple[ValueEncoding, ...] = (BASE64, JSON)

# C0 controls other than tab, newline and carriage return, and DEL.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def json_to_bytes(value: Any) -> bytes:
    """The stored form of a JSON value: compact UTF-8 JSON text; ``null`` is no value (b"").

    Raises:
        ValueError: the value holds NaN or an infinity (not JSON, though Python parses them).
    """
    if value is None:
        return b""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    # 1e999 is JSON text, but the float it parses to cannot be written back as JSON.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} does not fit a double")
    return number


def bytes_to_json(raw: bytes) -> Any:
    """What a JSON-era caller reads for stored bytes (None: no value, the field is omitted)."""
    if not raw:
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode()
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        pass
    # Binary data can be valid UTF-8 by chance; control characters say it is not text.
    if _CONTROL.search(text):
        return base64.b64encode(raw).decode()
    return text
