"""EntroQ's wire messages as real protobuf classes, built at import time from a table.

One table gives two schemas (docs/reference/entroq-v1-grpc-and-docs.md 1): ``"bytes"``, the
seed's, with ``bytes`` task values and doc contents, which the service uses inside (HTTP, and gRPC with
``--grpc-values bytes``), and ``"v1"``, EntroQ v1's gRPC schema, where they are
``google.protobuf.Value``. Both carry the document messages and RPCs (EntroQ v1.1's, plus our
protocol-2 additions numbered from 100). The two share field numbers, so the gRPC front end
reads v1 requests with the bytes classes and rewrites only the values.

The table mirrors ``entroq.proto`` (kept beside this file as the readable bytes schema;
``tests/protos/`` holds both schemas as .proto files); tests compile those files with protoc
and check that the descriptors built here are identical, so they cannot drift. Building the
descriptor in code keeps generated ``*_pb2.py`` files out of the tree and needs no .proto
parser at run time. protobuf's ``json_format`` then gives the exact proto3 JSON mapping
(docs/architecture.md, "HTTP wire format").
"""

from __future__ import annotations

from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, ServiceDescriptor

PACKAGE = "api"
FILE_NAME = "entroq.proto"
STRUCT_FILE = "google/protobuf/struct.proto"

Schema = Literal["bytes", "v1"]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "bool": _F.TYPE_BOOL,
}

# name -> values in number order, as in entroq.proto.
ENUMS: dict[str, list[str]] = {
    "ChangeMode": ["CHANGE_DEFAULT", "CHANGE_LEASE", "CHANGE_RESET_CLAIMS"],
    "ActionType": ["CLAIM", "DELETE", "CHANGE", "DEPEND", "DETAIL", "INSERT", "READ"],
}

