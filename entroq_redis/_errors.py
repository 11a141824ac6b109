"""Exceptions raised by the client, whatever the backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Literal

from ._doc_types import DocID
from ._types import TaskID

FailureKind = Literal["INSERT", "CHANGE", "DELETE", "DEPEND", "CLAIM"]
FailureReason = Literal["collision", "missing", "mismatch", "claimed"]


class EntroQError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgumentError(EntroQError, ValueError):
    """The request itself is wrong (empty queue name, oversized ID, ...); nothing was written."""


class ClaimTimeoutError(EntroQError, TimeoutError):
    """A blocking claim found no task before its timeout."""


class StoreError(EntroQError):
    """The store could not be reached, or answered in a way the client cannot use."""


class StoreUnavailableError(StoreError):
    """The store (or the HTTP service in front of it) is not reachable right now."""


class OutcomeUnknownError(StoreError):
    """A mutation ran on the primary but its replication/fsync was not confirmed in time.

    Neither success nor failure: the change is visible now, but a failover before it
    reached the replicas could undo it. Retrying the same modify (same versions) is safe:
    if the first attempt survived, the retry fails with a DependencyError naming the new
    version; if it was lost, the retry applies it. It is never applied twice.
    """


class UnsafeStoreError(StoreError):
    """The store's configuration could lose tasks (an evicting maxmemory-policy)."""


class PermissionDeniedError(EntroQError):
    """The service refused the request for this caller (HTTP 401/403)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class DependencyFailure:
    """One reason a modify was refused.

    ``kind`` is the role of the failing item (CLAIM means the task is held by another
    claimant); ``reason`` says what was wrong; ``version`` is the version the request named
    (for INSERT, the existing task's); ``current_version`` is the task's current version, or
    -1 if no task has that ID (a delete or depend naming a queue the task is not in is
    "missing" with the task's real version here).
    """

    kind: FailureKind
    reason: FailureReason
    id: str
    version: int
    queue: str = ""
    current_version: int = -1

    def as_id(self) -> TaskID:
        return TaskID(self.id, self.version, self.queue)

    def describe(self) -> str:
        where = f" in {self.queue!r}" if self.queue else ""
        if self.reason == "collision":
            return f"insert collision: task {self.id}{where} already exists at version {self.version}"
        if self.reason == "missing":
            if self.current_version >= 0:
                # Named with a queue it is not in (it exists elsewhere).
                return f"{self.kind.lower()} missing: task {self.id} v{self.version} is not{where}"
            return f"{self.kind.lower()} missing: task {self.id} v{self.version}{where} does not exist"
        if self.reason == "mismatch":
            return (
                f"{self.kind.lower()} mismatched: task {self.id}{where} is at version "
                f"{self.current_version}, not {self.version}"
            )
        return f"claimed: task {self.id} v{self.version}{where} is held by another claimant"


@dataclasses.dataclass(frozen=True, slots=True)
class DocDependencyFailure:
    """One reason a modify (or a doc claim) was refused, for a doc or a doc set.

    As DependencyFailure, for docs: ``id`` is empty and ``key`` is the set's key when the
    failing item names a doc set (its lock); ``current_version`` is -1 when no doc (or no
    set lock) exists.
    """

    kind: FailureKind
    reason: FailureReason
    namespace: str
    id: str
    version: int
    current_version: int = -1
    key: str = ""

    def as_id(self) -> DocID:
        return DocID(self.namespace, self.id, self.version, self.key)

    def describe(self) -> str:
        what = f"doc {self.id}" if self.id else f"doc set {self.key!r}"
        where = f" in doc namespace {self.namespace!r}"
        if self.reason == "collision":
            return f"doc insert collision: {what}{where} already exists at version {self.version}"
        if self.reason == "missing":
            return f"{self.kind.lower()} missing: {what} v{self.version}{where} does not exist"
        if self.reason == "mismatch":
            return (
                f"{self.kind.lower()} mismatched: {what}{where} is at version "
                f"{self.current_version}, not {self.version}"
            )
        return f"claimed: {what} v{self.version}{where} is held by another claimant"


class DependencyError(EntroQError):
    """A modify was refused; nothing was written.

    ``failures`` lists every failing task item, ``doc_failures`` every failing doc item.
    """

    def __init__(
        self,
        failures: Iterable[DependencyFailure],
        message: str = "",
        doc_failures: Iterable[DocDependencyFailure] = (),
    ) -> None:
        self.failures: tuple[DependencyFailure, ...] = tuple(failures)
        self.doc_failures: tuple[DocDependencyFailure, ...] = tuple(doc_failures)
        details = "; ".join(
            [failure.describe() for failure in self.failures]
            + [failure.describe() for failure in self.doc_failures]
        )
        text = "modification dependency error"
        if message:
            text += f": {message}"
        if details:
            text += f": {details}"
        super().__init__(text)

    def _ids(self, *reasons: str) -> list[TaskID]:
        return [f.as_id() for f in self.failures if f.reason in reasons]

    def _of_kind(self, kind: str) -> list[TaskID]:
        return [f.as_id() for f in self.failures if f.kind == kind]

    @property
    def missing(self) -> list[TaskID]:
        """Tasks named by a change, delete or depend that do not exist (EntroQ's name)."""
        return self._ids("missing")

    @property
    def mismatched(self) -> list[TaskID]:
        """Tasks named at a version other than the current one."""
        return self._ids("mismatch")

    @property
    def collisions(self) -> list[TaskID]:
        """Inserts whose ID already exists."""
        return self._ids("collision")

    @property
    def claims(self) -> list[TaskID]:
        """Changes or deletes of tasks held by another claimant."""
        return self._of_kind("CLAIM")

    @property
    def inserts(self) -> list[TaskID]:
        return self._of_kind("INSERT")

    @property
    def changes(self) -> list[TaskID]:
        return self._of_kind("CHANGE")

    @property
    def deletes(self) -> list[TaskID]:
        return self._of_kind("DELETE")

    @property
    def depends(self) -> list[TaskID]:
        return self._of_kind("DEPEND")
