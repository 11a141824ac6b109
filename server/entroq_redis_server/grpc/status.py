"""An ``ApiError`` as gRPC answers it: ``grpc-status``, ``grpc-message`` and
``grpc-status-details-bin`` trailers. I/O free.

The code and message are ``core.errors``' (the same mapping REST and Connect use); typed details
(``api.ModifyDep``, ``api.AuthzDep``) travel as a serialized ``google.rpc.Status`` whose
``details`` are ``google.protobuf.Any`` with ``type.googleapis.com/<full name>`` type URLs,
which is how EntroQ's Go client and grpcio's ``rpc_status`` read them
(docs/reference/entroq-v1-grpc-and-docs.md 3).
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from ..core.errors import CODE_NAMES, ApiError

OK = 0
CANCELLED = 1
TYPE_URL_PREFIX = "type.googleapis.com/"
# grpc-message is percent-encoded: printable ASCII but "%" stays as it is (PROTOCOL-HTTP2.md).
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
# An extra trailer naming the kind of a failure that shares its code with others
# (``outcome_unknown``: a write not confirmed by --wait-replicas/--wait-fsync in time).
REASON_TRAILER = b"entroq-reason"


def _status_class() -> Any:
    # google/rpc/status.proto is not part of protobuf's Python package: its descriptor is built
    # here (three fields), in a pool of its own that also holds google/protobuf/any.proto.
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    field = descriptor_pb2.FieldDescriptorProto
    status_file = descriptor_pb2.FileDescriptorProto(
        name="google/rpc/status.proto", package="google.rpc", syntax="proto3", dependency=[any_file.name]
    )
    status = status_file.message_type.add(name="Status")
    status.field.add(
        name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL, json_name="code"
    )
    status.field.add(
        name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL, json_name="message"
    )
    status.field.add(
        name="details",
        number=3,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
        json_name="details",
    )
    pool.Add(status_file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


Status: Any = _status_class()


def code_name(code: int) -> str:
    """The metrics label of a status code: OK, NOT_FOUND, ..."""
    return "OK" if code == OK else CODE_NAMES.get(code, "unknown").upper().replace("CANCELED", "CANCELLED")


def encode_message(message: str) -> bytes:
    return urllib.parse.quote(message, safe=_MESSAGE_SAFE).encode("ascii")


def details_bin(error: ApiError) -> bytes:
    """The serialized ``google.rpc.Status`` of an error, details included."""
    status = Status(code=error.code, message=error.message)
    for detail in error.details:
        status.details.add(
            type_url=TYPE_URL_PREFIX + detail.DESCRIPTOR.full_name, value=detail.SerializeToString()
        )
    return bytes(status.SerializeToString())


def ok_trailers() -> list[tuple[bytes, bytes]]:
    return [(b"grpc-status", b"0")]


def error_trailers(error: ApiError) -> list[tuple[bytes, bytes]]:
    """The trailers of a failed call."""
    trailers = [
        (b"grpc-status", str(error.code).encode()),
        (b"grpc-message", encode_message(error.message)),
    ]
    if error.details:
        # Binary metadata: base64, unpadded (gRPC accepts both; its own servers leave padding out).
        trailers.append((b"grpc-status-details-bin", base64.b64encode(details_bin(error)).rstrip(b"=")))
    if error.reason:
        trailers.append((REASON_TRAILER, error.reason.encode()))
    return trailers
