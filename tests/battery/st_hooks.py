"""Schemathesis hooks and checks for the fuzzing run of tests/test_battery_hostile_fuzz.py.

Loaded by ``st run`` through ``SCHEMATHESIS_HOOKS=battery.st_hooks``; the store it inspects comes
from ``ENTROQ_FUZZ_STORE``. The run is sequential (one worker), so the digest taken right before a
request and the one taken right after it bracket exactly that request's effect on the store.

Checks added to schemathesis's own:

- ``entroq_planned_status``: the only 5xx answers are the designed ones: 501 for the document
  store of later EntroQ releases (its routes, or a modify with a non-empty document list) or
  for a client of a later protocol (``entroq-protocol: 3``), and 504 when a blocking claim's
  deadline passes. Anything else, 500 above all, fails (the store is up during the run, so even
  a 503 is a failure here). Replaces ``not_a_server_error``, which
  counts the designed 501 and 504 too.
- ``entroq_refusal_writes_nothing``: a request answered with anything but 2xx, and any GET,
  left the whole store exactly as it was (DEBUG DIGEST before and after).
- (every key in the served namespace and its slot: checked by the test once the run ends;
  a SCAN after every request would grow with the store, which valid inserts fill.)
- ``entroq_ndjson_lines``: every line of a streamed (NDJSON) answer validates against the
  documented schema (schemathesis cannot read NDJSON itself).
- ``entroq_no_stack_trace``: no answer shows a Python traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jsonschema
import redis
import schemathesis
from schemathesis import Case, CheckContext, HookContext, Response

from battery.hostile import store_digest

DOCUMENT_OPERATIONS = {"Docs", "ClaimDocs", "NamespaceStats"}
DOCUMENT_LISTS = ("docInserts", "docChanges", "docDeletes", "docDepends")

_client: redis.Redis | None = None
_before = b""
_changed: dict[int, bool] = {}


def _store() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["ENTROQ_FUZZ_STORE"])
    return _client


def _non_string_value(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    datas = (
        [i for i in body.get("inserts") or () if isinstance(i, dict)]
        if isinstance(body.get("inserts"), list)
        else []
    )
    if isinstance(body.get("changes"), list):
        datas += [
            c["newData"]
            for c in body["changes"]
            if isinstance(c, dict) and isinstance(c.get("newData"), dict)
        ]
    return any(d.get("value") is not None and not isinstance(d.get("value"), str) for d in datas)


def _unique_by_id(items: list[Any], seen: set[Any]) -> list[Any]:
    kept = []
    for item in items:
        key = item.get("id") if isinstance(item, dict) else None
        if isinstance(key, str) and key:
            if key in seen:
                continue
            seen.add(key)
        kept.append(item)
    return kept


def obey_cross_field_rules(operation: str | None, body: Any) -> Any:
    """Makes generated bodies obey the rules JSON Schema cannot state (lua/README.md): an
    explicit insert ID at most once, a task changed or deleted at most once, a task finished at
    most once, at most 1000 items in all, IDs of at most 64 bytes, and a claim by ``taskId`` on
    TryClaim only, in one queue. (before_call also drops an explicit base64 value
    encoding from a request whose values are not strings: JSON values, which the document
    allows, cannot be base64.) Otherwise ``positive_data_acceptance`` would
    report requests the document calls valid and the store rightly refuses."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if operation == "Modify":
        _fit_ids(body)  # first: a shortened ID may repeat another, which the next steps drop
        if isinstance(body.get("inserts"), list):
            body["inserts"] = _unique_by_id(body["inserts"], set())
        touched: set[Any] = set()
        if isinstance(body.get("changes"), list):
            changes = body["changes"]
            kept = []
            for change in changes:
                old = change.get("oldId") if isinstance(change, dict) else None
                key = old.get("id") if isinstance(old, dict) else None
                if isinstance(key, str) and key:
                    if key in touched:
                        continue
                    touched.add(key)
                kept.append(change)
            body["changes"] = kept
        if isinstance(body.get("deletes"), list):
            body["deletes"] = _unique_by_id(body["deletes"], touched)
        room = 1000
        for name in ("inserts", "changes", "deletes", "depends"):
            if isinstance(body.get(name), list):
                body[name] = body[name][:room]
                room -= len(body[name])
    if operation in ("TryClaim", "Claim") and isinstance(body.get("finish"), list):
        body["finish"] = _unique_by_id(body["finish"], set())
    if "taskId" in body:
        # A claim by ID: TryClaim only, in exactly one queue, finishing nothing.
        queues = body.get("queues")
        if operation != "TryClaim" or not isinstance(queues, list) or not queues:
            del body["taskId"]
        else:
            body["queues"] = queues[:1]
            body.pop("finish", None)
    return body


