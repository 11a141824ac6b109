"""How a task value is shown: JSON pretty-printed, else UTF-8 text, else a hex dump. I/O free.

Values are bytes of any size (up to the service's body limit), so every form is capped; the
raw download serves the whole value. Whatever the form, the text is user data: templates
escape it like everything else.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
from typing import Literal

# The page shows at most this much of a value: a JSON value larger than this is shown as text.
TEXT_CAP = 64 * 1024
HEX_CAP = 4 * 1024
# The one-line preview in task lists.
SHORT_CAP = 120

Kind = Literal["empty", "json", "text", "binary"]
# Control characters that make "text" unreadable (tab, line feed and carriage return are fine).
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D}


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    kind: Kind
    text: str
    size: int
    truncated: bool


def preview(value: bytes, cap: int = TEXT_CAP) -> Preview:
    """The value as the page shows it."""
    size = len(value)
    if not value:
        return Preview("empty", "", 0, False)
    if size <= cap:
        try:
            parsed = json.loads(value)
        except ValueError:
            pass
        else:
            pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
            return Preview("json", pretty[:cap], size, len(pretty) > cap)
    text = _text(value[:cap], final=size <= cap)
    if text is not None:
        return Preview("text", text, size, size > cap)
    shown = value[: min(cap, HEX_CAP)]
    return Preview("binary", hex_dump(shown), size, len(shown) < size)


def short(value: bytes) -> Preview:
    """A one-line preview for lists: JSON compacted, text on one line, binary as hex."""
    shown = preview(value, cap=SHORT_CAP * 4)
    if shown.kind == "binary":
        text = value[: SHORT_CAP // 3].hex(" ")
        return Preview("binary", text, len(value), len(value) > SHORT_CAP // 3)
    elif shown.kind == "json":
        text = json.dumps(json.loads(value), ensure_ascii=False, separators=(",", ":"))
    else:
        text = " ".join(shown.text.split())
    return Preview(shown.kind, text[:SHORT_CAP], len(value), shown.truncated or len(text) > SHORT_CAP)


def _text(data: bytes, final: bool) -> str | None:
    """The bytes as UTF-8 text, or None if they are not readable text. A prefix cut inside a
    multi-byte character (``final`` False) keeps the complete characters before the cut."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return None
    if any(ord(c) in _CONTROL for c in text):
        return None
    return text


def hex_dump(data: bytes) -> str:
    """Offset, 16 bytes in hex, and their printable ASCII, per line (as ``hexdump -C``)."""
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        hex_part = " ".join(f"{b:02x}" for b in row)
        ascii_part = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}  {hex_part:<47}  |{ascii_part}|")
    return "\n".join(lines)
