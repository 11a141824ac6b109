"""A pure-Python model of EntroQ's semantics as this project defines them (battery row j).

Written from docs/concepts.md "Semantics" and lua/README.md sections 5 and 6, not from the scripts:

- every task has a version; a claim or a change moves it by one; inserts start at 0;
- claim: any task of the named queues with ``at <= now`` may be taken; the claimed task gets
  ``version + 1``, ``claims + 1``, ``claimant`` = the claimer, ``at = now + duration``;
- modify is all or nothing; it fails when an insert's ID exists (INSERT collision), a change,
  delete or depend names a missing task or another version (a delete or depend naming a queue
  the task is not in counts as missing), or a change or delete touches a task held by another
  claimant (``at > now``, claimant non-empty and not the modifier: CLAIM); depends never check
  the claimant;
- applied: deletes, then changes (version + 1; queue, value, attempt, err unless a lease
  change; claims 0 for reset_claims; claimant = the modifier if the new ``at > now``, else
  empty), then inserts (version 0, claims 0, claimant = the inserter);
- queue stats: available ``at <= now``; claimed ``at > now`` with claims > 0 and a claimant;
  future the rest; max_claims exact.

Docs (docs/design.md 2.14, docs/reference/entroq-v1-grpc-and-docs.md 4), in the same
all-or-nothing modify as tasks:

- a doc is (doc namespace, id) with a version from 0; a doc is *held* by its claimant while
  the claimant is non-empty and ``at > now``, and only another claimant is kept out;
- doc insert: INSERT collision if the (namespace, id) exists; the doc starts at version 0 with
  no claimant, ``at = now + delay`` (now for a delay <= 0), created = modified = now;
- doc change (full or lease): CHANGE missing, CHANGE mismatch, or CLAIM when held by another
  (the first that applies); applied: version + 1, modified = now, a full change also replaces
  key, secondary key and content; ``at = now + delay`` with the modifier as claimant for a
  delay > 0, else ``at = now`` and no claimant (released);
- doc delete: DELETE missing or mismatch, or CLAIM; doc depend: DEPEND missing or mismatch;
- the same doc twice among a modify's doc inserts, changes and deletes is a bad request;
- claim_docs(namespace, key): refused with a CLAIM failure for every doc of the key held by
  another, else each doc of the key gets version + 1, the claimer, ``at = now + duration``,
  modified = now; they come back by (secondary key, id);
- listing: a doc namespace's docs by (key, secondary key, id), as bytes; namespace stats:
  doc namespaces with docs, by name, with their docs and their docs held now.

Times the model cannot know to the millisecond (the store's ``now`` during a call) are taken
from the store's reply after checking that they lie between two readings of the store's clock
taken around the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence


@dataclasses.dataclass
class ModelTask:
    id: str
    queue: str
    version: int
    at: int
    claimant: str
    value: bytes
    created: int
    modified: int
    claims: int
    attempt: int
    err: str

    def fields(self) -> tuple[object, ...]:
        return dataclasses.astuple(self)


@dataclasses.dataclass(frozen=True)
class Insert:
    queue: str
    id: str | None
    delay_ms: int
    value: bytes
    attempt: int = 0
    err: str = ""


@dataclasses.dataclass(frozen=True)
class Change:
    id: str
    version: int
    queue: str
    mode: str  # full | lease | reset_claims
    delay_ms: int
    value: bytes = b""
    attempt: int = 0
    err: str = ""


@dataclasses.dataclass(frozen=True)
class Ref:
    id: str
    version: int
    queue: str = ""


Failure = tuple[str, str, str]  # kind, reason, id


@dataclasses.dataclass
class ModelDoc:
    namespace: str
    id: str
    version: int
    claimant: str
    at: int
    key: str
    secondary_key: str
    content: bytes
    created: int
    modified: int


@dataclasses.dataclass(frozen=True)
class DocInsert:
    namespace: str
    id: str | None
    key: str
    secondary_key: str
    delay_ms: int
    content: bytes


@dataclasses.dataclass(frozen=True)
class DocChg:
    namespace: str
    id: str
    version: int
    mode: str  # full | lease
    key: str
    secondary_key: str
    delay_ms: int
    content: bytes


@dataclasses.dataclass(frozen=True)
class DocRef:
    namespace: str
    id: str
    version: int


DocFailure = tuple[str, str, str, str]  # kind, reason, doc namespace, id


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclasses.dataclass
class Model:
    tasks: dict[str, ModelTask] = dataclasses.field(default_factory=dict)
    docs: dict[tuple[str, str], ModelDoc] = dataclasses.field(default_factory=dict)

    def held_by_other(self, task: ModelTask, claimant: str, now: int) -> bool:
        return task.at > now and task.claimant != "" and task.claimant != claimant

    def claimable(self, queues: Iterable[str], now: int) -> list[ModelTask]:
        wanted = set(queues)
        return [t for t in self.tasks.values() if t.queue in wanted and t.at <= now]

    def failures(
        self,
        claimant: str,
        now: int,
        inserts: Sequence[Insert],
        changes: Sequence[Change],
        deletes: Sequence[Ref],
        depends: Sequence[Ref],
    ) -> list[Failure]:
        found: list[Failure] = []
        for item in inserts:
            if item.id is not None and item.id in self.tasks:
                found.append(("INSERT", "collision", item.id))
        for change in changes:
            task = self.tasks.get(change.id)
            if task is None:
                found.append(("CHANGE", "missing", change.id))
            elif task.version != change.version:
                found.append(("CHANGE", "mismatch", change.id))
            elif self.held_by_other(task, claimant, now):
                found.append(("CLAIM", "claimed", change.id))
        for kind, refs in (("DELETE", deletes), ("DEPEND", depends)):
            for ref in refs:
                task = self.tasks.get(ref.id)
                if task is None or (ref.queue and ref.queue != task.queue):
                    found.append((kind, "missing", ref.id))
                elif task.version != ref.version:
                    found.append((kind, "mismatch", ref.id))
                elif kind == "DELETE" and self.held_by_other(task, claimant, now):
                    found.append(("CLAIM", "claimed", ref.id))
        return found

    def stats(self, now: int) -> dict[str, tuple[int, int, int, int, int]]:
        """queue -> (num_tasks, num_available, num_claimed, num_future, max_claims)."""
        result: dict[str, tuple[int, int, int, int, int]] = {}
        for queue in sorted({t.queue for t in self.tasks.values()}):
            tasks = [t for t in self.tasks.values() if t.queue == queue]
            available = sum(t.at <= now for t in tasks)
            claimed = sum(t.at > now and t.claims > 0 and t.claimant != "" for t in tasks)
            result[queue] = (
                len(tasks),
                available,
                claimed,
                len(tasks) - available - claimed,
                max(t.claims for t in tasks),
            )
        return result

    # --- docs ---

    def doc_held_by_other(self, doc: ModelDoc, claimant: str, now: int) -> bool:
        return doc.at > now and doc.claimant != "" and doc.claimant != claimant

    def same_doc_twice(
        self, inserts: Sequence[DocInsert], changes: Sequence[DocChg], deletes: Sequence[DocRef]
    ) -> bool:
        named = [(i.namespace, i.id) for i in inserts if i.id is not None]
        named += [(c.namespace, c.id) for c in changes] + [(d.namespace, d.id) for d in deletes]
        return len(named) != len(set(named))

    def doc_failures(
        self,
        claimant: str,
        now: int,
        inserts: Sequence[DocInsert],
        changes: Sequence[DocChg],
        deletes: Sequence[DocRef],
        depends: Sequence[DocRef],
    ) -> list[DocFailure]:
        found: list[DocFailure] = []
        for item in inserts:
            if item.id is not None and (item.namespace, item.id) in self.docs:
                found.append(("INSERT", "collision", item.namespace, item.id))
        refs = [("CHANGE", DocRef(c.namespace, c.id, c.version)) for c in changes]
        refs += [("DELETE", ref) for ref in deletes] + [("DEPEND", ref) for ref in depends]
        for kind, ref in refs:
            doc = self.docs.get((ref.namespace, ref.id))
            if doc is None:
                found.append((kind, "missing", ref.namespace, ref.id))
            elif doc.version != ref.version:
                found.append((kind, "mismatch", ref.namespace, ref.id))
            elif kind != "DEPEND" and self.doc_held_by_other(doc, claimant, now):
                found.append(("CLAIM", "claimed", ref.namespace, ref.id))
        return found

    def docs_of_key(self, namespace: str, key: str) -> list[ModelDoc]:
        """A key's docs in the order claim_docs returns them: by (secondary key, id)."""
        docs = [d for d in self.docs.values() if d.namespace == namespace and d.key == key]
        return sorted(docs, key=lambda d: (as_bytes(d.secondary_key), as_bytes(d.id)))

    def claim_docs_failures(self, claimant: str, now: int, namespace: str, key: str) -> list[DocFailure]:
        return [
            ("CLAIM", "claimed", d.namespace, d.id)
            for d in self.docs_of_key(namespace, key)
            if self.doc_held_by_other(d, claimant, now)
        ]

    def listing(self, namespace: str) -> list[ModelDoc]:
        """A doc namespace's docs as listed: by (key, secondary key, id), compared as bytes."""
        docs = [d for d in self.docs.values() if d.namespace == namespace]
        return sorted(docs, key=lambda d: (as_bytes(d.key), as_bytes(d.secondary_key), as_bytes(d.id)))

    def doc_stats(self, now: int) -> list[tuple[str, int, int]]:
        """(doc namespace, docs, docs held now) for each doc namespace holding docs, by name."""
        result = []
        for namespace in sorted({d.namespace for d in self.docs.values()}, key=as_bytes):
            docs = [d for d in self.docs.values() if d.namespace == namespace]
            result.append((namespace, len(docs), sum(d.claimant != "" and d.at > now for d in docs)))
        return result
