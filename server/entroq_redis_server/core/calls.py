"""EntroQ's calls on the library: one decoded request in, one response message out.

Knows nothing of HTTP (routes, bodies, status codes live in ``http_app``); uses only the
library's public API (docs/design.md 1 and 6: no queue logic and no store access here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import entroq_redis

from . import doc_wire as _doc_wire
from . import wire as _wire
from .claim_batcher import ClaimBatcher, batchable
from .draining import Draining
from .errors import CLAIM_DOCS_MESSAGE, ApiError, bad_request, dependency
from .hooks import AllowAll, Authorizer, Call, HeaderMap, Proceed
from .metrics import Metrics
from .namespaces import Namespaces

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[entroq_redis.EntroQ, Any, "float | None"], Awaitable[Any]]


class Calls:
    """Runs EntroQ calls for the HTTP layer.

    Args:
        namespaces: Chooses the namespace of a request and holds its client.
        metrics: Where store, wait and dependency metrics go.
        draining: Ends waiting claims at shutdown.
        authorizer: Decides whether a call may run.
        claim_wait_cap_s: The longest a blocking claim may wait (None: as long as the caller asks).
    """

    def __init__(
        self,
        namespaces: Namespaces,
        metrics: Metrics,
        draining: Draining,
        *,
        authorizer: Authorizer | None = None,
        claim_wait_cap_s: float | None = None,
    ) -> None:
        self.namespaces = namespaces
        self.metrics = metrics
        self.draining = draining
        self.authorizer: Authorizer = authorizer or AllowAll()
        self.claim_wait_cap_s = claim_wait_cap_s
        # Non-blocking claims that arrive together share one store call (claim_batcher).
        self.claims = ClaimBatcher()
        self._handlers: dict[str, Handler] = {
            "TryClaim": self._try_claim,
            "Claim": self._claim,
            "Modify": self._modify,
            "Tasks": self._tasks,
            "StreamTasks": self._tasks,
            "Queues": self._queues,
            "QueueStats": self._queue_stats,
            "Time": self._time,
            "Docs": self._docs,
            "ClaimDocs": self._claim_docs,
            "NamespaceStats": self._namespace_stats,
        }

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def run(
        self,
        method: str,
        request: Any,
        headers: HeaderMap,
        timeout_s: float | None,
        request_id: str = "",
        *,
        answer: Proceed | None = None,
    ) -> Any:
        """Authorizes and runs one call; library errors propagate for ``core.errors`` to map.

        Args:
            method: The EntroQ RPC name.
            request: The decoded ``api.*`` request.
            headers: The HTTP headers (namespace, credentials).
            timeout_s: The caller's deadline; only a blocking claim waits, so only it uses one.
            request_id: The request's ID, for the authorizer's audit log.
            answer: Answers the authorized request instead of the library (the dashboard's
                queue feed hands every open page one shared store read this way); the
                authorizer still decides, and still filters what ``answer`` returns.
        """
        namespace = self.namespaces.select(headers)
        call = Call(method, namespace, headers, request, request_id)
        await self.authorizer.authorize(call)
        async with self.namespaces.client(namespace) as client:

            async def proceed(message: Any) -> Any:
                if answer is not None:
                    return await answer(message)
                return await self._handlers[method](client, message, timeout_s)

            try:
                return await self.authorizer.run(call, client, proceed)
            except entroq_redis.DependencyError as exc:
                for kind in [f.kind for f in exc.failures] + [f.kind for f in exc.doc_failures]:
                    self.metrics.dependency_errors.labels(kind).inc()
                if method == "ClaimDocs":
                    raise dependency(exc, CLAIM_DOCS_MESSAGE) from None
                raise

    async def permits(self, method: str, request: Any, headers: HeaderMap, request_id: str = "") -> bool:
        """Whether ``run`` would let this call through, decided the same way but not run (the
        dashboard draws only the actions a caller may take). Any refusal or failure is False:
        a hidden button is never the only guard, ``run`` decides again when it is used."""

        async def nothing(message: Any) -> None:
            return None

        try:
            await self.run(method, request, headers, None, request_id, answer=nothing)
        except (ApiError, entroq_redis.EntroQError):
            return False
        return True

    async def authenticate(self, headers: HeaderMap, request_id: str = "") -> str:
        """Checks the credentials alone (401 on bad ones, as every call would) and returns the
        namespace the headers select; nothing is read from the store."""
        namespace = self.namespaces.select(headers)
        await self.authorizer.authorize(
            Call("Queues", namespace, headers, _wire.queues_request(), request_id)
        )
        return namespace

    async def queue_stats_snapshot(self, namespace: str, limit: int) -> Any:
        """Every queue's stats (the first ``limit`` by name), NOT authorized: only for answers
        that ``run(..., answer=...)`` hands each caller after its own authorization (the
        dashboard's shared queue feed), never to be sent anywhere as it is."""
        async with self.namespaces.client(namespace) as client:
            stats = await self._store("queue_stats", client.queue_stats(limit=limit))
        return _wire.queue_stats_response(stats)

    async def _store(self, op: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.metrics.store_seconds.labels(op).observe(time.perf_counter() - started)

    async def _try_claim(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        claimant = eq.as_claimant(request.claimant_id)
        if request.task_id:
            return _wire.claim_response(await self._try_claim_id(claimant, request))
        finish = [_wire.task_id(t) for t in request.finish]
        queues = list(request.queues)
        backend = batchable(eq.backend, claimant.claimant_id, queues, request.duration_ms, finish)
        if backend is not None:
            task = await self._store(
                "try_claim",
                self.claims.try_claim(backend, queues, claimant.claimant_id, request.duration_ms),
            )
        else:
            task = await self._store(
                "try_claim", claimant.try_claim(queues, request.duration_ms, finish=finish)
            )
        return _wire.claim_response(task)

    async def _try_claim_id(self, claimant: entroq_redis.EntroQ, request: Any) -> entroq_redis.Task | None:
        # Exactly one queue: it is what the authorizer checks CLAIM on, and the store claims
        # the task only if it is in that queue, so a claim by ID reaches no further than a claim.
        if len(request.queues) != 1 or request.finish:
            raise bad_request(
                "a claim by taskId names exactly one queue (the task's) and finishes no tasks; "
                f"got {len(request.queues)} queues and {len(request.finish)} finished tasks"
            )
        return await self._store(
            "try_claim_id", claimant.try_claim_id(request.queues[0], request.task_id, request.duration_ms)
        )

    async def _claim(self, eq: entroq_redis.EntroQ, request: Any, timeout_s: float | None) -> Any:
        if request.task_id:
            raise bad_request("taskId is for TryClaim: a claim by ID never waits")
        # pollMs is not used: claims are woken by the store (docs/design.md 2.5), never by polling.
        caps = [t for t in (timeout_s, self.claim_wait_cap_s) if t is not None]
        claimant = eq.as_claimant(request.claimant_id)
        started = time.perf_counter()
        self.metrics.waiting_claims.inc()
        try:
            with self.draining.waiting():
                task = await claimant.claim(
                    list(request.queues),
                    request.duration_ms,
                    timeout_s=min(caps) if caps else None,
                    finish=[_wire.task_id(t) for t in request.finish],
                )
        finally:
            self.metrics.waiting_claims.dec()
        self.metrics.claim_wait_seconds.observe(time.perf_counter() - started)
        return _wire.claim_response(task)

    async def _modify(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        inserts, changes, deletes, depends = _wire.modify_args(request)
        doc_inserts, doc_changes, doc_deletes, doc_depends = _doc_wire.modify_doc_args(request)
        result = await self._store(
            "modify",
            eq.modify(
                inserts,
                changes,
                deletes,
                depends,
                doc_inserts=doc_inserts,
                doc_changes=doc_changes,
                doc_deletes=doc_deletes,
                doc_depends=doc_depends,
                unsafe_claimant_id=request.claimant_id,
            ),
        )
        return _doc_wire.modify_response(result)

    async def _tasks(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        tasks = await self._store(
            "tasks",
            eq.tasks(
                request.queue,
                ids=list(request.task_id),
                claimant_id=request.claimant_id,
                limit=_wire.non_negative_limit(request.limit),
                omit_values=request.omit_values,
                offset=_wire.non_negative("offset", request.offset),
            ),
        )
        return _wire.tasks_response(tasks)

    async def _queues(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        sizes = await self._store(
            "queues",
            eq.queues(
                list(request.match_prefix), list(request.match_exact), _wire.non_negative_limit(request.limit)
            ),
        )
        return _wire.queue_sizes_response(sizes)

    async def _queue_stats(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        stats = await self._store(
            "queue_stats",
            eq.queue_stats(
                list(request.match_prefix), list(request.match_exact), _wire.non_negative_limit(request.limit)
            ),
        )
        return _wire.queue_stats_response(stats)

    async def _docs(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        query = request.query
        docs = await self._store("docs", eq.docs(query.namespace, **_doc_wire.docs_args(query)))
        return _doc_wire.docs_response(docs)

    async def _claim_docs(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        claim = request.claim_query
        claimant = eq.as_claimant(claim.claimant)
        if claim.sets:
            sets, task = _doc_wire.claim_sets(claim)
            claimed = await self._store(
                "claim_doc_sets", claimant.claim_doc_sets(sets, claim.duration_ms, task_to_match=task)
            )
            return _doc_wire.claim_docs_response(claimed.docs, claimed.sets)
        _doc_wire.check_key_claim(claim)
        docs = await self._store(
            "claim_docs", claimant.claim_docs(claim.namespace, claim.key, claim.duration_ms)
        )
        return _doc_wire.claim_docs_response(docs)

    async def _namespace_stats(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        stats = await self._store(
            "namespace_stats",
            eq.namespace_stats(
                list(request.match_prefix), list(request.match_exact), _wire.non_negative_limit(request.limit)
            ),
        )
        return _doc_wire.namespaces_response(stats)

    async def _time(self, eq: entroq_redis.EntroQ, request: Any, _: float | None) -> Any:
        return _wire.time_response(await self._store("time", eq.time()))

    async def ready(self) -> None:
        """Raises unless the default namespace's store answers and has the scripts loaded."""
        async with self.namespaces.client(self.namespaces.default) as client:
            await self._store("ping", client.ping())

    async def refresh_queue_sizes(self) -> None:
        """Refreshes ``entroq_queue_size`` if stale; a store failure keeps the old snapshot."""
        try:
            async with self.namespaces.client(self.namespaces.default) as client:
                await self.metrics.queue_sizes.refresh_if_stale(client)
        except entroq_redis.EntroQError as exc:
            self.metrics.queue_sizes.failures += 1
            log.warning("cannot refresh queue sizes: %s", exc)
