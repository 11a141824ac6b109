"""The HTTP backend: the same client interface over an entroq-redis service.

Speaks EntroQ's JSON wire format with httpx (which runs on trio and asyncio): REST for
claims, modify and time (the routes EntroQ's own clients use), Connect unary
(``POST /api.EntroQ/Tasks`` etc.) for listings, whose arguments (many IDs, queue names with
any characters) do not fit a URL. Every request says ``entroq-protocol: 2`` (relative arrivals,
``delay_ms``, and change modes travel as its ``byMs`` and ``mode``, so leases are measured on
the store's clock, as with the Redis backend) and ``EntroQ-Value-Encoding: base64``: values are
bytes, and a service that serves every EntroQ client generation would otherwise take an httpx
caller for a JSON-era client and store our base64 text as a JSON string. ``finish`` rides in
the claim request (an entroq-redis extension of ClaimRequest), so finishing a task and claiming
the next is one request.

Docs travel as EntroQ v1.1's clients send them (``docInserts``... in the modify, ``GET
/api/v0/docs`` being replaced by Connect ``Docs`` for the same reason as task listings,
``POST /api/v0/docs/claim``) in protocol 2's forms: a doc set is a ``DocID`` with an empty ``id``
and its ``key``, a lease change says ``"mode": "CHANGE_LEASE"``, set claims send ``sets`` and
``taskToMatch``. Contents are bytes (base64), as task values.

HTTP errors map to the library's exceptions: 404 with ModifyDep details -> DependencyError
(``docId`` details -> its ``doc_failures``),
400/413 -> InvalidArgumentError, 401/403 -> PermissionDeniedError, 503 with
``"reason": "outcome_unknown"`` -> OutcomeUnknownError (a write the service's --wait-replicas
did not see confirmed), other 503s or an unreachable service -> StoreUnavailableError, 504 on
a claim -> ClaimTimeoutError.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import httpx

from ._backend import Detail
from ._contract import MAX_PAGE
from ._doc_types import (
    ClaimedDocs,
    Doc,
    DocChange,
    DocData,
    DocID,
    DocSet,
    ModifyResult,
    NamespaceStats,
)
from ._errors import (
    ClaimTimeoutError,
    DependencyError,
    DependencyFailure,
    DocDependencyFailure,
    FailureKind,
    FailureReason,
    InvalidArgumentError,
    OutcomeUnknownError,
    PermissionDeniedError,
    StoreError,
    StoreUnavailableError,
)
from ._keys import Keys
from ._masked_url import masked_url
from ._one_claim_per_task import OneClaimPerTask
from ._types import QueueStats, Task, TaskChange, TaskData, TaskID, arrival_ms, as_bytes

NAMESPACE_HEADER = "EntroQ-Namespace"
# Sent on every request (see the module doc): the newest protocol, and values as exact bytes.
PROTOCOL_HEADERS = {"entroq-protocol": "2", "EntroQ-Value-Encoding": "base64"}

# A blocking claim without a deadline is sent as a series of waits this long each, so no
# proxy or idle-connection timeout between client and service ever sees a silent request.
WAIT_CHUNK_S = 50.0
# How much longer than the server-side wait the client waits for the answer.
WAIT_SLACK_S = 15.0

_MODES = {"full": None, "lease": "CHANGE_LEASE", "reset_claims": "CHANGE_RESET_CLAIMS"}
_KIND_REASONS = {"INSERT": "collision", "CLAIM": "claimed"}
_REASONS: dict[str, FailureReason] = {r: r for r in ("collision", "missing", "mismatch", "claimed")}
_CONNECT_HEADERS = {"Connect-Protocol-Version": "1"}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _task(obj: dict[str, Any]) -> Task:
    return Task(
        queue=obj.get("queue", ""),
        id=obj.get("id", ""),
        version=int(obj.get("version", 0)),
        at_ms=int(obj.get("atMs", 0)),
        claimant=obj.get("claimantId", ""),
        value=base64.b64decode(obj.get("value", "")),
        created_ms=int(obj.get("createdMs", 0)),
        modified_ms=int(obj.get("modifiedMs", 0)),
        claims=int(obj.get("claims", 0)),
        attempt=int(obj.get("attempt", 0)),
        err=obj.get("err", ""),
    )


def _arrival(at: Any, delay_ms: int | None) -> dict[str, str]:
    if delay_ms is not None:
        return {"byMs": str(delay_ms)}
    return {"atMs": str(arrival_ms(at))}


def _insert(data: TaskData) -> dict[str, Any]:
    body: dict[str, Any] = {
        "queue": data.queue,
        "value": _b64(as_bytes(data.value)),
        "attempt": data.attempt,
        "err": data.err,
        **_arrival(data.at, data.delay_ms),
    }
    if data.id:
        body["id"] = data.id
    return body


def _change(change: TaskChange) -> dict[str, Any]:
    body: dict[str, Any] = {
        "oldId": {"id": change.id, "version": change.version, "queue": change.old_queue},
        "newData": {
            "queue": change.queue,
            "value": _b64(as_bytes(change.value)),
            "attempt": change.attempt,
            "err": change.err,
            **_arrival(change.at, change.delay_ms),
        },
    }
    mode = _MODES.get(change.mode, change.mode)
    if mode:
        body["mode"] = mode
    return body


def _task_id(task_id: TaskID) -> dict[str, Any]:
    return {"id": task_id.id, "version": task_id.version, "queue": task_id.queue}


def _claim_body(
    claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID]
) -> dict[str, Any]:
    body: dict[str, Any] = {"claimantId": claimant, "queues": list(queues), "durationMs": str(duration_ms)}
    if finish:
        # entroq-redis's extension of ClaimRequest: delete these in the claim's own store call.
        body["finish"] = [_task_id(t) for t in finish]
    return body


def _doc(obj: dict[str, Any]) -> Doc:
    return Doc(
        namespace=obj.get("namespace", ""),
        id=obj.get("id", ""),
        version=int(obj.get("version", 0)),
        claimant=obj.get("claimant", ""),
        at_ms=int(obj.get("atMs", 0)),
        key=obj.get("key", ""),
        secondary_key=obj.get("secondaryKey", ""),
        content=base64.b64decode(obj.get("content", "")),
        created_ms=int(obj.get("createdMs", 0)),
        modified_ms=int(obj.get("modifiedMs", 0)),
    )


def _doc_id(doc_id: DocID) -> dict[str, Any]:
    body: dict[str, Any] = {"namespace": doc_id.namespace, "id": doc_id.id, "version": doc_id.version}
    if doc_id.key:
        body["key"] = doc_id.key
    return body


def _doc_insert(data: DocData) -> dict[str, Any]:
    body: dict[str, Any] = {
        "namespace": data.namespace,
        "key": data.key,
        "secondaryKey": data.secondary_key,
        "content": _b64(as_bytes(data.content)),
        **_arrival(data.at, data.delay_ms),
    }
    if data.id:
        body["id"] = data.id
    return body


def _doc_change(change: DocChange) -> dict[str, Any]:
    old = {"namespace": change.namespace, "id": change.id, "version": change.version}
    arrival = _arrival(change.at, change.delay_ms)
    if change.mode == "lease":
        if change.is_set_ref():
            old["key"] = change.key
        return {"oldId": old, "newData": arrival, "mode": "CHANGE_LEASE"}
    new = {
        "namespace": change.namespace,
        "key": change.key,
        "secondaryKey": change.secondary_key,
        "content": _b64(as_bytes(change.content)),
        **arrival,
    }
    return {"oldId": old, "newData": new}


def _doc_failure(detail: dict[str, Any], kind: FailureKind) -> DocDependencyFailure:
    ident = detail.get("docId") or {}
    return DocDependencyFailure(
        kind=kind,
        reason=_REASONS.get(detail.get("reason") or _KIND_REASONS.get(kind, "missing"), "missing"),
        namespace=ident.get("namespace", ""),
        id=ident.get("id", ""),
        version=int(ident.get("version", 0)),
        current_version=int(detail.get("currentVersion", 0 if "reason" in detail else -1)),
        key=ident.get("key", ""),
    )


def _failure(detail: dict[str, Any]) -> DependencyFailure | DocDependencyFailure | None:
    kind = detail.get("type")
    if kind not in ("INSERT", "CHANGE", "DELETE", "DEPEND", "CLAIM"):
        return None  # DETAIL, or nothing we know
    if detail.get("docId"):
        return _doc_failure(detail, kind)
    ident = detail.get("id") or {}
    reason = _REASONS.get(detail.get("reason") or _KIND_REASONS.get(kind, "missing"), "missing")
    return DependencyFailure(
        kind=kind,
        reason=reason,
        id=ident.get("id", ""),
        version=int(ident.get("version", 0)),
        queue=ident.get("queue", ""),
        # Our service states it (zero omitted); for others, unknown = -1.
        current_version=int(detail.get("currentVersion", 0 if "reason" in detail else -1)),
    )


def _raise_for(response: httpx.Response, claiming: bool = False) -> None:
    """Raises the library exception for a non-2xx answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or f"HTTP {response.status_code} {response.reason_phrase}")
    status = response.status_code
    if status in (404, 409):
        details = [d for d in body.get("details") or () if isinstance(d, dict)]
        failures = [f for f in map(_failure, details) if f is not None]
        if failures or any(d.get("type") == "DETAIL" for d in details):
            raise DependencyError(
                [f for f in failures if isinstance(f, DependencyFailure)],
                doc_failures=[f for f in failures if isinstance(f, DocDependencyFailure)],
            )
    if status in (400, 413):
        raise InvalidArgumentError(message)
    if status in (401, 403):
        raise PermissionDeniedError(message, status)
    if status == 503:
        if body.get("reason") == "outcome_unknown":
            raise OutcomeUnknownError(message)
        raise StoreUnavailableError(message)
    if status == 504 and claiming:
        raise ClaimTimeoutError(message)
    raise StoreError(f"HTTP {status}: {message}")


