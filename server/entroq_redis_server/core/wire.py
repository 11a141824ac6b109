"""EntroQ's JSON wire format <-> the library's types. I/O free.

Decoding is proto3 JSON as protobuf's ``json_format`` implements it (lenient like EntroQ's
server: camelCase or snake_case names, numbers or numeric strings, ``null`` = default,
standard or URL-safe base64, unknown fields ignored). Encoding is canonical proto3 JSON:
camelCase, int64 as strings, bytes as standard base64, zero values omitted.

Values are bytes end to end (docs/design.md 2.2); this module is where they meet JSON. Each request
is read and answered in the value encoding its client generation uses (``core.generations``
decides, ``core.values`` converts): base64, protobuf's own ``bytes`` mapping, or any JSON value,
which is swapped for its stored bytes before ``json_format`` sees it and back after.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

import entroq_redis
from entroq_redis._contract import MAX_ITEMS_PER_MODIFY, MAX_QUEUES_PER_CLAIM

from . import schema as _schema
from . import values as _values
from .errors import bad_request
from .values import BASE64, JSON, ValueEncoding

_CHANGE_MODES: dict[int, entroq_redis.ChangeMode] = {0: "full", 1: "lease", 2: "reset_claims"}


def load_json(raw: bytes) -> Any:
    """Decodes a request body (empty: ``{}``), or raises a 400."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"malformed JSON body: {exc}") from None


