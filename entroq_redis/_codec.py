"""Encodes script arguments and decodes script replies (lua/README.md, contract 3).

I/O free: the Redis backend calls these around each EVALSHA. Strings go to the store as
UTF-8; names that came from the store undecodable round-trip through surrogateescape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._contract import CONTRACT_VERSION
from ._doc_types import ClaimedDocs, Doc, DocChange, DocData, DocID, DocSet, ModifyResult, NamespaceStats
from ._errors import (
    DependencyError,
    DependencyFailure,
    DocDependencyFailure,
    InvalidArgumentError,
    StoreError,
)
from ._keys import Keys
from ._types import ClaimSlot, QueueStats, Task, TaskChange, TaskData, TaskID, arrival_ms, as_bytes

Arg = str | bytes | int

_KINDS = frozenset({"INSERT", "CHANGE", "DELETE", "DEPEND", "CLAIM"})
_REASONS = frozenset({"collision", "missing", "mismatch", "claimed"})


def text(raw: bytes) -> str:
    """Store bytes to str; invalid UTF-8 survives a round trip through surrogateescape."""
    return raw.decode("utf-8", "surrogateescape")


def raw(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def decode_task(fields: Sequence[Any]) -> Task:
    queue, task_id, version, at, claimant, value, created, modified, claims, attempt, err = fields
    return Task(
        text(queue),
        text(task_id),
        version,
        at,
        text(claimant),
        value,
        created,
        modified,
        claims,
        attempt,
        text(err),
    )


def decode_doc(fields: Sequence[Any]) -> Doc:
    """A doc, or a set reference (id "", key = the set's key, no content or times)."""
    namespace, doc_id, version, claimant, at, key, secondary_key, content, created, modified = fields
    return Doc(
        text(namespace),
        text(doc_id),
        version,
        text(claimant),
        at,
        text(key),
        text(secondary_key),
        content,
        created,
        modified,
    )


def _arrival(at: Any, delay_ms: int | None) -> tuple[str, int]:
    if delay_ms is not None:
        return "by", delay_ms
    return "at", arrival_ms(at)


def time_args(keys: Keys) -> list[Arg]:
    return [keys.prefix, CONTRACT_VERSION]


def claim_args(
    keys: Keys,
    claimant: str,
    duration_ms: int,
    queues: Sequence[str],
    randoms: Sequence[tuple[int, int]],
    finish: Sequence[TaskID] = (),
    slots: Sequence[ClaimSlot] | None = None,
) -> list[Arg]:
    """claim.lua's ARGV: one (rank_random, order_random) pair per slot.

    Without ``slots`` every slot claims as ``claimant`` for ``duration_ms`` (the "shared"
    form); with them (as many as ``randoms``) each names its own (the "each" form), and
    ``claimant`` is only the one the finish deletes are checked against.
    """
    form = "shared" if slots is None else "each"
    args: list[Arg] = [
        keys.prefix,
        CONTRACT_VERSION,
        raw(claimant),
        duration_ms if slots is None else 0,
        len(finish),
        len(queues),
        len(randoms),
        form,
    ]
    for task_id in finish:
        args += [raw(task_id.id), task_id.version, raw(task_id.queue)]
    args += [raw(q) for q in queues]
    if slots is None:
        for rank_random, order_random in randoms:
            args += [rank_random, order_random]
    else:
        for slot, (rank_random, order_random) in zip(slots, randoms, strict=True):
            args += [raw(slot.claimant), slot.duration_ms, rank_random, order_random]
    return args


def decode_claim(reply: Sequence[Any]) -> tuple[list[Task], int]:
    """(tasks in slot order, 0) when any was claimed; ([], wait_ms) otherwise, wait_ms -1
    meaning no tasks at all.

    Raises DependencyError when a finish delete was refused (nothing deleted or claimed).
    """
    if reply[0] == 1:
        return [decode_task(fields) for fields in reply[1]], 0
    if reply[0] == -1:
        raise _dependency_error(reply[1])
    return [], reply[1]


def claim_id_args(keys: Keys, claimant: str, duration_ms: int, task_id: str, queue: str) -> list[Arg]:
    return [keys.prefix, CONTRACT_VERSION, raw(claimant), duration_ms, raw(task_id), raw(queue)]


def decode_claim_id(reply: Sequence[Any]) -> Task | None:
    """The claimed task; None when the task is leased or delayed ({0, wait_ms}) or missing ({-1, -1})."""
    return decode_task(reply[1]) if reply[0] == 1 else None


def modify_args(
    keys: Keys,
    claimant: str,
    id_seed: str,
    notify: str,
    inserts: Sequence[TaskData],
    changes: Sequence[TaskChange],
    deletes: Sequence[TaskID],
    depends: Sequence[TaskID],
    doc_inserts: Sequence[DocData] = (),
    doc_changes: Sequence[DocChange] = (),
    doc_deletes: Sequence[DocID] = (),
    doc_depends: Sequence[DocID] = (),
) -> list[Arg]:
    args: list[Arg] = [
        keys.prefix,
        CONTRACT_VERSION,
        raw(claimant),
        id_seed,
        notify,
        len(inserts),
        len(changes),
        len(deletes),
        len(depends),
        len(doc_inserts),
        len(doc_changes),
        len(doc_deletes),
        len(doc_depends),
    ]
    for data in inserts:
        mode, ms = _arrival(data.at, data.delay_ms)
        args += [
            raw(data.id or ""),
            raw(data.queue),
            mode,
            ms,
            as_bytes(data.value),
            data.attempt,
            raw(data.err),
        ]
    for change in changes:
        mode, ms = _arrival(change.at, change.delay_ms)
        args += [
            raw(change.id),
            change.version,
            raw(change.old_queue),
            change.mode,
            raw(change.queue),
            mode,
            ms,
            as_bytes(change.value),
            change.attempt,
            raw(change.err),
        ]
    for task_id in (*deletes, *depends):
        args += [raw(task_id.id), task_id.version, raw(task_id.queue)]
    for doc in doc_inserts:
        mode, ms = _arrival(doc.at, doc.delay_ms)
        args += [
            raw(doc.namespace),
            raw(doc.id or ""),
            raw(doc.key),
            raw(doc.secondary_key),
            mode,
            ms,
            as_bytes(doc.content),
        ]
    for doc_change in doc_changes:
        mode, ms = _arrival(doc_change.at, doc_change.delay_ms)
        args += [
            raw(doc_change.namespace),
            raw(doc_change.id),
            doc_change.version,
            doc_change.mode,
            raw(doc_change.key),
            raw(doc_change.secondary_key),
            mode,
            ms,
            # A lease change carries no content (the script ignores it).
            b"" if doc_change.mode == "lease" else as_bytes(doc_change.content),
        ]
    for doc_id in (*doc_deletes, *doc_depends):
        args += [raw(doc_id.namespace), raw(doc_id.id), doc_id.version]
    return args


def decode_modify(reply: Sequence[Any]) -> ModifyResult:
    """The applied modify; raises DependencyError with the task and doc failures if refused."""
    if reply[0] == 1:
        inserted, changed, inserted_docs, changed_docs = reply[1:5]
        return ModifyResult(
            [decode_task(t) for t in inserted],
            [decode_task(t) for t in changed],
            [decode_doc(d) for d in inserted_docs],
            [decode_doc(d) for d in changed_docs],
        )
    raise _dependency_error(reply[1], reply[2])


def _failure_names(kind: bytes, reason: bytes) -> tuple[Any, Any]:
    kind_text, reason_text = text(kind), text(reason)
    if kind_text not in _KINDS or reason_text not in _REASONS:
        raise StoreError(f"a script reported an unknown failure {kind_text}/{reason_text}")
    return kind_text, reason_text


def decode_doc_failures(entries: Sequence[Any]) -> list[DocDependencyFailure]:
    """Doc failures ``{kind, reason, namespace, id, version, current_version, key}``."""
    failures = []
    for kind, reason, namespace, doc_id, version, current, key in entries:
        kind_text, reason_text = _failure_names(kind, reason)
        failures.append(
            DocDependencyFailure(
                kind_text, reason_text, text(namespace), text(doc_id), version, current, text(key)
            )
        )
    return failures


def _dependency_error(entries: Sequence[Any], doc_entries: Sequence[Any] = ()) -> DependencyError:
    failures = []
    for kind, reason, task_id, version, queue, current in entries:
        kind_text, reason_text = _failure_names(kind, reason)
        failures.append(
            DependencyFailure(kind_text, reason_text, text(task_id), version, text(queue), current)
        )
    return DependencyError(failures, doc_failures=decode_doc_failures(doc_entries))


def tasks_args(
    keys: Keys, claimant: str, queue: str, limit: int, cursor: int, omit_values: bool, ids: Sequence[str]
) -> list[Arg]:
    return [
        keys.prefix,
        CONTRACT_VERSION,
        raw(claimant),
        raw(queue),
        limit,
        cursor,
        "1" if omit_values else "0",
        *(raw(i) for i in ids),
    ]


def decode_tasks(reply: Sequence[Any]) -> tuple[int, list[Task]]:
    return reply[0], [decode_task(t) for t in reply[1]]


def queues_args(
    keys: Keys, detail: str, limit: int, after: str, prefixes: Sequence[str], exact: Sequence[str]
) -> list[Arg]:
    return [
        keys.prefix,
        CONTRACT_VERSION,
        detail,
        limit,
        raw(after),
        len(prefixes),
        *(raw(p) for p in prefixes),
        *(raw(e) for e in exact),
    ]


def decode_queues(reply: Sequence[Any]) -> tuple[bool, list[QueueStats]]:
    more, rows = reply
    stats = []
    for row in rows:
        if len(row) == 2:
            stats.append(QueueStats(text(row[0]), row[1]))
        else:
            name, size, available, claimed, future, max_claims = row
            stats.append(QueueStats(text(name), size, claimed, available, future, max_claims))
    return more == 1, stats


def docs_args(
    keys: Keys,
    namespace: str,
    key_start: str,
    key_end: str,
    limit: int,
    cursor: int,
    omit_values: bool,
    ids: Sequence[str],
) -> list[Arg]:
    return [
        keys.prefix,
        CONTRACT_VERSION,
        raw(namespace),
        raw(key_start),
        raw(key_end),
        limit,
        cursor,
        "1" if omit_values else "0",
        *(raw(i) for i in ids),
    ]


def decode_docs(reply: Sequence[Any]) -> tuple[int, list[Doc]]:
    return reply[0], [decode_doc(d) for d in reply[1]]


def claim_docs_args(keys: Keys, claimant: str, duration_ms: int, namespace: str, key: str) -> list[Arg]:
    return [keys.prefix, CONTRACT_VERSION, raw(claimant), duration_ms, raw(namespace), raw(key)]


def decode_claim_docs(reply: Sequence[Any]) -> list[Doc]:
    """The claimed docs; raises DependencyError naming the held docs (and set) if refused."""
    if reply[0] == 1:
        return [decode_doc(d) for d in reply[1]]
    raise DependencyError([], "docs held by another claimant", decode_doc_failures(reply[1]))


def claim_doc_sets_args(
    keys: Keys, claimant: str, duration_ms: int, task_to_match: TaskID | None, sets: Sequence[DocSet]
) -> list[Arg]:
    task = task_to_match or TaskID("", 0)
    args: list[Arg] = [
        keys.prefix,
        CONTRACT_VERSION,
        raw(claimant),
        duration_ms,
        raw(task.id),
        task.version,
        raw(task.queue),
        len(sets),
    ]
    for doc_set in sets:
        args += [raw(doc_set.namespace), raw(doc_set.key), "1" if doc_set.omit_members else "0"]
    return args


def decode_claim_doc_sets(reply: Sequence[Any]) -> ClaimedDocs:
    """The set references and member docs; raises DependencyError if refused.

    A task failure there means the task to match is missing, at another version, or not
    held by the claimant now (reason "claimed").
    """
    if reply[0] == 1:
        return ClaimedDocs([decode_doc(s) for s in reply[1]], [decode_doc(d) for d in reply[2]])
    task_failures = _dependency_error(reply[1]).failures
    message = "doc sets held by another claimant"
    if task_failures:
        message = "the task to match must exist at that version and be held by this claimant"
    raise DependencyError(task_failures, message, decode_doc_failures(reply[2]))


def namespaces_args(
    keys: Keys, limit: int, after: str, prefixes: Sequence[str], exact: Sequence[str]
) -> list[Arg]:
    return [
        keys.prefix,
        CONTRACT_VERSION,
        limit,
        raw(after),
        len(prefixes),
        *(raw(p) for p in prefixes),
        *(raw(e) for e in exact),
    ]


def decode_namespaces(reply: Sequence[Any]) -> tuple[bool, list[NamespaceStats]]:
    more, rows = reply
    return more == 1, [
        NamespaceStats(text(name), num_docs, num_claimed) for name, num_docs, num_claimed in rows
    ]


def script_error(message: str) -> Exception:
    """Maps a script's error reply to the exception the caller should see."""
    code, _, detail = message.partition(" ")
    if code == "EQ_BADARG":
        return InvalidArgumentError(detail)
    return StoreError(message)
