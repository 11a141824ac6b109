"""Errors as the service answers them: HTTP status, gRPC-style code, JSON body. I/O free.

Every failure a route can meet becomes an :class:`ApiError` here, in one place, so REST and
Connect answers, metrics outcomes and the OpenAPI document agree. Bodies never carry a stack
trace: unexpected exceptions become a plain 500 "internal error" (the trace goes to the log).

REST bodies have the ``google.rpc.Status`` JSON shape EntroQ's clients parse
(``{"code": 5, "message": ..., "details": [{"@type": ..., ...}]}``); Connect bodies use
Connect's error shape (``{"code": "not_found", "message": ..., "details": [...]}``).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format

import entroq_redis

from . import schema as _schema

# gRPC status codes (google.rpc.Code), by number; Connect names them in snake_case.
CODE_NAMES = {
    1: "canceled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

MODIFY_DEP_TYPE = "api.ModifyDep"
DEPENDENCY_MESSAGE = "modification dependency error"
CLAIM_DOCS_MESSAGE = "claim docs dependency error"


@dataclasses.dataclass
class ApiError(Exception):
    """A failed request, ready to be rendered as REST or Connect JSON.

    Attributes:
        status: The HTTP status.
        code: The gRPC status code (google.rpc.Code number).
        message: Human-readable text (never a stack trace).
        outcome: The metrics outcome label (ok|dependency|bad_request|not_found|timeout|
            unavailable|outcome_unknown|error|denied).
        details: Typed details as protobuf messages (ModifyDep, ...).
        headers: Extra response headers (e.g. ``Allow`` on 405).
        reason: A machine-readable marker, sent as ``reason`` in the JSON body when set
            (``outcome_unknown``), for errors that share a status with others.
    """

    status: int
    code: int
    message: str
    outcome: str
    details: Sequence[Any] = ()
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def bad_request(message: str) -> ApiError:
    return ApiError(400, INVALID_ARGUMENT, message, "bad_request")


def too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        413,
        RESOURCE_EXHAUSTED,
        f"request body is larger than the limit of {limit_bytes} bytes",
        "bad_request",
        # The rest of the body is never read, so the connection cannot carry another request.
        headers={"Connection": "close"},
    )


def route_not_found(path: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"no route for {path}", "not_found")


def method_not_allowed(method: str, allowed: Iterable[str]) -> ApiError:
    allow = ", ".join(sorted(allowed))
    return ApiError(
        405,
        UNIMPLEMENTED,
        f"method {method} is not allowed here; allowed: {allow}",
        "not_found",
        headers={"Allow": allow},
    )


def unimplemented(message: str) -> ApiError:
    return ApiError(501, UNIMPLEMENTED, message, "not_found")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, INVALID_ARGUMENT, f"unsupported content type {content_type!r}", "bad_request")


def deadline_exceeded(message: str) -> ApiError:
    return ApiError(504, DEADLINE_EXCEEDED, message, "timeout")


def unavailable(message: str) -> ApiError:
    return ApiError(503, UNAVAILABLE, message, "unavailable")


OUTCOME_UNKNOWN = "outcome_unknown"


def outcome_unknown(message: str) -> ApiError:
    """503 (retry) marked ``"reason": "outcome_unknown"``: the claim or modify ran on the primary
    but its replication (--wait-replicas) or fsync was not confirmed in time. It is visible
    now and may still be lost in a failover. UNAVAILABLE because retrying is safe: a modify
    with the same versions applies at most once, and a claim retried merely leaves the
    first task's lease to expire."""
    return ApiError(503, UNAVAILABLE, message, OUTCOME_UNKNOWN, reason=OUTCOME_UNKNOWN)


def internal() -> ApiError:
    return ApiError(500, INTERNAL, "internal error", "error")