# message -> fields (name, number, type, repeated), in the order of entroq.proto. A type is a
# scalar name, the name of a message or enum of this file, or "value": a task value or doc
# content, bytes in the bytes schema and google.protobuf.Value in v1. The two schemas differ
# only there.
MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "TaskID": [("id", 1, "string", False), ("version", 2, "int32", False), ("queue", 3, "string", False)],
    "TaskData": [
        ("queue", 1, "string", False),
        ("at_ms", 2, "int64", False),
        ("value", 3, "value", False),
        ("id", 4, "string", False),
        ("attempt", 5, "int32", False),
        ("err", 6, "string", False),
        ("by_ms", 7, "int64", False),
    ],
    "TaskChange": [
        ("old_id", 1, "TaskID", False),
        ("new_data", 2, "TaskData", False),
        ("mode", 3, "ChangeMode", False),
    ],
    "Task": [
        ("queue", 1, "string", False),
        ("id", 2, "string", False),
        ("version", 3, "int32", False),
        ("at_ms", 4, "int64", False),
        ("claimant_id", 5, "string", False),
        ("value", 6, "value", False),
        ("created_ms", 7, "int64", False),
        ("modified_ms", 8, "int64", False),
        ("claims", 9, "int32", False),
        ("attempt", 10, "int32", False),
        ("err", 11, "string", False),
    ],
    "QueueStats": [
        ("name", 1, "string", False),
        ("num_tasks", 2, "int32", False),
        ("num_claimed", 3, "int32", False),
        ("num_available", 4, "int32", False),
        ("max_claims", 5, "int32", False),
        ("num_future", 6, "int32", False),
    ],
    "ClaimRequest": [
        ("claimant_id", 1, "string", False),
        ("queues", 2, "string", True),
        ("duration_ms", 3, "int64", False),
        ("poll_ms", 4, "int64", False),
        ("finish", 100, "TaskID", True),
        ("task_id", 101, "string", False),
    ],
    "ClaimResponse": [("task", 1, "Task", False)],
    "ModifyRequest": [
        ("claimant_id", 1, "string", False),
        ("inserts", 2, "TaskData", True),
        ("changes", 3, "TaskChange", True),
        ("deletes", 4, "TaskID", True),
        ("depends", 5, "TaskID", True),
        ("doc_inserts", 6, "DocData", True),
        ("doc_changes", 7, "DocChange", True),
        ("doc_deletes", 8, "DocID", True),
        ("doc_depends", 9, "DocID", True),
    ],
    "ModifyResponse": [
        ("inserted", 1, "Task", True),
        ("changed", 2, "Task", True),
        ("inserted_docs", 3, "Doc", True),
        ("changed_docs", 4, "Doc", True),
    ],
    "ModifyDep": [
        ("type", 1, "ActionType", False),
        ("id", 2, "TaskID", False),
        ("msg", 3, "string", False),
        ("doc_id", 4, "DocID", False),
        ("reason", 100, "string", False),
        ("current_version", 101, "int32", False),
    ],
    "AuthzDep": [
        ("actions", 1, "ActionType", True),
        ("exact", 2, "string", False),
        ("prefix", 3, "string", False),
        ("msg", 4, "string", False),
    ],
    "TasksRequest": [
        ("claimant_id", 1, "string", False),
        ("queue", 2, "string", False),
        ("limit", 3, "int32", False),
        ("task_id", 4, "string", True),
        ("omit_values", 5, "bool", False),
        # Ours: skip this many tasks of the queue in arrival order (paging a long queue).
        ("offset", 100, "int64", False),
    ],
    "TasksResponse": [("tasks", 1, "Task", True)],
    "QueuesRequest": [
        ("match_prefix", 1, "string", True),
        ("match_exact", 2, "string", True),
        ("limit", 3, "int32", False),
    ],
    "QueuesResponse": [("queues", 1, "QueueStats", True)],
    "TimeRequest": [],
    "TimeResponse": [("time_ms", 1, "int64", False)],
    # EntroQ v1's document store (reference sections 2 and 4). Doc contents are "value" fields,
    # as task values: bytes in the bytes schema, google.protobuf.Value in v1. Fields numbered 100
    # and up are ours (EntroQ's protocol 2 sends them by JSON name; their numbers are unknown):
    # DocID.key (a doc set's key, when id is empty), DocData.by_ms, DocChange.mode,
    # DocQuery.key_exact (PyPI 0.12.4's query.keyExact), DocClaim.sets and task_to_match, and
    # ClaimDocsResponse.sets.
    "DocID": [
        ("namespace", 1, "string", False),
        ("id", 2, "string", False),
        ("version", 3, "int32", False),
        ("key", 100, "string", False),
    ],
    "DocData": [
        ("namespace", 1, "string", False),
        ("id", 2, "string", False),
        ("key", 3, "string", False),
        ("secondary_key", 4, "string", False),
        ("content", 5, "value", False),
        ("created_ms", 6, "int64", False),
        ("modified_ms", 7, "int64", False),
        ("at_ms", 8, "int64", False),
        ("by_ms", 100, "int64", False),
    ],
    "DocChange": [
        ("old_id", 1, "DocID", False),
        ("new_data", 2, "DocData", False),
        ("mode", 100, "ChangeMode", False),
    ],
    "Doc": [
        ("namespace", 1, "string", False),
        ("id", 2, "string", False),
        ("version", 3, "int32", False),
        ("claimant", 4, "string", False),
        ("at_ms", 5, "int64", False),
        ("key", 6, "string", False),
        ("secondary_key", 7, "string", False),
        ("content", 8, "value", False),
        ("created_ms", 9, "int64", False),
        ("modified_ms", 10, "int64", False),
    ],
    "DocQuery": [
        ("namespace", 1, "string", False),
        ("key_start", 2, "string", False),
        ("key_end", 3, "string", False),
        ("limit", 4, "int32", False),
        ("omit_values", 5, "bool", False),
        ("ids", 6, "string", True),
        ("key_exact", 100, "string", False),
    ],
    "DocSet": [("namespace", 1, "string", False), ("key", 2, "string", False)],
    "DocSetClaim": [("set", 1, "DocSet", False), ("omit_members", 2, "bool", False)],
    "DocClaim": [
        ("namespace", 1, "string", False),
        ("claimant", 2, "string", False),
        ("key", 3, "string", False),
        ("duration_ms", 4, "int64", False),
        ("sets", 100, "DocSetClaim", True),
        ("task_to_match", 101, "TaskID", False),
    ],
    "DocsRequest": [("query", 1, "DocQuery", False)],
    "DocsResponse": [("docs", 1, "Doc", True)],
    "ClaimDocsRequest": [("claim_query", 1, "DocClaim", False)],
    "ClaimDocsResponse": [("docs", 1, "Doc", True), ("sets", 100, "Doc", True)],
    "NamespaceStat": [
        ("name", 1, "string", False),
        ("num_docs", 2, "int32", False),
        ("num_claimed", 3, "int32", False),
    ],
    "NamespacesRequest": [
        ("match_prefix", 1, "string", True),
        ("match_exact", 2, "string", True),
        ("limit", 3, "int32", False),
    ],
    "NamespacesResponse": [("namespaces", 1, "NamespaceStat", True)],
}

