"""Schemathesis hooks and checks for the fuzzing run of tests/test_battery_hostile_fuzz.py.

Loaded by ``st run`` through ``SCHEMATHESIS_HOOKS=battery.st_hooks``; the store it inspects comes
from ``ENTROQ_FUZZ_STORE``. The run is sequential (one worker), so the digest taken right before a
request and the one taken right after it bracket exactly that request's effect on the store.

Checks added to schemathesis's own:

- ``entroq_planned_status``: the only 5xx answers are the designed ones: 501 for a client of
  a later protocol (``entroq-protocol: 3``), and 504 when a blocking claim's deadline passes.
  Anything else, 500 above all, fails (the store is up during the run, so even a 503 is a
  failure here). Replaces ``not_a_server_error``, which counts the designed 501 and 504 too.
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

_client: redis.Redis | None = None
_before = b""
_changed: dict[int, bool] = {}


def _store() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["ENTROQ_FUZZ_STORE"])
    return _client


def _non_string_value(body: Any) -> bool:
    """Whether a modify body holds a task value or doc content that is not a string."""
    if not isinstance(body, dict):
        return False
    docs = (
        [i for i in body.get("docInserts") or () if isinstance(i, dict)]
        if isinstance(body.get("docInserts"), list)
        else []
    )
    if isinstance(body.get("docChanges"), list):
        docs += [
            c["newData"]
            for c in body["docChanges"]
            if isinstance(c, dict) and isinstance(c.get("newData"), dict)
        ]
    if any(d.get("content") is not None and not isinstance(d.get("content"), str) for d in docs):
        return True
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
        _obey_doc_rules(body)
        room = 1000
        for name in ("inserts", "changes", "deletes", "depends", *DOC_LISTS):
            if isinstance(body.get(name), list):
                body[name] = body[name][:room]
                room -= len(body[name])
    if operation == "ClaimDocs" and isinstance(body.get("claimQuery", {}), dict):
        body["claimQuery"] = _doc_claim(dict(body.get("claimQuery", {})))
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


def _fit_id(item: Any, field: str = "id", limit: int = 64) -> None:
    # JSON Schema's maxLength counts characters; the store's limits are bytes of UTF-8.
    if isinstance(item, dict) and isinstance(item.get(field), str):
        text = item[field]
        while len(text.encode("utf-8", "surrogatepass")) > limit:
            text = text[:-1]
        item[field] = text


DOC_LISTS = ("docInserts", "docChanges", "docDeletes", "docDepends")
_LEASE_MODES = ("CHANGE_LEASE", 1)


def _fit_doc_names(item: dict[str, Any]) -> dict[str, Any]:
    """A copy with a doc's names cut to the store's byte limits (1024; IDs 256)."""
    item = dict(item)
    for field in ("namespace", "key", "secondaryKey"):
        _fit_id(item, field, 1024)
    _fit_id(item, "id", 256)
    return item


def _obey_doc_rules(body: dict[str, Any]) -> None:
    """The doc items' rules (lua/README.md, server/entroq_redis_server/core/doc_wire.py): a doc
    namespace on every
    item, a doc inserted, changed or deleted at most once, deletes and depends naming a doc (not
    a set), a set named only by a lease change (at most once), a lease change carrying only its
    arrival, a change never moving a doc to another namespace."""
    seen: set[Any] = set()

    def once(namespace: Any, doc_id: Any, key: Any = "") -> bool:
        name = repr((namespace, doc_id, key if not doc_id else ""))  # any JSON, hashable
        if name in seen:
            return False
        seen.add(name)
        return True

    def listed(name: str) -> list[dict[str, Any]]:
        items = body.get(name)
        return [_fit_doc_names(i) for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    if isinstance(body.get("docInserts"), list):
        body["docInserts"] = [
            i
            for i in listed("docInserts")
            if i.get("namespace") and (not i.get("id") or once(i["namespace"], i["id"]))
        ]
    if isinstance(body.get("docChanges"), list):
        changes = []
        for change in body["docChanges"]:
            if not isinstance(change, dict) or not isinstance(change.get("oldId"), dict):
                continue
            change = dict(change)
            old = change["oldId"] = _fit_doc_names(change["oldId"])
            new = _fit_doc_names(change["newData"]) if isinstance(change.get("newData"), dict) else {}
            if not old.get("namespace") or not (old.get("id") or old.get("key")):
                continue
            if not once(old["namespace"], old.get("id", ""), old.get("key", "")):
                continue
            if not old.get("id"):
                change["mode"] = "CHANGE_LEASE"
            if change.get("mode") in _LEASE_MODES:
                new = {k: v for k, v in new.items() if k in ("atMs", "byMs")}
            else:
                new.pop("id", None)
                new["namespace"] = old["namespace"]
            change["newData"] = new
            changes.append(change)
        body["docChanges"] = changes
    for name in ("docDeletes", "docDepends"):
        if isinstance(body.get(name), list):
            kept = [i for i in listed(name) if i.get("namespace") and i.get("id")]
            if name == "docDeletes":
                kept = [i for i in kept if once(i["namespace"], i["id"])]
            body[name] = kept


def _docs_query(query: dict[str, Any]) -> dict[str, Any]:
    """A listing's parameters within the store's byte limits, keyExact alone or not at all."""
    query = _fit_doc_names(query)
    for field in ("keyStart", "keyEnd", "keyExact"):
        _fit_id(query, field, 1024)
    if isinstance(query.get("ids"), list):
        query["ids"] = [_fit_doc_names({"id": i})["id"] if isinstance(i, str) else i for i in query["ids"]]
    if query.get("keyStart") or query.get("keyEnd"):
        query.pop("keyExact", None)
    return query


def _doc_claim(claim: dict[str, Any]) -> dict[str, Any]:
    """A doc claim that is one of the two forms: a key's docs, or sets (with durationMs or
    taskToMatch), with a claimant of 1 to 128 bytes and names within the store's limits."""
    claim = _fit_doc_names(claim)
    _fit_id(claim, "claimant", 128)
    if not claim.get("claimant"):
        claim["claimant"] = "fuzz"
    sets = claim.get("sets")
    if isinstance(sets, list) and sets:
        claim.pop("namespace", None)
        claim.pop("key", None)
        kept = []
        named = set()  # a set claimed at most once per claim
        for item in sets:
            if isinstance(item, dict) and isinstance(item.get("set"), dict):
                item = {**item, "set": _fit_doc_names(item["set"])}
                name = (item["set"].get("namespace"), item["set"].get("key"))
                if all(isinstance(n, str) and n for n in name) and name not in named:
                    named.add(name)
                    kept.append(item)
        claim["sets"] = kept or [{"set": {"namespace": "fuzz", "key": "fuzz"}}]
        task = claim.get("taskToMatch")
        if isinstance(task, dict) and task.get("id"):
            claim.pop("durationMs", None)
        else:
            claim.pop("taskToMatch", None)
        return claim
    claim.pop("sets", None)
    claim.pop("taskToMatch", None)
    claim["namespace"] = claim.get("namespace") or "fuzz"
    claim["key"] = claim.get("key") or "fuzz"
    return claim


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
    operation = case.operation.definition.raw.get("operationId")
    case.body = obey_cross_field_rules(operation, case.body)
    if operation == "Docs" and isinstance(case.query, dict):
        case.query = _docs_query(case.query)
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


@schemathesis.check
def entroq_planned_status(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    status = response.status_code
    if status < 500:
        return None
    operation = case.operation.definition.raw.get("operationId")
    if status == 501 and _unserved_protocol(case):
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
