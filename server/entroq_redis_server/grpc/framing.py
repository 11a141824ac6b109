"""gRPC's length-prefixed messages and its ``grpc-timeout`` header. I/O free.

A gRPC request or response body is a sequence of messages, each one flag byte (bit 0:
compressed), a 4-byte big-endian length and the serialized protobuf. This service speaks
``identity`` encoding only: a compressed message is refused (UNIMPLEMENTED) with a message
saying so, as the gRPC protocol asks of a server that does not support the encoding.
See https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.
"""

from __future__ import annotations

import re
import struct

from ..core.errors import ApiError, bad_request, too_large, unimplemented

_PREFIX = struct.Struct(">BI")
PREFIX_BYTES = _PREFIX.size
COMPRESSED = 0x01

# grpc-timeout: at most 8 digits and a unit (PROTOCOL-HTTP2.md).
_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def frame(payload: bytes) -> bytes:
    """One uncompressed message with its 5-byte prefix."""
    return _PREFIX.pack(0, len(payload)) + payload


def parse_timeout_s(value: str | None) -> float | None:
    """The caller's deadline in seconds from ``grpc-timeout`` (None: no deadline).

    Raises:
        ApiError: INVALID_ARGUMENT for a value that is not 1-8 digits and a unit of H M S m u n.
    """
    if value is None:
        return None
    match = _TIMEOUT.fullmatch(value.strip())
    if match is None:
        raise bad_request(
            f"grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u or n), got {value!r}"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class MessageReader:
    """Collects a request body's messages as its chunks arrive, never holding more than the
    limit: a message longer than ``max_message_bytes`` is refused from its prefix, before its
    bytes are read."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self.messages: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        """Takes the next chunk of the body.

        Raises:
            ApiError: RESOURCE_EXHAUSTED for a message over the limit; UNIMPLEMENTED for a
                compressed one.
        """
        self._buffer += chunk
        if self.messages and self._buffer:
            # Unary and server-streaming requests carry one message: never buffer a second.
            raise too_many()
        while len(self._buffer) >= PREFIX_BYTES:
            flags, length = _PREFIX.unpack_from(self._buffer)
            if flags & COMPRESSED:
                raise compressed()
            if length > self.max_message_bytes:
                raise message_too_large(self.max_message_bytes)
            if len(self._buffer) < PREFIX_BYTES + length:
                return
            self.messages.append(bytes(self._buffer[PREFIX_BYTES : PREFIX_BYTES + length]))
            del self._buffer[: PREFIX_BYTES + length]

    def single(self) -> bytes:
        """The body's one message (unary and server-streaming calls send exactly one).

        Raises:
            ApiError: INVALID_ARGUMENT for no message, a cut-off one, or more than one.
        """
        if self._buffer:
            raise bad_request("the request ends inside a gRPC message (its length prefix says more)")
        if not self.messages:
            raise bad_request("the gRPC request carries no message (it needs exactly one)")
        return self.messages[0]


def too_many() -> ApiError:
    return bad_request("the gRPC request carries more than one message (this method takes exactly one)")


def compressed() -> ApiError:
    return unimplemented("compressed gRPC messages are not supported: send them uncompressed (identity)")


def message_too_large(limit: int) -> ApiError:
    # The same error as an HTTP body over the limit (RESOURCE_EXHAUSTED), worded for gRPC.
    error = too_large(limit)
    error.message = f"gRPC request message is larger than the limit of {limit} bytes"
    return error
