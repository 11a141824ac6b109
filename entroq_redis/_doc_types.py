"""The document store's data types, named as EntroQ's clients name them.

A doc is a small versioned record in a *doc namespace* (EntroQ's term; not the same thing as
this project's key namespace, which holds the tasks and the docs alike), with a primary
``key`` and a ``secondary_key``. Docs take part in ``modify`` together with tasks, all or
nothing. A *doc set* is every doc of one (doc namespace, key): it has a lock and a version of
its own, so a worker can hold "all the docs of customer 42" while it works on a task.

Contents are bytes end to end, as task values are (the service carries JSON there). Times
are integer ms since the epoch on the store's clock, as for tasks.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Literal

from ._types import Task, TaskID, ms_to_datetime

DocChangeMode = Literal["full", "lease"]


@dataclasses.dataclass(frozen=True, slots=True)
class DocID:
    """Names one version of a doc, or of a doc set when ``id`` is empty and ``key`` is not.

    EntroQ 0.15's clients name a set this way (``DocID.is_set_ref``): the set's lock has a
    version of its own, which a renewal or release must name. They also name each doc they
    claimed through a set at the set's version, which the store accepts while the caller holds
    the set and nobody wrote the doc since the lock was (lua/README.md section 6).
    """

    namespace: str
    id: str
    version: int
    key: str = ""

    def is_set_ref(self) -> bool:
        """True when this names the set (namespace, key) rather than one doc."""
        return not self.id and bool(self.key)


@dataclasses.dataclass(frozen=True, slots=True)
class DocData:
    """A doc to insert.

    Args:
        namespace: The doc namespace (non-empty).
        id: A caller-chosen ID; None or "" lets the store generate a UUIDv4.
        key: The primary key (claims and sets go by it).
        secondary_key: Orders the docs of one key.
        content: The payload.
        at: Arrival as a datetime or ms since the epoch; None or <= 0 means now. An inserted
            doc is never held (its claimant is empty), as in EntroQ.
        delay_ms: Arrival relative to the store's clock; overrides ``at`` when given.
    """

    namespace: str
    id: str | None = None
    key: str = ""
    secondary_key: str = ""
    content: bytes = b""
    at: datetime.datetime | int | None = None
    delay_ms: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DocChange:
    """A change to one version of a doc, or a lease change of a doc set.

    Args:
        namespace: The doc's namespace (a doc never changes namespace).
        id: The doc's ID; "" with a non-empty ``key`` and mode "lease" names the set.
        version: The version the change applies to; any other fails the modify. While this
            client holds the doc's set, the set's version names the doc too until the doc is
            written (as EntroQ 1.13's clients name a claimed member; lua/README.md section 6).
        key: The new key ("full" mode).
        secondary_key: The new secondary key ("full" mode).
        content: The new content ("full" mode).
        at: New arrival; a future one makes the modifier the doc's claimant, None or <= 0
            releases it now.
        delay_ms: Arrival relative to the store's clock; overrides ``at`` when given.
        mode: "full" (default) replaces key, secondary key, content and arrival; "lease"
            moves only the arrival (renewing or releasing a doc's or a set's lock).
    """

    namespace: str
    id: str
    version: int
    key: str = ""
    secondary_key: str = ""
    content: bytes = b""
    at: datetime.datetime | int | None = None
    delay_ms: int | None = None
    mode: DocChangeMode = "full"

    def is_set_ref(self) -> bool:
        return not self.id and bool(self.key)


@dataclasses.dataclass(frozen=True, slots=True)
class Doc:
    """One version of a doc as the store holds it, or of a set's lock when ``id`` is empty.

    A set reference carries the set's ``namespace``, ``key``, ``version``, ``claimant`` and
    ``at_ms``; its other fields are empty.
    """

    namespace: str
    id: str
    version: int
    claimant: str
    at_ms: int
    key: str
    secondary_key: str
    content: bytes
    created_ms: int
    modified_ms: int

    @property
    def at(self) -> datetime.datetime:
        return ms_to_datetime(self.at_ms)

    @property
    def created(self) -> datetime.datetime:
        return ms_to_datetime(self.created_ms)

    @property
    def modified(self) -> datetime.datetime:
        return ms_to_datetime(self.modified_ms)

    def is_set_ref(self) -> bool:
        return not self.id and bool(self.key)

    def as_id(self) -> DocID:
        """This version of the doc (or set), for a delete, a depend or a lease change."""
        return DocID(self.namespace, self.id, self.version, self.key if self.is_set_ref() else "")

    def as_change(self, **overrides: Any) -> DocChange:
        """A change of this version keeping every field not overridden.

        Overridable: key, secondary_key, content, at, delay_ms, mode. As for tasks, the
        current arrival is kept unless overridden, so a held doc stays held by the
        modifier; pass ``at=None`` to release it.
        """
        fields: dict[str, Any] = {
            "key": self.key,
            "secondary_key": self.secondary_key,
            "content": self.content,
            "at": self.at_ms,
        }
        unknown = set(overrides) - {"key", "secondary_key", "content", "at", "delay_ms", "mode"}
        if unknown:
            raise TypeError(f"as_change() got unexpected overrides: {sorted(unknown)}")
        fields.update(overrides)
        return DocChange(self.namespace, self.id, self.version, **fields)


@dataclasses.dataclass(frozen=True, slots=True)
class DocSet:
    """A doc set to claim: every doc of (namespace, key), under one lock.

    Args:
        namespace: The doc namespace.
        key: The primary key (non-empty).
        omit_members: Claim the lock without returning the member docs.
    """

    namespace: str
    key: str
    omit_members: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedDocs:
    """What a set claim returns: each set's lock (set references) and the member docs."""

    sets: list[Doc]
    docs: list[Doc]


@dataclasses.dataclass(frozen=True, slots=True)
class NamespaceStats:
    """Counts for one doc namespace: docs, and docs held now (claimant set and at > now)."""

    name: str
    num_docs: int
    num_claimed: int = 0


class ModifyResult(tuple[list[Task], list[Task]]):
    """What ``modify`` returns: ``(inserted, changed)`` tasks, plus the docs as attributes.

    It unpacks as the two task lists (``inserted, changed = await eq.modify(...)``), as it
    always has; ``inserted_docs`` and ``changed_docs`` hold the docs, in request order (a
    set's lease change comes back as a set reference in ``changed_docs``).
    """

    inserted_docs: list[Doc]
    changed_docs: list[Doc]

    def __new__(
        cls,
        inserted: list[Task],
        changed: list[Task],
        inserted_docs: list[Doc] | None = None,
        changed_docs: list[Doc] | None = None,
    ) -> ModifyResult:
        result = super().__new__(cls, (inserted, changed))
        result.inserted_docs = inserted_docs if inserted_docs is not None else []
        result.changed_docs = changed_docs if changed_docs is not None else []
        return result

    @property
    def inserted(self) -> list[Task]:
        return self[0]

    @property
    def changed(self) -> list[Task]:
        return self[1]


def task_lease_match(task: Task | TaskID) -> TaskID:
    """The task whose lease a set claim follows (``task_to_match``), as a TaskID."""
    return task.as_id() if isinstance(task, Task) else task
