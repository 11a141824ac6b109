"""The docs a worker takes with a task (EntroQ's ``WithTakeDocs``): what a task needs, and what
the handler is handed.

I/O free: the worker loop (``_worker.py``) claims the sets, the lease (``_worker_lease.py``)
renews them with the task, and the outcome's modify (``_worker_outcomes.py``) releases them.

A need names a doc *set*: every doc of one (doc namespace, key), under one lock. The worker
claims the locks of all of a task's sets in one store call, tied to the task's lease
(``claim_doc_sets(..., task_to_match=task)``), so nobody else can insert, change, delete or
claim a member doc while the handler works, and the locks end exactly when the task's lease
does if the worker dies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from ._doc_types import Doc, DocChange, DocSet


@dataclasses.dataclass(frozen=True, slots=True)
class DocNeed:
    """A doc set a task needs, and the docs that must be in it.

    Args:
        namespace: The doc namespace.
        key: The set's primary key (non-empty).
        ids: Docs that must be members of the set: if one is absent when the set is claimed,
            the task is quarantined (it names a doc that does not exist) without running the
            handler.
        nonempty: The set must hold at least one doc (else the task is quarantined).

    An empty set with neither requirement is handed to the handler as it is: a handler may
    create the first docs of a key (as EntroQ's worker allows).
    """

    namespace: str
    key: str
    ids: tuple[str, ...] = ()
    nonempty: bool = False
    omit_members: bool = False


# What take_docs may return per need: a DocNeed, a DocSet, or a (namespace, key) pair.
DocNeedLike: TypeAlias = DocNeed | DocSet | tuple[str, str]


def as_need(item: DocNeedLike) -> DocNeed:
    if isinstance(item, DocNeed):
        return item
    if isinstance(item, DocSet):
        return DocNeed(item.namespace, item.key, omit_members=item.omit_members)
    if isinstance(item, tuple) and len(item) == 2 and all(isinstance(part, str) for part in item):
        return DocNeed(item[0], item[1])
    raise TypeError(f"take_docs returns DocNeed, DocSet or (namespace, key) items, not {item!r}")


def normalize_needs(items: Iterable[DocNeedLike]) -> list[DocNeed]:
    """One need per set (requirements merged), sorted by (namespace, key).

    The worker claims all of a task's sets in one all-or-nothing store call, so it never holds
    some while waiting for others and two workers cannot deadlock over them. The order is
    EntroQ's all the same (its worker claims set after set and sorts to avoid that), so the
    claim, the renewals and the handler see the sets in one order whatever take_docs returned.
    """
    merged: dict[tuple[str, str], DocNeed] = {}
    for item in items:
        need = as_need(item)
        if not need.key:
            raise ValueError(f"a doc set needs a non-empty key (doc namespace {need.namespace!r})")
        seen = merged.get((need.namespace, need.key))
        if seen is not None:
            need = DocNeed(
                need.namespace,
                need.key,
                tuple(dict.fromkeys(seen.ids + need.ids)),
                seen.nonempty or need.nonempty,
                seen.omit_members and need.omit_members,
            )
        merged[(need.namespace, need.key)] = need
    return [merged[k] for k in sorted(merged)]


def claim_request(needs: Sequence[DocNeed]) -> list[DocSet]:
    # Members are needed to check the requirements, whatever omit_members says.
    return [DocSet(n.namespace, n.key, n.omit_members and not n.ids and not n.nonempty) for n in needs]


@dataclasses.dataclass(frozen=True, slots=True)
class TakenDocs:
    """What a handler taking docs receives next to its task.

    Attributes:
        sets: The set locks held (set references), in (namespace, key) order.
        docs: The member docs, set after set, each set's by (secondary key, id); the
            versions to change or delete them with (holding a set does not change its docs).
    """

    sets: list[Doc]
    docs: list[Doc]

    def of(self, namespace: str, key: str) -> list[Doc]:
        """The member docs of one set."""
        return [d for d in self.docs if d.namespace == namespace and d.key == key]

    def get(self, namespace: str, doc_id: str) -> Doc | None:
        """A member doc by ID, or None."""
        return next((d for d in self.docs if d.namespace == namespace and d.id == doc_id), None)


def missing_docs(needs: Sequence[DocNeed], taken: TakenDocs) -> list[str]:
    """What the claimed sets lack that the task needs, one description each (empty: nothing)."""
    missing: list[str] = []
    for need in needs:
        members = {d.id for d in taken.of(need.namespace, need.key)}
        for doc_id in need.ids:
            if doc_id not in members:
                missing.append(f"doc {doc_id!r} in doc namespace {need.namespace!r}, key {need.key!r}")
        if need.nonempty and not members:
            missing.append(f"any doc in doc namespace {need.namespace!r}, key {need.key!r}")
    return missing


def set_release(held_set: Doc) -> DocChange:
    """Releases a held set lock now (lease mode, no future arrival)."""
    return DocChange(held_set.namespace, "", held_set.version, key=held_set.key, mode="lease")


def set_renewal(held_set: Doc, duration_ms: int) -> DocChange:
    """Extends a held set lock to ``duration_ms`` from now on the store's clock."""
    return DocChange(
        held_set.namespace, "", held_set.version, key=held_set.key, delay_ms=duration_ms, mode="lease"
    )
