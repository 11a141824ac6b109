"""schema.py builds exactly the descriptor protoc makes of entroq.proto (both in
server/entroq_redis_server/core/)."""

from __future__ import annotations

import pathlib

from entroq_redis_server.core import schema as _schema
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

SERVER = pathlib.Path(_schema.__file__).parent


def test_descriptor_matches_the_proto_file(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "entroq.pb"
    assert protoc.main(["protoc", f"-I{SERVER}", f"--descriptor_set_out={out}", "entroq.proto"]) == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    assert compiled == _schema.file_descriptor_proto()


def test_entroq_field_names_and_numbers() -> None:
    # Spot checks against EntroQ's api/entroq.proto (docs/reference/entroq-protocol.md 1.1-1.7):
    # these must never move.
    task = _schema.message_descriptor("Task")
    assert [(f.name, f.number) for f in task.fields] == [
        ("queue", 1),
        ("id", 2),
        ("version", 3),
        ("at_ms", 4),
        ("claimant_id", 5),
        ("value", 6),
        ("created_ms", 7),
        ("modified_ms", 8),
        ("claims", 9),
        ("attempt", 10),
        ("err", 11),
    ]
    assert task.fields_by_name["at_ms"].json_name == "atMs"
    action = _schema.enum_descriptor("ActionType")
    assert action.values_by_name["CLAIM"].number == 0 and action.values_by_name["INSERT"].number == 5
    assert [m.name for m in _schema.service_descriptor().methods] == list(_schema.METHODS)
