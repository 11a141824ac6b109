"""The public client: EntroQ's Python API (with ``await``) over either backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from ._backend import Backend
from ._contract import MAX_CLAIM_SLOTS, MAX_DURATION_MS, MAX_ID_BYTES
from ._doc_checks import check_doc_items
from ._doc_types import (
    ClaimedDocs,
    Doc,
    DocChange,
    DocData,
    DocID,
    DocSet,
    ModifyResult,
    NamespaceStats,
    task_lease_match,
)
from ._errors import InvalidArgumentError
from ._types import QueueStats, Task, TaskChange, TaskData, TaskID

DEFAULT_CLAIM_DURATION_MS = 30_000


def _queue_list(queues: str | Iterable[str]) -> list[str]:
    names = [queues] if isinstance(queues, str) else list(queues)
    if not names:
        raise InvalidArgumentError("at least one queue is required")
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgumentError(f"queue names must be strings, got {type(name).__name__}")
    return names


def _claim_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgumentError(f"limit must be an integer, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_CLAIM_SLOTS:
        raise InvalidArgumentError(f"limit must be from 1 to {MAX_CLAIM_SLOTS} tasks per claim, got {limit}")
    return limit


def _as_id(item: Task | TaskID) -> TaskID:
    return item.as_id() if isinstance(item, Task) else item


def _as_doc_id(item: Doc | DocID) -> DocID:
    return item.as_id() if isinstance(item, Doc) else item


class EntroQ:
    """A task queue client. Get one from :func:`entroq_redis.connect`.

    Every mutation is one atomic, version-checked operation on the store: ``modify``
    applies all of its inserts, changes, deletes and depends or none of them, and a
    claim bumps the task's version so an older holder can never commit.

    Args:
        backend: The Redis or HTTP backend.
        claimant_id: This client's claimant ID; random (UUIDv4) by default. Give each
            worker its own: the claimant is half of the fence that keeps a stale holder
            from committing.
    """

    def __init__(self, backend: Backend, claimant_id: str | None = None) -> None:
        self.backend = backend
        self.claimant_id = claimant_id or str(uuid.uuid4())

    def as_claimant(self, claimant_id: str) -> EntroQ:
        """A client acting as ``claimant_id`` that shares this client's backend (and connections).

        The HTTP service uses it to act for each request's caller; the ID is taken as given
        (an empty one is passed on, and the store decides whether the operation accepts it).
        """
        client = EntroQ(self.backend)
        client.claimant_id = claimant_id
        return client

    async def ping(self) -> None:
        """Checks that the store (or service) answers and is ready; raises StoreUnavailableError if not."""
        await self.backend.ping()

    async def time(self) -> int:
        """The store's clock in ms since the epoch (the clock every lease is measured on)."""
        return await self.backend.time_ms()

    async def try_claim(
        self,
        queues: str | Iterable[str],
        duration_ms: int = DEFAULT_CLAIM_DURATION_MS,
        *,
        finish: Iterable[Task | TaskID] = (),
    ) -> Task | None:
        """Claims a random available task from one of the queues, or returns None at once.

        Each queue holding an available task is equally likely, and so is each available
        task within it. The claimed task's version and claims go up by one, its claimant
        becomes this client and it stays invisible to other claims for ``duration_ms``.

        Args:
            queues: One queue name or several.
            duration_ms: The lease.
            finish: Tasks this worker is done with, deleted first in the same store call
                with modify's rules (all or none; DependencyError if any is stale, and
                then nothing is claimed). Saves a round trip per task on the Redis
                backend; over HTTP it is a modify followed by the claim.
        """
        tasks = await self.backend.try_claim_many(
            self.claimant_id, _queue_list(queues), 1, duration_ms, [_as_id(t) for t in finish]
        )
        return tasks[0] if tasks else None

    async def try_claim_many(
        self,
        queues: str | Iterable[str],
        limit: int,
        duration_ms: int = DEFAULT_CLAIM_DURATION_MS,
        *,
        finish: Iterable[Task | TaskID] = (),
    ) -> list[Task]:
        """Claims up to ``limit`` available tasks from the queues in one store call, or
        returns [] at once.

        Each task is picked as try_claim picks one (each queue still holding an available
        task equally likely, then each of its available tasks not yet picked), and no task
        is returned twice, also with a 0 ms lease. Each claimed task's version and claims go
        up by one, its claimant becomes this client and it stays invisible to other claims
        for ``duration_ms`` (every task has its own lease, all of the same length). Fewer
        than ``limit`` come back when fewer are available.

        Args:
            queues: One queue name or several.
            limit: The most tasks to claim, 1 .. 1000. Claim no more than you will start
                now: a claimed task's lease runs from the claim.
            duration_ms: The lease of each task.
            finish: Tasks this worker is done with, deleted first in the same store call
                with modify's rules (all or none; DependencyError if any is stale, and
                then nothing is claimed).

        Returns:
            The claimed tasks, 0 .. ``limit`` of them. One store call on the Redis backend
            (lua/claim.lua); over HTTP and gRPC one claim per task (the wire claims one).
        """
        tasks = await self.backend.try_claim_many(
            self.claimant_id,
            _queue_list(queues),
            _claim_limit(limit),
            duration_ms,
            [_as_id(t) for t in finish],
        )
        return tasks

    async def try_claim_id(
        self, queue: str, task_id: str, duration_ms: int = DEFAULT_CLAIM_DURATION_MS
    ) -> Task | None:
        """Claims one given task if it is available now, as EntroQ's ``eqc tryclaimid`` does.

        For a tool or an operator that must take one particular task (to inspect, retry or
        move it) without racing its workers. The effect is a claim's: version and claims go
        up by one, the claimant becomes this client and the task stays invisible to other
        claims for ``duration_ms``; whoever held it before is fenced.

        Args:
            queue: The queue the task is in ("" = wherever it is).
            task_id: The task's ID.
            duration_ms: The lease.

        Returns:
            The claimed task, or None if no task has that ID (in that queue) or it is not
            available now (leased by anyone, this client included, or delayed). One store
            call (lua/claim_id.lua) over every backend; through the service it is a TryClaim
            naming ``taskId`` (with no queue given, the task's queue is looked up first).
        """
        if not isinstance(queue, str):
            raise InvalidArgumentError(f"queue must be a string, got {type(queue).__name__}")
        if not isinstance(task_id, str) or not task_id:
            raise InvalidArgumentError("task_id must be a non-empty string")
        if len(task_id.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
            raise InvalidArgumentError(f"task_id is longer than {MAX_ID_BYTES} bytes")
        # Checked here so that both backends refuse alike (over HTTP the lease is a change's
        # relative arrival, whose range is not a lease's).
        if isinstance(duration_ms, bool) or not isinstance(duration_ms, int):
            raise InvalidArgumentError(f"duration_ms must be an integer, got {type(duration_ms).__name__}")
        if not 0 <= duration_ms <= MAX_DURATION_MS:
            raise InvalidArgumentError(f"duration_ms must be from 0 to {MAX_DURATION_MS}, got {duration_ms}")
        return await self.backend.try_claim_id(self.claimant_id, queue, task_id, duration_ms)

    async def claim(
        self,
        queues: str | Iterable[str],
        duration_ms: int = DEFAULT_CLAIM_DURATION_MS,
        timeout_s: float | None = None,
        *,
        finish: Iterable[Task | TaskID] = (),
    ) -> Task:
        """Like try_claim, but waits for a task to become available.

        Wakes within milliseconds of an insert or release (store pub/sub) and when the
        earliest future arrival among the queues comes due; no fixed polling. ``finish``
        is deleted by the first attempt, even if the claim then waits or times out.

        Raises:
            ClaimTimeoutError: (a TimeoutError) if nothing was claimed within timeout_s.
            DependencyError: a ``finish`` delete was refused; nothing was deleted or claimed.
        """
        tasks = await self.backend.claim_many(
            self.claimant_id, _queue_list(queues), 1, duration_ms, timeout_s, [_as_id(t) for t in finish]
        )
        return tasks[0]

    async def claim_many(
        self,
        queues: str | Iterable[str],
        limit: int,
        duration_ms: int = DEFAULT_CLAIM_DURATION_MS,
        timeout_s: float | None = None,
        *,
        finish: Iterable[Task | TaskID] = (),
    ) -> list[Task]:
        """Like try_claim_many, but waits until at least one task is claimed.

        Wakes as claim does (store pub/sub, the earliest future arrival; no fixed polling)
        and then returns every task it could claim in that attempt, 1 .. ``limit``.
        ``finish`` is deleted by the first attempt, even if the claim then waits or times
        out.

        Raises:
            ClaimTimeoutError: (a TimeoutError) if nothing was claimed within timeout_s.
            DependencyError: a ``finish`` delete was refused; nothing was deleted or claimed.
            InvalidArgumentError: ``limit`` is not an integer from 1 to 1000.
        """
        return await self.backend.claim_many(
            self.claimant_id,
            _queue_list(queues),
            _claim_limit(limit),
            duration_ms,
            timeout_s,
            [_as_id(t) for t in finish],
        )

    async def modify(
        self,
        inserts: Iterable[TaskData] = (),
        changes: Iterable[TaskChange] = (),
        deletes: Iterable[Task | TaskID] = (),
        depends: Iterable[Task | TaskID] = (),
        *,
        doc_inserts: Iterable[DocData] = (),
        doc_changes: Iterable[DocChange] = (),
        doc_deletes: Iterable[Doc | DocID] = (),
        doc_depends: Iterable[Doc | DocID] = (),
        unsafe_claimant_id: str | None = None,
    ) -> ModifyResult:
        """Applies every insert, change, delete and depend of tasks and docs, or none of them.

        Docs of any doc namespaces may be mixed with tasks: it is still one atomic call.

        Returns:
            A ModifyResult: it unpacks as ``(inserted, changed)`` tasks, in request order;
            ``.inserted_docs`` and ``.changed_docs`` hold the docs (a set's lease change
            comes back as a set reference).

        Raises:
            DependencyError: listing every failing item (missing, version mismatch,
                insert collision, held by another claimant) in ``failures`` (tasks) and
                ``doc_failures`` (docs); nothing was written.
            InvalidArgumentError: the request is malformed; nothing was written.
        """
        doc_insert_list = list(doc_inserts)
        doc_change_list = list(doc_changes)
        doc_delete_list = [_as_doc_id(d) for d in doc_deletes]
        doc_depend_list = [_as_doc_id(d) for d in doc_depends]
        check_doc_items(doc_insert_list, doc_change_list, doc_delete_list, doc_depend_list)
        return await self.backend.modify(
            unsafe_claimant_id if unsafe_claimant_id is not None else self.claimant_id,
            list(inserts),
            list(changes),
            [_as_id(d) for d in deletes],
            [_as_id(d) for d in depends],
            doc_insert_list,
            doc_change_list,
            doc_delete_list,
            doc_depend_list,
        )

    async def tasks(
        self,
        queue: str = "",
        *,
        ids: Iterable[str] = (),
        claimant_id: str = "",
        limit: int = 0,
        omit_values: bool = False,
        offset: int = 0,
    ) -> list[Task]:
        """Lists a queue's tasks in arrival order (limit 0 = all), or the given IDs from any queue.

        With ``claimant_id``, only tasks available now or held by that claimant are listed.
        With ``ids``, ``queue`` (if given) filters and ``limit`` and ``offset`` are ignored. No
        queue and no IDs lists nothing. ``offset`` skips that many of the queue's tasks in
        arrival order (before the claimant filter), so a page deep in a long queue costs
        O(log n + limit) on the store, not a read of everything before it. Pages by offset are
        not a snapshot: tasks that arrive or leave between two calls shift the ranks.
        """
        # tasks.lua's cursor (lua/README.md section 7) takes ranks up to 2^52 - 1.
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**52:
            raise InvalidArgumentError(f"offset must be an integer from 0 to 2^52 - 1, got {offset!r}")
        return await self.backend.tasks(queue, list(ids), claimant_id, limit, omit_values, offset)

    async def queues(
        self, prefixes: Iterable[str] = (), exact: Iterable[str] = (), limit: int = 0
    ) -> dict[str, int]:
        """Non-empty queues matching any prefix or exact name (all if neither) -> task count."""
        stats = await self.backend.queues(list(prefixes), list(exact), limit, "size")
        return {s.name: s.num_tasks for s in stats}

    async def queue_stats(
        self, prefixes: Iterable[str] = (), exact: Iterable[str] = (), limit: int = 0
    ) -> list[QueueStats]:
        """Stats of the matching non-empty queues, sorted by name."""
        return await self.backend.queues(list(prefixes), list(exact), limit, "stats")

    async def docs(
        self,
        namespace: str,
        *,
        ids: Iterable[str] = (),
        key_start: str = "",
        key_end: str = "",
        limit: int = 0,
        omit_values: bool = False,
    ) -> list[Doc]:
        """Lists the docs of a doc namespace.

        With ``ids``: those docs in the order asked, missing ones skipped (the key range and
        the limit are ignored). Otherwise the docs whose key is in [key_start, key_end)
        ("" end = no upper bound), sorted by (key, secondary key), at most ``limit`` (0 =
        all). Held docs are listed too; ``omit_values`` leaves the contents empty.
        """
        if not isinstance(namespace, str) or not namespace:
            raise InvalidArgumentError("a doc namespace is required")
        return await self.backend.docs(namespace, list(ids), key_start, key_end, limit, omit_values)

    async def claim_docs(
        self, namespace: str, key: str, duration_ms: int = DEFAULT_CLAIM_DURATION_MS
    ) -> list[Doc]:
        """Claims every doc of ``namespace`` whose key is ``key``, all or nothing.

        Each claimed doc's version goes up (by one; above the lock's version when the key's
        set was ever claimed as a set, lua/README.md section 6) and it is held by this client
        for ``duration_ms``; they come back sorted by secondary key. No doc with that key is an
        empty list. A doc (or the key's set) held by another claimant fails the whole claim.

        Raises:
            DependencyError: CLAIM ``doc_failures`` naming the held docs; nothing changed.
        """
        if not isinstance(namespace, str) or not namespace:
            raise InvalidArgumentError("a doc namespace is required")
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError("a doc claim needs a non-empty key")
        return await self.backend.claim_docs(self.claimant_id, namespace, key, duration_ms)

    async def claim_doc_sets(
        self,
        sets: Iterable[DocSet],
        duration_ms: int = DEFAULT_CLAIM_DURATION_MS,
        *,
        task_to_match: Task | TaskID | None = None,
    ) -> ClaimedDocs:
        """Claims the locks of doc sets (each: every doc of one namespace and key), all or nothing.

        A held set protects its members: nobody else can insert, change, delete or claim a
        doc of it until the lock ends. With ``task_to_match`` (a task this client holds) the
        locks end when that task's lease does, instead of after ``duration_ms``.

        Raises:
            DependencyError: CLAIM ``doc_failures`` naming each set (or member doc) held by
                someone else, or a ``failures`` entry for a ``task_to_match`` this client
                does not hold at that version; nothing changed.
        """
        matched = task_lease_match(task_to_match) if task_to_match is not None else None
        return await self.backend.claim_doc_sets(self.claimant_id, list(sets), duration_ms, matched)

    async def namespace_stats(
        self, prefixes: Iterable[str] = (), exact: Iterable[str] = (), limit: int = 0
    ) -> list[NamespaceStats]:
        """Doc namespaces holding docs, matching any prefix or exact name (all if neither), by name."""
        return await self.backend.namespace_stats(list(prefixes), list(exact), limit)

    async def renew_docs_for(self, docs: Sequence[Doc | DocID], duration_ms: int) -> list[Doc]:
        """Extends the locks of held docs or doc sets (set references) in one atomic modify."""
        changes = []
        for doc in docs:
            doc_id = _as_doc_id(doc)
            changes.append(
                DocChange(
                    doc_id.namespace,
                    doc_id.id,
                    doc_id.version,
                    key=doc_id.key,
                    delay_ms=duration_ms,
                    mode="lease",
                )
            )
        return (await self.modify(doc_changes=changes)).changed_docs

    async def renew_for(self, task: Task | TaskID, duration_ms: int) -> Task:
        """Extends a claim to ``duration_ms`` from now on the store's clock; returns the new version."""
        return (await self.renew_all_for([task], duration_ms))[0]

    async def renew_all_for(self, tasks: Sequence[Task | TaskID], duration_ms: int) -> list[Task]:
        """Extends several claims in one atomic modify; all succeed or DependencyError."""
        changes = []
        for task in tasks:
            task_id = _as_id(task)
            changes.append(
                TaskChange(task_id.id, task_id.version, task_id.queue, delay_ms=duration_ms, mode="lease")
            )
        _, changed = await self.modify(changes=changes)
        return changed

    async def aclose(self) -> None:
        await self.backend.aclose()
