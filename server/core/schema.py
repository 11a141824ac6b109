"""EntroQ's wire messages as real protobuf classes, built at import time from a table.

The table mirrors ``entroq.proto`` (kept beside this file as the readable schema); a test
compiles that file with protoc and checks that the descriptor built here is identical, so
the two cannot drift. Building the descriptor in code keeps generated ``*_pb2.py`` files
out of the tree and needs no .proto parser at run time. protobuf's ``json_format`` then
gives the exact proto3 JSON mapping (README, "Design: wire format").
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, ServiceDescriptor

PACKAGE = "api"
FILE_NAME = "entroq.proto"

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
# scalar name, or the name of a message or enum of this file.
MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "TaskID": [("id", 1, "string", False), ("version", 2, "int32", False), ("queue", 3, "string", False)],
    "TaskData": [
        ("queue", 1, "string", False),
        ("at_ms", 2, "int64", False),
        ("value", 3, "bytes", False),
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
        ("value", 6, "bytes", False),
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
    ],
    "ClaimResponse": [("task", 1, "Task", False)],
    "ModifyRequest": [
        ("claimant_id", 1, "string", False),
        ("inserts", 2, "TaskData", True),
        ("changes", 3, "TaskChange", True),
        ("deletes", 4, "TaskID", True),
        ("depends", 5, "TaskID", True),
    ],
    "ModifyResponse": [("inserted", 1, "Task", True), ("changed", 2, "Task", True)],
    "ModifyDep": [
        ("type", 1, "ActionType", False),
        ("id", 2, "TaskID", False),
        ("msg", 3, "string", False),
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
}


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of entroq.proto as protoc would produce it (without source info)."""
    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
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
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
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
