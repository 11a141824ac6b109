"""The document store's messages <-> the library's doc types. I/O free.

What EntroQ's clients send for docs (docs/reference/entroq-v1-grpc-and-docs.md 4,
docs/reference/entroq-client-generations.md A.2, C.2, 5.1), read into the library's ``DocData``,
``DocChange``, ``DocID`` and ``DocSet``, with a clear 400 for what cannot mean anything:

- a doc change keeps its namespace (``newData.namespace`` empty or equal to ``oldId``'s) and
  its ID; ``mode`` CHANGE_LEASE moves only the arrival (``newData`` holds ``byMs``/``atMs``
  only), CHANGE_RESET_CLAIMS is a task mode and refused;
- a doc set is named by an empty ``id`` and a non-empty ``key`` (protocol 2's ``DocID.key``),
  and only a CHANGE_LEASE change may name one (renewal or release of its lock);
- the REST listing takes its query parameters with or without the ``query.`` prefix (PyPI
  0.12.2, 0.12.3 and 0.13.0 send them unprefixed), and ``keyExact`` (0.12.4) is the key range
  holding exactly that key;
- a claim names either one key (``namespace``, ``key``: every doc of it) or ``sets`` (protocol
  2), the latter for ``durationMs`` or until ``taskToMatch``'s lease ends, not both.

Contents are bytes here, as task values are: ``core.wire`` has already swapped a JSON caller's
contents for their stored bytes (``core.values``), and swaps them back in responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import entroq_redis
from entroq_redis._contract import MAX_DOC_KEY_BYTES, MAX_PAGE

from . import schema as _schema
from .errors import bad_request
from .wire import non_negative_limit, parse_dict, task_message

_LEASE = 1
_RESET_CLAIMS = 2

# DocQuery's fields by every name a client sends them under (JSON and proto names).
_QUERY_FIELDS = {
    name: field.name
    for field in _schema.message_descriptor("DocQuery").fields
    for name in (field.name, field.json_name)
}
QUERY_PREFIX = "query."


def parse_docs_query(params: Iterable[tuple[str, str]]) -> Any:
    """A DocsRequest from ``GET /api/v0/docs`` query parameters, ``query.``-prefixed or not.

    Raises:
        ApiError: 400 for an unknown parameter, or one given twice (with and without the
            prefix included).
    """
    query: dict[str, Any] = {}
    for name, value in params:
        field = _QUERY_FIELDS.get(name.removeprefix(QUERY_PREFIX))
        if field is None:
            raise bad_request(f"unknown query parameter {name!r}")
        if field == "ids":
            query.setdefault("ids", []).append(value)
            continue
        if field in query:
            raise bad_request(f"query parameter {name!r} given more than once (with or without 'query.')")
        if field == "omit_values":
            lowered = value.lower()
            if lowered not in ("true", "1", "false", "0", ""):
                raise bad_request(f"query parameter {name!r} must be true or false, not {value!r}")
            query[field] = lowered in ("true", "1")
        else:
            query[field] = value
    return parse_dict({"query": query}, "DocsRequest")


def _arrival(data: Any, what: str) -> tuple[int, int | None]:
    """(at_ms, delay_ms) of a DocData: absolute ``atMs`` or relative ``byMs``, not both."""
    if data.at_ms and data.by_ms:
        raise bad_request(f"{what}: give atMs (absolute) or byMs (relative), not both")
    return data.at_ms, (data.by_ms if data.by_ms else None)


def doc_data(data: Any, index: int) -> entroq_redis.DocData:
    at_ms, delay_ms = _arrival(data, f"doc insert {index}")
    return entroq_redis.DocData(
        namespace=data.namespace,
        id=data.id or None,
        key=data.key,
        secondary_key=data.secondary_key,
        content=data.content,
        at=at_ms,
        delay_ms=delay_ms,
    )


def doc_change(change: Any, index: int) -> entroq_redis.DocChange:
    old, new = change.old_id, change.new_data
    what = f"doc change {index}"
    if change.mode == _RESET_CLAIMS:
        raise bad_request(f"{what}: CHANGE_RESET_CLAIMS is for tasks (docs count no claims)")
    if new.namespace and new.namespace != old.namespace:
        raise bad_request(
            f"{what}: a doc never changes namespace (oldId.namespace {old.namespace!r}, "
            f"newData.namespace {new.namespace!r})"
        )
    if new.id and new.id != old.id:
        raise bad_request(f"{what}: newData.id {new.id!r} is not oldId.id {old.id!r} (IDs never change)")
    at_ms, delay_ms = _arrival(new, what)
    if not old.id:
        if not old.key:
            raise bad_request(f"{what}: oldId names neither a doc (id) nor a doc set (key)")
        if change.mode != _LEASE:
            raise bad_request(
                f"{what}: a doc set (oldId without id, key {old.key!r}) is renewed or released "
                "only by a CHANGE_LEASE change"
            )
    if change.mode == _LEASE:
        if new.key or new.secondary_key or new.content:
            raise bad_request(
                f"{what}: a CHANGE_LEASE change moves only the arrival; newData may hold byMs or atMs, "
                "not key, secondaryKey or content"
            )
        return entroq_redis.DocChange(
            namespace=old.namespace,
            id=old.id,
            version=old.version,
            key="" if old.id else old.key,
            at=at_ms,
            delay_ms=delay_ms,
            mode="lease",
        )
    return entroq_redis.DocChange(
        namespace=old.namespace,
        id=old.id,
        version=old.version,
        key=new.key,
        secondary_key=new.secondary_key,
        content=new.content,
        at=at_ms,
        delay_ms=delay_ms,
    )


def doc_id(message: Any) -> entroq_redis.DocID:
    return entroq_redis.DocID(message.namespace, message.id, message.version, message.key)


def modify_doc_args(
    request: Any,
) -> tuple[
    list[entroq_redis.DocData],
    list[entroq_redis.DocChange],
    list[entroq_redis.DocID],
    list[entroq_redis.DocID],
]:
    """(doc_inserts, doc_changes, doc_deletes, doc_depends) of a ModifyRequest."""
    return (
        [doc_data(d, i) for i, d in enumerate(request.doc_inserts)],
        [doc_change(c, i) for i, c in enumerate(request.doc_changes)],
        [doc_id(d) for d in request.doc_deletes],
        [doc_id(d) for d in request.doc_depends],
    )


def docs_args(query: Any) -> dict[str, Any]:
    """The keyword arguments of ``EntroQ.docs`` for a DocQuery (namespace first, positional)."""
    if len(query.ids) > MAX_PAGE:
        raise bad_request(f"at most {MAX_PAGE} doc IDs per listing, got {len(query.ids)}")
    key_start, key_end = query.key_start, query.key_end
    if query.key_exact:
        if key_start or key_end:
            raise bad_request("give keyExact, or keyStart and keyEnd, not both")
        key_start, key_end = query.key_exact, exact_key_end(query.key_exact)
    return {
        "ids": list(query.ids),
        "key_start": key_start,
        "key_end": key_end,
        "limit": non_negative_limit(query.limit),
        "omit_values": query.omit_values,
    }


def exact_key_end(key: str) -> str:
    """The end of the key range [key, end) that holds exactly ``key``.

    ``key + NUL``: no byte string sorts between a key and the key followed by NUL. A key at the
    length limit cannot be followed by anything, so there the end is the key's successor
    (its last byte below 0xFF raised by one, the 0xFF bytes after it dropped): no key of at
    most MAX_DOC_KEY_BYTES sorts between them either. "" (no bound) if every byte is 0xFF.
    Keys are bytes to the store (UTF-8, with surrogateescape for bytes that are not).
    """
    raw = key.encode("utf-8", "surrogateescape")
    if len(raw) < MAX_DOC_KEY_BYTES:
        return key + "\x00"
    trimmed = raw.rstrip(b"\xff")
    if not trimmed:
        return ""
    return (trimmed[:-1] + bytes([trimmed[-1] + 1])).decode("utf-8", "surrogateescape")


def claim_sets(claim: Any) -> tuple[list[entroq_redis.DocSet], entroq_redis.TaskID | None]:
    """The sets of a protocol-2 DocClaim and its task to match (None: a claim for durationMs)."""
    if claim.namespace or claim.key:
        raise bad_request("a doc claim names one key (namespace and key) or sets, not both")
    sets = []
    for index, item in enumerate(claim.sets):
        if not item.set.namespace or not item.set.key:
            raise bad_request(f"sets[{index}]: a doc set names a namespace and a non-empty key")
        sets.append(entroq_redis.DocSet(item.set.namespace, item.set.key, item.omit_members))
    if not claim.HasField("task_to_match"):
        return sets, None
    if claim.duration_ms:
        raise bad_request(
            "a set claim lasts durationMs or as long as taskToMatch's lease, not both: give one"
        )
    task = claim.task_to_match
    if not task.id:
        raise bad_request("taskToMatch needs the ID of a task the claimant holds")
    return sets, entroq_redis.TaskID(task.id, task.version, task.queue)


def check_key_claim(claim: Any) -> None:
    """Refuses a one-key claim that carries set-claim fields."""
    if claim.HasField("task_to_match"):
        raise bad_request("taskToMatch is for set claims (sets), not for the claim of one key")


# Library results -> responses.


def doc_message(doc: entroq_redis.Doc) -> Any:
    return _schema.Doc(
        namespace=doc.namespace,
        id=doc.id,
        version=doc.version,
        claimant=doc.claimant,
        at_ms=doc.at_ms,
        key=doc.key,
        secondary_key=doc.secondary_key,
        content=doc.content,
        created_ms=doc.created_ms,
        modified_ms=doc.modified_ms,
    )


def docs_response(docs: Sequence[entroq_redis.Doc]) -> Any:
    return _schema.DocsResponse(docs=[doc_message(d) for d in docs])


def claim_docs_response(docs: Sequence[entroq_redis.Doc], sets: Sequence[entroq_redis.Doc] = ()) -> Any:
    return _schema.ClaimDocsResponse(docs=[doc_message(d) for d in docs], sets=[doc_message(s) for s in sets])


def namespaces_response(stats: Sequence[entroq_redis.NamespaceStats]) -> Any:
    return _schema.NamespacesResponse(
        namespaces=[
            _schema.NamespaceStat(name=s.name, num_docs=s.num_docs, num_claimed=s.num_claimed) for s in stats
        ]
    )


def modify_response(result: entroq_redis.ModifyResult) -> Any:
    """The ModifyResponse of a modify's result: tasks and docs (a set's lease change comes back as
    a Doc without an id, holding the set's key)."""
    return _schema.ModifyResponse(
        inserted=[task_message(t) for t in result.inserted],
        changed=[task_message(t) for t in result.changed],
        inserted_docs=[doc_message(d) for d in result.inserted_docs],
        changed_docs=[doc_message(d) for d in result.changed_docs],
    )
