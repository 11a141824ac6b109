"""server/entroq_redis_server/core/schema.py builds exactly the descriptors protoc makes of the gRPC
schemas in tests/protos/."""

from __future__ import annotations

import pathlib

import grpc_support
from entroq_redis_server.core import schema as _schema
from google.protobuf import descriptor_pb2


def test_v1_descriptor_matches_the_proto_file() -> None:
    assert grpc_support.v1().descriptor == _schema.file_descriptor_proto("v1")


def test_bytes_descriptor_matches_the_proto_file() -> None:
    assert grpc_support.bytes_schema().descriptor == _schema.file_descriptor_proto("bytes")


def test_bytes_proto_is_the_service_schema() -> None:
    # The gRPC bytes schema is the one the service uses inside (server/entroq_redis_server/core/entroq.proto).
    server = pathlib.Path(_schema.__file__).parent / "entroq.proto"
    tests = grpc_support.PROTOS / "entroq_bytes" / "entroq.proto"
    body = "syntax = " + server.read_text().split("syntax = ", 1)[1]
    assert tests.read_text().endswith(body)


def test_v1_schema_builds_and_shares_field_numbers() -> None:
    pool = _schema.v1_pool()
    v1_task = pool.FindMessageTypeByName("api.Task")
    assert v1_task.fields_by_name["value"].message_type.full_name == "google.protobuf.Value"
    assert pool.FindMessageTypeByName("api.TaskData").fields_by_name["value"].number == 3
    bytes_file = _schema.file_descriptor_proto("bytes")
    v1_file = _schema.file_descriptor_proto("v1")
    v1_messages = {m.name: m for m in v1_file.message_type}
    # Every bytes-schema field is in v1 with the same number (the gRPC front end relies on it).
    for message in bytes_file.message_type:
        numbers = {f.name: f.number for f in v1_messages[message.name].field}
        assert {f.name: f.number for f in message.field}.items() <= numbers.items()
    assert [m.name for m in pool.FindServiceByName("api.EntroQ").methods] == list(_schema.METHODS)
    assert list(_schema.METHODS)[-3:] == ["Docs", "ClaimDocs", "NamespaceStats"]
    dep = pool.FindMessageTypeByName("api.ModifyDep")
    assert dep.fields_by_name["doc_id"].number == 4
    assert isinstance(v1_file, descriptor_pb2.FileDescriptorProto)


def test_generated_stubs_load_side_by_side() -> None:
    v1, old = grpc_support.v1(), grpc_support.bytes_schema()
    assert v1.pb2.Task.DESCRIPTOR.fields_by_name["value"].type == 11  # message
    assert old.pb2.Task.DESCRIPTOR.fields_by_name["value"].type == 12  # bytes
    assert hasattr(v1.pb2_grpc, "EntroQStub") and hasattr(old.pb2_grpc, "EntroQStub")


def test_doc_messages_differ_only_in_content() -> None:
    # Doc contents are values: bytes in the bytes schema, google.protobuf.Value in v1; our
    # protocol-2 additions are numbered from 100 (EntroQ's numbers for them are unknown).
    pool = _schema.v1_pool()
    assert pool.FindMessageTypeByName("api.Doc").fields_by_name["content"].message_type.full_name == (
        "google.protobuf.Value"
    )
    assert _schema.message_descriptor("Doc").fields_by_name["content"].type == 12  # bytes
    numbers = {
        (m, f): pool.FindMessageTypeByName(f"api.{m}").fields_by_name[f].number
        for m, f in [
            ("DocID", "key"),
            ("DocData", "by_ms"),
            ("DocChange", "mode"),
            ("DocQuery", "key_exact"),
            ("DocClaim", "sets"),
            ("DocClaim", "task_to_match"),
            ("ClaimDocsResponse", "sets"),
        ]
    }
    assert all(number >= 100 for number in numbers.values()), numbers
    assert pool.FindMessageTypeByName("api.DocChange").fields_by_name["mode"].json_name == "mode"
    assert (
        pool.FindMessageTypeByName("api.DocClaim").fields_by_name["task_to_match"].json_name == "taskToMatch"
    )