def dependency(error: entroq_redis.DependencyError, head: str = DEPENDENCY_MESSAGE) -> ApiError:
    """HTTP 404 (gRPC NOT_FOUND, as EntroQ's proto documents) with one ModifyDep per failure.

    The message starts with ``head`` ("modification dependency error"; a ClaimDocs conflict
    says "claim docs dependency error", as EntroQ's server does) and names every item as
    missing/mismatched/collision/claimed, which every generation of EntroQ's Python client
    recognises. A DETAIL entry comes first, as EntroQ's server sends it. Task failures name
    the task in ``id``; doc failures name the doc (or the doc set: no id, its key) in ``docId``.
    """
    message = head + str(error).removeprefix(DEPENDENCY_MESSAGE)
    details = [_schema.ModifyDep(type="DETAIL", msg=message)]
    for failure in error.failures:
        details.append(
            _schema.ModifyDep(
                type=failure.kind,
                id=_schema.TaskID(id=failure.id, version=failure.version, queue=failure.queue),
                msg=failure.describe(),
                reason=failure.reason,
                current_version=failure.current_version,
            )
        )
    for doc_failure in error.doc_failures:
        details.append(
            _schema.ModifyDep(
                type=doc_failure.kind,
                doc_id=_schema.DocID(
                    namespace=doc_failure.namespace,
                    id=doc_failure.id,
                    version=doc_failure.version,
                    key=doc_failure.key,
                ),
                msg=doc_failure.describe(),
                reason=doc_failure.reason,
                current_version=doc_failure.current_version,
            )
        )
    return ApiError(404, NOT_FOUND, message, "dependency", details)


def from_exception(exc: BaseException) -> ApiError:
    """Maps an exception raised while serving a request to the answer the caller gets."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return from_exception(exc.exceptions[0])
    if isinstance(exc, entroq_redis.DependencyError):
        return dependency(exc)
    if isinstance(exc, entroq_redis.InvalidArgumentError):
        return bad_request(str(exc))
    if isinstance(exc, entroq_redis.ClaimTimeoutError):
        return deadline_exceeded(str(exc))
    if isinstance(exc, entroq_redis.OutcomeUnknownError):
        return outcome_unknown(str(exc))
    if isinstance(exc, entroq_redis.StoreUnavailableError):
        return unavailable(str(exc))
    if isinstance(exc, entroq_redis.PermissionDeniedError):
        if exc.status == 401:
            return ApiError(401, UNAUTHENTICATED, str(exc), "denied")
        return ApiError(403, PERMISSION_DENIED, str(exc), "denied")
    return internal()


def _detail_json(detail: Any) -> dict[str, Any]:
    body: dict[str, Any] = json_format.MessageToDict(detail)
    if detail.DESCRIPTOR.full_name == MODIFY_DEP_TYPE:
        # proto3 JSON omits a zero enum, and CLAIM is ActionType's zero: state it, clients key on it.
        body["type"] = _schema.enum_descriptor("ActionType").values_by_number[detail.type].name
        if detail.HasField("doc_id"):
            # PyPI 0.14.0 reads docId["id"] (a KeyError when proto3 JSON leaves an empty one
            # out, as for a doc set) and docId["version"]: state both.
            body["docId"] = {"id": "", "version": 0, **body["docId"]}
    return body


def rest_body(error: ApiError) -> dict[str, Any]:
    """The google.rpc.Status JSON body (REST routes)."""
    details = [
        {"@type": "type.googleapis.com/" + d.DESCRIPTOR.full_name, **_detail_json(d)} for d in error.details
    ]
    body: dict[str, Any] = {"code": error.code, "message": error.message, "details": details}
    if error.reason:
        body["reason"] = error.reason
    return body


def connect_body(error: ApiError) -> dict[str, Any]:
    """Connect's error JSON: code name, message, details as base64 binary plus a JSON debug view."""
    body: dict[str, Any] = {"code": CODE_NAMES.get(error.code, "unknown"), "message": error.message}
    if error.reason:
        body["reason"] = error.reason
    if error.details:
        body["details"] = [
            {
                "type": d.DESCRIPTOR.full_name,
                "value": base64.b64encode(d.SerializeToString()).decode().rstrip("="),
                "debug": _detail_json(d),
            }
            for d in error.details
        ]
    return body