class HttpBackend(OneClaimPerTask):
    """Runs each operation as one request to an entroq-redis (or EntroQ) HTTP service."""

    def __init__(
        self, client: httpx.AsyncClient, namespace: str | None = None, *, owner: bool = True
    ) -> None:
        self.client = client
        # A view's namespace, sent on each request (None: the client's own header, if any).
        self._namespace = namespace
        self._owner = owner

    def for_namespace(self, namespace: str) -> HttpBackend:
        """A view sending ``namespace`` as the header, on the same HTTP connections."""
        Keys(namespace)  # the service would refuse it; refuse it here alike, with its message
        return HttpBackend(self.client, namespace, owner=False)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        http_timeout: httpx.Timeout | None = None,
        claiming: bool = False,
    ) -> dict[str, Any]:
        if self._namespace is not None:
            headers = {**(headers or {}), NAMESPACE_HEADER: self._namespace}
        kwargs: dict[str, Any] = {"json": json, "headers": headers}
        if http_timeout is not None:
            kwargs["timeout"] = http_timeout
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailableError(
                f"cannot reach the service at {masked_url(str(self.client.base_url))}: {exc!r}"
            ) from exc
        if not response.is_success:
            _raise_for(response, claiming)
        try:
            data = response.json()
        except ValueError as exc:
            raise StoreError(f"the service answered {path} with non-JSON: {response.text[:200]!r}") from exc
        if not isinstance(data, dict):
            raise StoreError(f"the service answered {path} with {type(data).__name__}, not an object")
        return data

    async def _connect(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("POST", f"/api.EntroQ/{method}", json=body, headers=_CONNECT_HEADERS)

    async def ping(self) -> None:
        await self._send("GET", "/readyz")

    async def time_ms(self) -> int:
        return int((await self._send("GET", "/api/v0/time")).get("timeMs", 0))

    async def _try_claim_one(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID] = ()
    ) -> Task | None:
        data = await self._send(
            "POST", "/api/v0/claim", json=_claim_body(claimant, queues, duration_ms, finish)
        )
        return _task(data["task"]) if data.get("task") else None

    async def try_claim_id(self, claimant: str, queue: str, task_id: str, duration_ms: int) -> Task | None:
        """A TryClaim naming the task (``taskId``, this service's addition): one store call,
        claim_id.lua, exactly as over a Redis URL. With no queue given, the task's queue is
        looked up first (the service claims by ID only in the one queue named, the queue its
        authorization checks); a task that moves meanwhile is not found there: None."""
        if not queue:
            found = await self.tasks("", [task_id], "", 1, True)
            if not found:
                return None
            queue = found[0].queue
        body = _claim_body(claimant, [queue], duration_ms, ())
        body["taskId"] = task_id
        data = await self._send("POST", "/api/v0/claim", json=body)
        task = _task(data["task"]) if data.get("task") else None
        if task is not None and task.id != task_id:
            # A service older than taskId ignores it and claims any task of the queue.
            raise StoreError(
                f"the service does not claim by ID (it answered task {task.id}, not {task_id}); "
                "upgrade it. That task's lease runs out on its own"
            )
        return task

    async def _claim_one(
        self,
        claimant: str,
        queues: Sequence[str],
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> Task:
        # The first request deletes ``finish`` (even if it then waits in vain); later ones must not.
        body = _claim_body(claimant, queues, duration_ms, finish)
        deadline = None if timeout_s is None else anyio.current_time() + timeout_s
        while True:
            wait_s = WAIT_CHUNK_S
            if deadline is not None:
                wait_s = max(0.0, min(wait_s, deadline - anyio.current_time()))
            try:
                data = await self._send(
                    "POST",
                    "/api/v0/claim/wait",
                    json=body,
                    headers={"X-Server-Timeout": f"{wait_s:.3f}"},
                    http_timeout=httpx.Timeout(30.0, read=wait_s + WAIT_SLACK_S),
                    claiming=True,
                )
            except ClaimTimeoutError:
                body.pop("finish", None)
                # The service's wait (ours, or its cap) ended: go on until our own deadline.
                if deadline is not None and anyio.current_time() >= deadline:
                    raise ClaimTimeoutError(f"no task in {list(queues)} within {timeout_s} s") from None
                continue
            if data.get("task"):
                return _task(data["task"])
            raise StoreError("the service ended a blocking claim without a task")

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
        body = {
            "claimantId": claimant,
            "inserts": [_insert(d) for d in inserts],
            "changes": [_change(c) for c in changes],
            "deletes": [_task_id(d) for d in deletes],
            "depends": [_task_id(d) for d in depends],
            "docInserts": [_doc_insert(d) for d in doc_inserts],
            "docChanges": [_doc_change(c) for c in doc_changes],
            "docDeletes": [_doc_id(d) for d in doc_deletes],
            "docDepends": [_doc_id(d) for d in doc_depends],
        }
        data = await self._send("POST", "/api/v0/modify", json=body)
        return ModifyResult(
            [_task(t) for t in data.get("inserted", ())],
            [_task(t) for t in data.get("changed", ())],
            [_doc(d) for d in data.get("insertedDocs", ())],
            [_doc(d) for d in data.get("changedDocs", ())],
        )

    async def tasks(
        self, queue: str, ids: Sequence[str], claimant: str, limit: int, omit_values: bool, offset: int = 0
    ) -> list[Task]:
        body = {
            "queue": queue,
            "taskId": list(ids),
            "claimantId": claimant,
            "limit": limit,
            "omitValues": omit_values,
            "offset": offset,
        }
        data = await self._connect("Tasks", body)
        return [_task(t) for t in data.get("tasks", ())]

    async def queues(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int, detail: Detail
    ) -> list[QueueStats]:
        body = {"matchPrefix": list(prefixes), "matchExact": list(exact), "limit": limit}
        data = await self._connect("QueueStats" if detail == "stats" else "Queues", body)
        return [
            QueueStats(
                name=q.get("name", ""),
                num_tasks=int(q.get("numTasks", 0)),
                num_claimed=int(q.get("numClaimed", 0)),
                num_available=int(q.get("numAvailable", 0)),
                num_future=int(q.get("numFuture", 0)),
                max_claims=int(q.get("maxClaims", 0)),
            )
            for q in data.get("queues", ())
        ]

    async def docs(
        self,
        namespace: str,
        ids: Sequence[str],
        key_start: str,
        key_end: str,
        limit: int,
        omit_values: bool,
    ) -> list[Doc]:
        query = {"namespace": namespace, "keyStart": key_start, "keyEnd": key_end, "omitValues": omit_values}
        if not ids:
            data = await self._connect("Docs", {"query": {**query, "limit": limit}})
            return [_doc(d) for d in data.get("docs", ())]
        # The service takes at most MAX_PAGE IDs per listing: ask in pages, in the order given.
        found = []
        for start in range(0, len(ids), MAX_PAGE):
            page = {**query, "ids": list(ids[start : start + MAX_PAGE])}
            data = await self._connect("Docs", {"query": page})
            found += [_doc(d) for d in data.get("docs", ())]
        return found

    async def claim_docs(self, claimant: str, namespace: str, key: str, duration_ms: int) -> list[Doc]:
        claim = {"claimant": claimant, "namespace": namespace, "key": key, "durationMs": str(duration_ms)}
        data = await self._send("POST", "/api/v0/docs/claim", json={"claimQuery": claim})
        return [_doc(d) for d in data.get("docs", ())]

    async def claim_doc_sets(
        self, claimant: str, sets: Sequence[DocSet], duration_ms: int, task_to_match: TaskID | None
    ) -> ClaimedDocs:
        claim: dict[str, Any] = {
            "claimant": claimant,
            "sets": [
                {"set": {"namespace": s.namespace, "key": s.key}, "omitMembers": s.omit_members} for s in sets
            ],
        }
        if task_to_match is not None:
            claim["taskToMatch"] = _task_id(task_to_match)
        else:
            claim["durationMs"] = str(duration_ms)
        data = await self._send("POST", "/api/v0/docs/claim", json={"claimQuery": claim})
        return ClaimedDocs(
            sets=[_doc(d) for d in data.get("sets", ())], docs=[_doc(d) for d in data.get("docs", ())]
        )

    async def namespace_stats(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int
    ) -> list[NamespaceStats]:
        body = {"matchPrefix": list(prefixes), "matchExact": list(exact), "limit": limit}
        data = await self._connect("NamespaceStats", body)
        return [
            NamespaceStats(
                name=n.get("name", ""),
                num_docs=int(n.get("numDocs", 0)),
                num_claimed=int(n.get("numClaimed", 0)),
            )
            for n in data.get("namespaces", ())
        ]

    async def aclose(self) -> None:
        if self._owner:  # a view leaves the connections to the backend that opened them
            await self.client.aclose()


@contextlib.asynccontextmanager
async def open_http_backend(
    url: str, *, token: str | None = None, namespace: str | None = None
) -> AsyncIterator[HttpBackend]:
    """Yields a backend on the service at ``url``.

    Args:
        url: The service's base URL (http:// or https://).
        token: Sent as ``Authorization: Bearer <token>``.
        namespace: Sent as the ``EntroQ-Namespace`` header; None uses the service's default.
    """
    headers = {"Accept": "application/json", **PROTOCOL_HEADERS}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if namespace:
        headers[NAMESPACE_HEADER] = namespace
    client = httpx.AsyncClient(
        base_url=url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(60.0, connect=10.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )
    backend = HttpBackend(client)
    try:
        yield backend
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