def _fit_id(item: Any, field: str = "id") -> None:
    # JSON Schema's maxLength counts characters; the store's limit is 64 bytes of UTF-8.
    if isinstance(item, dict) and isinstance(item.get(field), str):
        text = item[field]
        while len(text.encode("utf-8", "surrogatepass")) > 64:
            text = text[:-1]
        item[field] = text


def _fit_ids(body: dict[str, Any]) -> None:
    for name in ("inserts", "deletes", "depends"):
        if isinstance(body.get(name), list):
            body[name] = [dict(item) if isinstance(item, dict) else item for item in body[name]]
            for item in body[name]:
                _fit_id(item)
    if isinstance(body.get("changes"), list):
        changes = []
        for change in body["changes"]:
            if isinstance(change, dict):
                change = dict(change)
                for part in ("oldId", "newData"):
                    if isinstance(change.get(part), dict):
                        change[part] = dict(change[part])
                        _fit_id(change[part])
            changes.append(change)
        body["changes"] = changes


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    # Here rather than in map_body: every phase (coverage included) passes through before_call.
    global _before
    case.body = obey_cross_field_rules(case.operation.definition.raw.get("operationId"), case.body)
    if _non_string_value(case.body) and case.headers:
        # A value that is not a string is a JSON value: it cannot be sent as base64.
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "entroq-value-encoding"}
    _before = store_digest(_store())


@schemathesis.hook
def after_call(context: HookContext, case: Case, response: Response) -> None:
    _changed[id(case)] = store_digest(_store()) != _before
    _log_answer(case, response)


def _log_answer(case: Case, response: Response) -> None:
    # One line per request, so the test can count requests and statuses for its report.
    path = os.environ.get("ENTROQ_FUZZ_LOG")
    if path:
        with open(path, "a") as log:
            log.write(
                json.dumps([case.operation.method.upper(), case.operation.path, response.status_code]) + "\n"
            )


def _unserved_protocol(case: Case) -> bool:
    # A client of a later EntroQ protocol hears 501 naming what to upgrade (by design).
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    return headers.get("entroq-protocol", "1") not in ("1", "2")


def _has_document_list(case: Case) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    snake = ("doc_inserts", "doc_changes", "doc_deletes", "doc_depends")
    return any(body.get(name) for name in DOCUMENT_LISTS + snake)


@schemathesis.check
def entroq_planned_status(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    status = response.status_code
    if status < 500:
        return None
    operation = case.operation.definition.raw.get("operationId")
    if status == 501 and (
        operation in DOCUMENT_OPERATIONS or _has_document_list(case) or _unserved_protocol(case)
    ):
        return None
    if status == 504 and operation == "Claim":
        return None
    raise AssertionError(f"unplanned {status} from {operation}: {response.text[:300]}")


@schemathesis.check
def entroq_refusal_writes_nothing(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    changed = _changed.get(id(case))
    if changed is None:
        return None
    refused = not 200 <= response.status_code < 300
    if changed and (refused or case.operation.method.upper() == "GET"):
        raise AssertionError(
            f"{case.operation.method.upper()} {case.operation.path} answered {response.status_code} "
            "but changed the store"
        )
    return None


_DOCUMENT: dict[str, Any] | None = None


def _document() -> dict[str, Any]:
    global _DOCUMENT
    if _DOCUMENT is None:
        import entroq_redis_server

        path = pathlib.Path(entroq_redis_server.__file__).parent / "openapi.json"
        _DOCUMENT = json.loads(path.read_text())
    return _DOCUMENT


@schemathesis.deserializer("application/x-ndjson")
def first_ndjson_line(ctx: Any, response: Response) -> Any:
    # Lets schemathesis validate a stream's first message against the documented schema;
    # entroq_ndjson_lines below validates every line.
    lines = response.text.splitlines()
    return json.loads(lines[0]) if lines else {}


@schemathesis.check
def entroq_ndjson_lines(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if not response.headers.get("content-type", [""])[0].startswith("application/x-ndjson"):
        return None
    document = _document()
    schema = {"$ref": "#/components/schemas/TasksResponse", "components": document["components"]}
    for line in response.text.splitlines():
        jsonschema.validate(json.loads(line), schema)
    return None


@schemathesis.check
def entroq_no_stack_trace(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    text = response.text if isinstance(response.text, str) else ""
    if "Traceback (most recent call last)" in text or 'File "/' in text:
        raise AssertionError("the answer shows a stack trace")
    return None