# The EntroQ service: method -> (request, response, server streaming).
METHODS: dict[str, tuple[str, str, bool]] = {
    "TryClaim": ("ClaimRequest", "ClaimResponse", False),
    "Claim": ("ClaimRequest", "ClaimResponse", False),
    "Modify": ("ModifyRequest", "ModifyResponse", False),
    "Tasks": ("TasksRequest", "TasksResponse", False),
    "Queues": ("QueuesRequest", "QueuesResponse", False),
    "QueueStats": ("QueuesRequest", "QueuesResponse", False),
    "Time": ("TimeRequest", "TimeResponse", False),
    "StreamTasks": ("TasksRequest", "TasksResponse", True),
    "Docs": ("DocsRequest", "DocsResponse", False),
    "ClaimDocs": ("ClaimDocsRequest", "ClaimDocsResponse", False),
    "NamespaceStats": ("NamespacesRequest", "NamespacesResponse", False),
}
# The document RPCs (both schemas serve them).
DOC_METHODS = frozenset({"Docs", "ClaimDocs", "NamespaceStats"})


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def file_descriptor_proto(schema: Schema = "bytes") -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of entroq.proto as protoc would produce it (without source info): the
    bytes schema (``server/entroq_redis_server/core/entroq.proto``) or EntroQ v1's
    (``tests/protos/entroq_v1``)."""
    v1 = schema == "v1"
    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    if v1:
        fdp.dependency.append(STRUCT_FILE)
    fdp.options.go_package = "github.com/shiblon/entroq/api;api"
    for message_name, fields in MESSAGES.items():
        message = fdp.message_type.add(name=message_name)
        for name, number, type_name, repeated in fields:
            field = message.field.add(
                name=name,
                number=number,
                json_name=_json_name(name),
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name == "value":
                type_name = "Value" if v1 else "bytes"
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            elif type_name == "Value":
                field.type = _F.TYPE_MESSAGE
                field.type_name = ".google.protobuf.Value"
            else:
                field.type = _F.TYPE_ENUM if type_name in ENUMS else _F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{type_name}"
    for enum_name, values in ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    service = fdp.service.add(name="EntroQ")
    for method_name, (request, response, streaming) in METHODS.items():
        method = service.method.add(
            name=method_name, input_type=f".{PACKAGE}.{request}", output_type=f".{PACKAGE}.{response}"
        )
        if streaming:
            method.server_streaming = True
    return fdp


def v1_pool() -> descriptor_pool.DescriptorPool:
    """A pool holding the v1 schema (and struct.proto), e.g. to check that the table builds."""
    pool = descriptor_pool.DescriptorPool()
    struct = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct)
    pool.Add(struct)
    pool.Add(file_descriptor_proto("v1"))
    return pool


_pool = descriptor_pool.DescriptorPool()
_file = _pool.Add(file_descriptor_proto())


def message_descriptor(name: str) -> Descriptor:
    return _pool.FindMessageTypeByName(f"{PACKAGE}.{name}")


def enum_descriptor(name: str) -> EnumDescriptor:
    return _pool.FindEnumTypeByName(f"{PACKAGE}.{name}")


def service_descriptor() -> ServiceDescriptor:
    return _pool.FindServiceByName(f"{PACKAGE}.EntroQ")


def message_class(name: str) -> Any:
    """The protobuf message class of ``api.<name>``."""
    return message_factory.GetMessageClass(message_descriptor(name))


# The classes the service uses, typed Any: they are built at run time, so there are no stubs.
Task: Any = message_class("Task")
TaskID: Any = message_class("TaskID")
TaskData: Any = message_class("TaskData")
TaskChange: Any = message_class("TaskChange")
QueueStats: Any = message_class("QueueStats")
ClaimRequest: Any = message_class("ClaimRequest")
ClaimResponse: Any = message_class("ClaimResponse")
ModifyRequest: Any = message_class("ModifyRequest")
ModifyResponse: Any = message_class("ModifyResponse")
ModifyDep: Any = message_class("ModifyDep")
TasksRequest: Any = message_class("TasksRequest")
TasksResponse: Any = message_class("TasksResponse")
QueuesRequest: Any = message_class("QueuesRequest")
QueuesResponse: Any = message_class("QueuesResponse")
TimeRequest: Any = message_class("TimeRequest")
TimeResponse: Any = message_class("TimeResponse")
DocID: Any = message_class("DocID")
Doc: Any = message_class("Doc")
DocsResponse: Any = message_class("DocsResponse")
ClaimDocsResponse: Any = message_class("ClaimDocsResponse")
NamespaceStat: Any = message_class("NamespaceStat")
NamespacesResponse: Any = message_class("NamespacesResponse")
