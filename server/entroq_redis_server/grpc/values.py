"""EntroQ v1's task values and doc contents (``google.protobuf.Value``) <-> the stored bytes. I/O free.

The v1 schema and the bytes schema share every field number, and a ``bytes`` field and a
message field are both length-delimited on the wire. So a v1 request is parsed with the bytes
schema's classes (``core.schema``): each task value then holds the serialized ``Value``, which is
rewritten here into the stored form of that JSON value (``_values.json_to_bytes``: the same
compact JSON text an HTTP JSON client's value is stored as). Responses go the other way:
stored bytes -> the JSON value an HTTP JSON client would read (``_values.bytes_to_json``) ->
a serialized ``Value`` in the bytes field, which a v1 client reads as its ``Value``.

A ``Value`` number is a double: an integral number of magnitude below 2**53 is stored as an
integer (``3``, not ``3.0``), so values written over gRPC and over HTTP read the same.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message, struct_pb2

from ..core import values as _values
from ..core.errors import bad_request

# Integers a double holds exactly.
_EXACT = 2**53


def _to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) < _EXACT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: _to_python(item) for key, item in value.struct_value.fields.items()}
    return [_to_python(item) for item in value.list_value.values]


def _to_value(data: Any, value: struct_pb2.Value) -> None:
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, int | float):
        value.number_value = float(data)
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, dict):
        value.struct_value.SetInParent()  # {} is an empty struct, not an unset value
        for key, item in data.items():
            _to_value(item, value.struct_value.fields[key])
    else:
        value.list_value.SetInParent()
        for item in data:
            _to_value(item, value.list_value.values.add())


def stored(raw: bytes) -> bytes:
    """The stored bytes of a serialized ``google.protobuf.Value`` (empty: no value).

    Raises:
        ApiError: INVALID_ARGUMENT if it is not a Value, or holds NaN or an infinity.
    """
    if not raw:
        return b""
    try:
        value = struct_pb2.Value.FromString(raw)
    except (message.DecodeError, RecursionError) as exc:
        raise bad_request(f"invalid value: not a google.protobuf.Value ({exc})") from None
    try:
        return _values.json_to_bytes(_to_python(value))
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"invalid value: {exc}") from None


def wire(raw: bytes) -> bytes:
    """The serialized ``google.protobuf.Value`` a v1 client reads for stored bytes (empty: none)."""
    data = _values.bytes_to_json(raw)
    if data is None:
        return b""
    value = struct_pb2.Value()
    _to_value(data, value)
    return bytes(value.SerializeToString())


def request_to_stored(request: Any) -> None:
    """Rewrites a ModifyRequest's task values (inserts, change new data) and doc contents (doc
    inserts, doc change new data) in place."""
    for data in request.inserts:
        data.value = stored(data.value)
    for change in request.changes:
        if change.HasField("new_data"):
            change.new_data.value = stored(change.new_data.value)
    for doc in request.doc_inserts:
        doc.content = stored(doc.content)
    for doc_change in request.doc_changes:
        if doc_change.HasField("new_data"):
            doc_change.new_data.content = stored(doc_change.new_data.content)


def response_to_wire(response: Any) -> None:
    """Rewrites the task values and doc contents of a response in place."""
    name = response.DESCRIPTOR.name
    tasks: list[Any] = []
    docs: list[Any] = []
    if name == "ClaimResponse":
        tasks = [response.task] if response.HasField("task") else []
    elif name == "ModifyResponse":
        tasks = [*response.inserted, *response.changed]
        docs = [*response.inserted_docs, *response.changed_docs]
    elif name == "TasksResponse":
        tasks = list(response.tasks)
    elif name in ("DocsResponse", "ClaimDocsResponse"):
        docs = list(response.docs)  # ClaimDocsResponse.sets hold no content
    for task in tasks:
        task.value = wire(task.value)
    for doc in docs:
        doc.content = wire(doc.content)