def parse_dict(body: Any, message: str, values: ValueEncoding = BASE64) -> Any:
    """Parses decoded JSON into ``api.<message>``, or raises a 400 naming the bad field."""
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object ({message}), not {type(body).__name__}")
    descriptor = _schema.message_descriptor(message)
    body = check_counts(body, message)
    _check_enums(body, descriptor, message)
    if message == "ModifyRequest":
        if values == JSON:
            body = _stored_values(body)
        else:
            _check_base64_values(body)
    try:
        return json_format.ParseDict(body, _schema.message_class(message)(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise bad_request(f"invalid {message}: {exc}") from None


# Lists the store refuses beyond its limits (lua/README.md section 9), refused here before
# json_format reads them: parsing a 10 MiB body of 3.5 million empty inserts takes about 20 s
# of the service's single event loop, and the store would then be blocked building millions
# of script arguments only to refuse them.
_COUNTED_LISTS = {
    "ModifyRequest": (
        ("inserts", "changes", "deletes", "depends", "docInserts", "docChanges", "docDeletes", "docDepends"),
        MAX_ITEMS_PER_MODIFY,
        "items per modify (inserts + changes + deletes + depends, of tasks and docs)",
    ),
    "ClaimRequest": (("finish",), MAX_ITEMS_PER_MODIFY, "finished tasks per claim"),
}


def check_counts(body: Any, message: str) -> Any:
    """Refuses request lists over the store's limits with a clear 400; returns the body with
    a claim's repeated queue names dropped (the store ignores repeats, so a long list of one
    name must not cost what a long list of different names costs). Call it before anything
    walks the lists (the caller identification reads every insert too)."""
    if not isinstance(body, dict):
        return body
    counted = _COUNTED_LISTS.get(message)
    if counted is not None:
        names, limit, what = counted
        total = 0
        for name in names:
            for key in {name, _snake_case(name)}:
                if isinstance(body.get(key), list):
                    total += len(body[key])
        if total > limit:
            raise bad_request(f"at most {limit} {what}, got {total}")
    if message == "ClaimRequest":
        queues = body.get("queues")
        if isinstance(queues, list) and all(isinstance(q, str) for q in queues):
            distinct = list(dict.fromkeys(queues))
            if len(distinct) > MAX_QUEUES_PER_CLAIM:
                raise bad_request(f"at most {MAX_QUEUES_PER_CLAIM} queues per claim, got {len(distinct)}")
            body = {**body, "queues": distinct}
    if message == "ClaimDocsRequest":
        claim = body.get("claimQuery", body.get("claim_query"))
        sets = claim.get("sets") if isinstance(claim, dict) else None
        if isinstance(sets, list) and len(sets) > MAX_ITEMS_PER_MODIFY:
            raise bad_request(f"at most {MAX_ITEMS_PER_MODIFY} doc sets per claim, got {len(sets)}")
    return body


def _snake_case(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


# Standard or URL-safe base64, padded or not (what json_format accepts). json_format itself
# skips any other character, so "QUJD!" or "QUJD\u0000" would be stored as b"ABC": a value that
# is not base64 must be refused, not silently altered (EntroQ's Go server refuses it too).
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}|[A-Za-z0-9_-]*={0,2}")


def _listed(body: dict[str, Any], name: str) -> list[Any]:
    """``body[name]`` when it is a list; anything else is left for the parser to refuse with a
    400 (``{"changes": 5}`` must not fail here first, as a 500)."""
    value = body.get(name)
    return value if isinstance(value, list) else []


# Where a ModifyRequest's JSON holds values: (list names, data object names or None for the
# item itself, value field). Task values and doc contents follow the same rules (values.py).
_VALUE_PLACES = (
    (("inserts",), None, "value"),
    (("changes",), ("newData", "new_data"), "value"),
    (("docInserts", "doc_inserts"), None, "content"),
    (("docChanges", "doc_changes"), ("newData", "new_data"), "content"),
)


def _value_holders(body: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(JSON object, field) for every task value and doc content of a ModifyRequest body."""
    found = []
    for lists, data_names, field in _VALUE_PLACES:
        for name in lists:
            for item in _listed(body, name):
                if not isinstance(item, dict):
                    continue
                datas = [item] if data_names is None else [item.get(d) for d in data_names]
                found += [(data, field) for data in datas if isinstance(data, dict) and field in data]
    return found


def _check_base64_values(body: dict[str, Any]) -> None:
    for data, field in _value_holders(body):
        value = data[field]
        if value is not None and not isinstance(value, str):
            raise bad_request(f"invalid {field}: a base64 {field} is a string, not {type(value).__name__}")
        if isinstance(value, str) and not _BASE64.fullmatch(value):
            raise bad_request(
                f"invalid {field}: not base64 (standard or URL-safe alphabet, optional padding)"
            )


def _stored(data: dict[str, Any], field: str) -> dict[str, Any]:
    """A copy of a TaskData or DocData JSON object with its JSON value (``field``) replaced by
    base64 of the stored bytes."""
    if field not in data:
        return data
    try:
        stored = _values.json_to_bytes(data[field])
    except ValueError as exc:
        raise bad_request(f"invalid {field}: {exc}") from None
    return {**data, field: base64.b64encode(stored).decode()}


def _stored_values(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ModifyRequest JSON object whose JSON values and doc contents are swapped for
    their stored bytes (base64), so ``json_format`` reads them into the ``bytes`` fields. The
    caller's objects are left as they are."""
    body = dict(body)
    for lists, data_names, field in _VALUE_PLACES:
        for name in lists:
            if not isinstance(body.get(name), list):
                continue
            items = []
            for item in body[name]:
                if isinstance(item, dict):
                    if data_names is None:
                        item = _stored(item, field)
                    else:
                        item = {
                            key: _stored(v, field) if key in data_names and isinstance(v, dict) else v
                            for key, v in item.items()
                        }
                items.append(item)
            body[name] = items
    return body


def _check_enums(body: Any, descriptor: Descriptor, path: str) -> None:
    """Refuses unknown enum values, which ``ignore_unknown_fields`` would silently read as the
    default (an unknown change mode must not become a full change)."""
    if not isinstance(body, dict):
        return
    for name, value in body.items():
        field = descriptor.fields_by_camelcase_name.get(name) or descriptor.fields_by_name.get(name)
        if field is None or value is None:
            continue
        items = value if field.is_repeated and isinstance(value, list) else [value]
        for item in items:
            if field.enum_type is not None:
                # Only a name or a number can be an enum value; anything else (an object,
                # a list) is unknown too, and must not reach the lookups (unhashable: a 500).
                known = (isinstance(item, str) and item in field.enum_type.values_by_name) or (
                    isinstance(item, int)
                    and not isinstance(item, bool)  # JSON true is not the number 1
                    and item in field.enum_type.values_by_number
                )
                if not known:
                    raise bad_request(f"invalid {path}: {name} has no value {item!r}")
            elif field.message_type is not None:
                _check_enums(item, field.message_type, f"{path}.{name}")


def parse_query(params: Iterable[tuple[str, str]], message: str, **fixed: Any) -> Any:
    """Parses URL query parameters into ``api.<message>`` (EntroQ's REST transcoding rules).

    Names may be the JSON (camelCase) or proto (snake_case) field names; repeated fields
    take repeated keys; a non-repeated field given twice, or an unknown name, is a 400.
    ``fixed`` fields come from the path and may not be repeated in the query.
    """
    descriptor = _schema.message_descriptor(message)
    by_name = {**descriptor.fields_by_name, **descriptor.fields_by_camelcase_name}
    body: dict[str, Any] = {}
    for name, value in params:
        field = by_name.get(name)
        if field is None:
            raise bad_request(f"unknown query parameter {name!r}")
        if field.name in fixed:
            raise bad_request(f"{name!r} is given by the path; do not repeat it in the query")
        if field.is_repeated:
            body.setdefault(field.name, []).append(value)
            continue
        if field.name in body:
            raise bad_request(f"query parameter {name!r} given more than once")
        body[field.name] = _query_scalar(field, name, value)
    body.update(fixed)
    return parse_dict(body, message)


def _query_scalar(field: FieldDescriptor, name: str, value: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0", ""):
            return False
        raise bad_request(f"query parameter {name!r} must be true or false, not {value!r}")
    return value


# Where responses hold values: message name -> (field, its JSON name, the value field of its
# tasks or docs).
_VALUE_FIELDS = {
    "ClaimResponse": (("task", "task", "value"),),
    "ModifyResponse": (
        ("inserted", "inserted", "value"),
        ("changed", "changed", "value"),
        ("inserted_docs", "insertedDocs", "content"),
        ("changed_docs", "changedDocs", "content"),
    ),
    "TasksResponse": (("tasks", "tasks", "value"),),
    "DocsResponse": (("docs", "docs", "content"),),
    "ClaimDocsResponse": (("docs", "docs", "content"),),
}


def to_json(message: Any, values: ValueEncoding = BASE64) -> bytes:
    """Canonical proto3 JSON of a message (zero values omitted, so an empty message is ``{}``),
    with task values in the caller's encoding."""
    body = json_format.MessageToDict(message)
    if values == JSON:
        _json_values(message, body)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _json_values(message: Any, body: dict[str, Any]) -> None:
    """Replaces the base64 values json_format wrote with the JSON the stored bytes hold."""
    for field, json_name, value_field in _VALUE_FIELDS.get(message.DESCRIPTOR.name, ()):
        if field == "task":
            pairs = [(message.task, body["task"])] if message.HasField("task") else []
        else:
            pairs = list(zip(getattr(message, field), body.get(json_name, ()), strict=True))
        for item, obj in pairs:
            value = _values.bytes_to_json(getattr(item, value_field))
            if value is None:
                obj.pop(value_field, None)
            else:
                obj[value_field] = value


# Requests -> library arguments.


def _arrival(data: Any, what: str) -> tuple[int, int | None]:
    """(at_ms, delay_ms) of a TaskData: absolute ``atMs`` or relative ``byMs``, not both."""
    if data.at_ms and data.by_ms:
        raise bad_request(f"{what}: give atMs (absolute) or byMs (relative), not both")
    return data.at_ms, (data.by_ms if data.by_ms else None)


def task_data(data: Any, index: int) -> entroq_redis.TaskData:
    at_ms, delay_ms = _arrival(data, f"insert {index}")
    return entroq_redis.TaskData(
        queue=data.queue,
        at=at_ms,
        value=data.value,
        attempt=data.attempt,
        err=data.err,
        id=data.id or None,
        delay_ms=delay_ms,
    )


def task_change(change: Any, index: int) -> entroq_redis.TaskChange:
    new = change.new_data
    at_ms, delay_ms = _arrival(new, f"change {index}")
    mode = _CHANGE_MODES.get(change.mode)
    if mode is None:
        raise bad_request(f"change {index}: unknown mode {change.mode}")
    return entroq_redis.TaskChange(
        id=change.old_id.id,
        version=change.old_id.version,
        queue=new.queue,
        at=at_ms,
        value=new.value,
        attempt=new.attempt,
        err=new.err,
        old_queue=change.old_id.queue,
        delay_ms=delay_ms,
        mode=mode,
    )


def task_id(message: Any) -> entroq_redis.TaskID:
    return entroq_redis.TaskID(message.id, message.version, message.queue)


def modify_args(
    request: Any,
) -> tuple[
    list[entroq_redis.TaskData],
    list[entroq_redis.TaskChange],
    list[entroq_redis.TaskID],
    list[entroq_redis.TaskID],
]:
    """(inserts, changes, deletes, depends) of a ModifyRequest."""
    return (
        [task_data(d, i) for i, d in enumerate(request.inserts)],
        [task_change(c, i) for i, c in enumerate(request.changes)],
        [task_id(d) for d in request.deletes],
        [task_id(d) for d in request.depends],
    )


def non_negative_limit(limit: int) -> int:
    return non_negative("limit", limit)


def non_negative(field: str, value: int) -> int:
    if value < 0:
        raise bad_request(f"{field} must not be negative, got {value}")
    return value


# Library results -> responses.


def task_message(task: entroq_redis.Task) -> Any:
    return _schema.Task(
        queue=task.queue,
        id=task.id,
        version=task.version,
        at_ms=task.at_ms,
        claimant_id=task.claimant,
        value=task.value,
        created_ms=task.created_ms,
        modified_ms=task.modified_ms,
        claims=task.claims,
        attempt=task.attempt,
        err=task.err,
    )


def claim_response(task: entroq_redis.Task | None) -> Any:
    if task is None:
        return _schema.ClaimResponse()
    return _schema.ClaimResponse(task=task_message(task))


def modify_response(inserted: Sequence[entroq_redis.Task], changed: Sequence[entroq_redis.Task]) -> Any:
    return _schema.ModifyResponse(
        inserted=[task_message(t) for t in inserted], changed=[task_message(t) for t in changed]
    )


def tasks_response(tasks: Sequence[entroq_redis.Task]) -> Any:
    return _schema.TasksResponse(tasks=[task_message(t) for t in tasks])


def one_task_response(task: Any) -> Any:
    """A TasksResponse holding one ``api.Task`` message (a StreamTasks message)."""
    return _schema.TasksResponse(tasks=[task])


def queue_sizes_response(sizes: Mapping[str, int]) -> Any:
    """The Connect ``Queues`` answer: name and size only, as EntroQ's server sends it (REST
    ``GET /api/v0/queues`` answers with full stats, which the 0.12+ clients read there)."""
    return _schema.QueuesResponse(
        queues=[_schema.QueueStats(name=name, num_tasks=size) for name, size in sizes.items()]
    )


def queue_stats_response(stats: Sequence[entroq_redis.QueueStats]) -> Any:
    return _schema.QueuesResponse(
        queues=[
            _schema.QueueStats(
                name=s.name,
                num_tasks=s.num_tasks,
                num_claimed=s.num_claimed,
                num_available=s.num_available,
                max_claims=s.max_claims,
                num_future=s.num_future,
            )
            for s in stats
        ]
    )


def queues_request(limit: int = 0) -> Any:
    return _schema.QueuesRequest(limit=limit)


def time_response(time_ms: int) -> Any:
    return _schema.TimeResponse(time_ms=time_ms)
