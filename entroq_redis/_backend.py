"""The interface both backends (Redis scripts, HTTP service) implement.

The public client (``_client.EntroQ``) normalizes arguments and delegates here, so the
two backends cannot drift apart in what they accept; the shared behaviour test suite
runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from ._doc_types import ClaimedDocs, Doc, DocChange, DocData, DocID, DocSet, ModifyResult, NamespaceStats
from ._types import QueueStats, Task, TaskChange, TaskData, TaskID

Detail = Literal["size", "stats"]


class Backend(Protocol):
    """Primitive operations; every call is one atomic operation on the store (or a page of one)."""

    async def time_ms(self) -> int:
        """The store's clock, ms since the epoch."""
        ...

    async def ping(self) -> None:
        """Checks that the store answers and is ready for use (readiness)."""
        ...

    async def try_claim_many(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        finish: Sequence[TaskID] = (),
    ) -> list[Task]:
        """Deletes ``finish`` (all or none), then claims up to ``limit`` distinct available
        tasks (each picked as one claim picks) or returns [] at once."""
        ...

    async def try_claim_id(self, claimant: str, queue: str, task_id: str, duration_ms: int) -> Task | None:
        """Claims the task ``task_id`` (in ``queue``; "" = any) if it is available now, else None."""
        ...

    async def claim_many(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> list[Task]:
        """Deletes ``finish``, then claims up to ``limit`` tasks, waiting until at least one
        is claimed; raises ClaimTimeoutError."""
        ...

    async def modify(
        self,
        claimant: str,
        inserts: Sequence[TaskData],
        changes: Sequence[TaskChange],
        deletes: Sequence[TaskID],
        depends: Sequence[TaskID],
        doc_inserts: Sequence[DocData] = (),
        doc_changes: Sequence[DocChange] = (),
        doc_deletes: Sequence[DocID] = (),
        doc_depends: Sequence[DocID] = (),
    ) -> ModifyResult:
        """Applies everything (tasks and docs) or nothing; raises DependencyError listing every failure."""
        ...

    async def tasks(
        self, queue: str, ids: Sequence[str], claimant: str, limit: int, omit_values: bool, offset: int = 0
    ) -> list[Task]:
        """Tasks of a queue (limit 0 = all) from rank ``offset`` on, or the given IDs from any queue."""
        ...

    async def queues(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int, detail: Detail
    ) -> list[QueueStats]:
        """Matching non-empty queues in name order (limit 0 = all)."""
        ...

    async def docs(
        self,
        namespace: str,
        ids: Sequence[str],
        key_start: str,
        key_end: str,
        limit: int,
        omit_values: bool,
    ) -> list[Doc]:
        """Docs of a doc namespace: the given IDs in the order asked (missing ones skipped), or
        the key range [key_start, key_end) ("" end = no bound) by (key, secondary key, id),
        at most ``limit`` (0 = all)."""
        ...

    async def claim_docs(self, claimant: str, namespace: str, key: str, duration_ms: int) -> list[Doc]:
        """Claims every doc whose key is ``key``, all or nothing (DependencyError with CLAIM
        doc failures if any is held by someone else); sorted by secondary key."""
        ...

    async def claim_doc_sets(
        self, claimant: str, sets: Sequence[DocSet], duration_ms: int, task_to_match: TaskID | None
    ) -> ClaimedDocs:
        """Claims the locks of the given doc sets, all or nothing; with ``task_to_match`` the
        locks end when that task's lease does (the task must be held by ``claimant``)."""
        ...

    async def namespace_stats(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int
    ) -> list[NamespaceStats]:
        """Doc namespaces holding docs, matching any prefix or exact name (all if neither), by name."""
        ...

    async def aclose(self) -> None:
        """Releases connections and background tasks."""
        ...
