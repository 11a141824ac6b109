"""The standard health service's messages (``grpc.health.v1``), built from a small descriptor.

EntroQ's Go client calls ``grpc.health.v1.Health/Check`` before it uses a connection
(docs/reference/entroq-v1-grpc-and-docs.md 3); ``app`` answers SERVING while the store answers,
NOT_SERVING otherwise.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PATH = "/grpc.health.v1.Health/Check"
# HealthCheckResponse.ServingStatus
SERVING = 1
NOT_SERVING = 2
# Service names Check answers for: the whole server (""), and the EntroQ service.
SERVICES = frozenset({"", "api.EntroQ"})


def _classes() -> tuple[Any, Any]:
    field = descriptor_pb2.FieldDescriptorProto
    health = descriptor_pb2.FileDescriptorProto(
        name="grpc/health/v1/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    request = health.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    response = health.message_type.add(name="HealthCheckResponse")
    serving = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]):
        serving.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=field.TYPE_ENUM,
        label=field.LABEL_OPTIONAL,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(health)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


HealthCheckRequest, HealthCheckResponse = _classes()
