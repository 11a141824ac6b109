"""A test-only Backend over the service's gRPC API (EntroQ v1 schema), so the shared
behaviour suite runs over gRPC as a fourth backend.

The library has no ``grpc://`` backend on purpose: no maintained gRPC client runs under trio
(docs/design.md 7.3), and hand-writing one is out. Here grpcio's own sync stubs, generated at test time
from tests/protos/entroq_v1/entroq.proto (tests/grpc_support.py), drive the service as any EntroQ
gRPC client would. Each call is started with ``.future()``; grpcio runs it on its own threads and
hands the outcome to trio through the trio token, so a waiting claim holds no worker thread
(trio's default limit of 40 threads would cap the waiters) and a cancelled trio scope cancels
the gRPC call at once (the service sees CANCELLED and ends the wait).

The v1 schema in tests/protos carries entroq-redis's additions that EntroQ's clients ignore
(``TaskData.by_ms``, ``TaskChange.mode``, ``ClaimRequest.finish``, ``ModifyDep.reason`` and
``current_version``, and the doc fields numbered from 100: ``DocID.key``, ``DocChange.mode``,
``DocClaim.sets`` and ``task_to_match``...), so relative arrivals, change modes, finish-and-claim,
doc sets and the failure reasons travel exactly as over HTTP. Doc contents are values too. What v1
cannot say is bytes: its values are ``google.protobuf.Value``. A library value is sent as a string
Value holding its UTF-8 text (the service stores that string's JSON text) and a string Value reads
back as its text, so every UTF-8 value round-trips exactly; other JSON kinds (written by JSON-era
clients) read as their compact JSON text; bytes that are not UTF-8 cannot be sent
(InvalidArgumentError).

gRPC errors map to the library's exceptions as the HTTP backend maps HTTP errors: NOT_FOUND with
ModifyDep details (in ``grpc-status-details-bin``) -> DependencyError with the failures rebuilt
from them, INVALID_ARGUMENT and RESOURCE_EXHAUSTED (HTTP 400, 413) -> InvalidArgumentError,
UNAUTHENTICATED (401) and PERMISSION_DENIED (403) -> PermissionDeniedError, UNAVAILABLE ->
StoreUnavailableError (OutcomeUnknownError with the ``entroq-reason: outcome_unknown`` trailer),
DEADLINE_EXCEEDED on a claim -> ClaimTimeoutError, anything else -> StoreError.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import grpc_support
import trio
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from entroq_redis import (
    ClaimTimeoutError,
    DependencyError,
    EntroQ,
    InvalidArgumentError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QueueStats,
    StoreError,
    StoreUnavailableError,
    Task,
    TaskChange,
    TaskData,
    TaskID,
)
from entroq_redis._backend import Detail
from entroq_redis._contract import MAX_PAGE
from entroq_redis._doc_types import (
    ClaimedDocs,
    Doc,
    DocChange,
    DocData,
    DocID,
    DocSet,
    ModifyResult,
    NamespaceStats,
)
from entroq_redis._errors import DependencyFailure, DocDependencyFailure, FailureKind, FailureReason
from entroq_redis._one_claim_per_task import OneClaimPerTask
from entroq_redis._types import arrival_ms, as_bytes

NAMESPACE_KEY = "entroq-namespace"
# The trailer that tells failures sharing a code apart, as ``reason`` does in HTTP bodies:
# "outcome_unknown" on UNAVAILABLE is a write --wait-replicas did not see confirmed.
REASON_KEY = "entroq-reason"

# A blocking claim without a deadline is sent as a series of calls this long each, as EntroQ's
# Go client does (it loops on 2-minute deadlines and retries on DEADLINE_EXCEEDED).
WAIT_CHUNK_S = 120.0
# Above the service's limit, so that a test of the limit reaches the service.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_MODES = {"full": "CHANGE_DEFAULT", "lease": "CHANGE_LEASE", "reset_claims": "CHANGE_RESET_CLAIMS"}
_FAILURE_KINDS: dict[str, FailureKind] = {k: k for k in ("INSERT", "CHANGE", "DELETE", "DEPEND", "CLAIM")}
_KIND_REASONS: dict[str, FailureReason] = {"INSERT": "collision", "CLAIM": "claimed"}
_REASONS: dict[str, FailureReason] = {r: r for r in ("collision", "missing", "mismatch", "claimed")}


def bytes_of(message: Any, field: str = "value") -> bytes:
    """Library bytes for the v1 Value in ``message.<field>`` (see the module doc)."""
    if not message.HasField(field):
        return b""
    value = getattr(message, field)
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return b""
    if kind == "string_value":
        return str(value.string_value).encode()
    return json.dumps(json_format.MessageToDict(value), separators=(",", ":")).encode()


def task_of(message: Any) -> Task:
    return Task(
        queue=message.queue,
        id=message.id,
        version=message.version,
        at_ms=message.at_ms,
        claimant=message.claimant_id,
        value=bytes_of(message),
        created_ms=message.created_ms,
        modified_ms=message.modified_ms,
        claims=message.claims,
        attempt=message.attempt,
        err=message.err,
    )


def failure_of(dep: Any, kind_name: str) -> DependencyFailure | None:
    """The library's failure for one ModifyDep detail (None: DETAIL, or a kind we do not know)."""
    kind = _FAILURE_KINDS.get(kind_name)
    if kind is None:
        return None
    reason = _REASONS.get(dep.reason or _KIND_REASONS.get(kind, "missing"), "missing")
    return DependencyFailure(
        kind=kind,
        reason=reason,
        id=dep.id.id,
        version=dep.id.version,
        queue=dep.id.queue,
        # Our service states it (zero omitted); for others, unknown = -1.
        current_version=dep.current_version if dep.reason else -1,
    )


def doc_of(message: Any) -> Doc:
    return Doc(
        namespace=message.namespace,
        id=message.id,
        version=message.version,
        claimant=message.claimant,
        at_ms=message.at_ms,
        key=message.key,
        secondary_key=message.secondary_key,
        content=bytes_of(message, "content"),
        created_ms=message.created_ms,
        modified_ms=message.modified_ms,
    )


def doc_failure_of(dep: Any, kind_name: str) -> DocDependencyFailure | None:
    """The library's doc failure for one ModifyDep detail naming a doc (or a doc set)."""
    kind = _FAILURE_KINDS.get(kind_name)
    if kind is None:
        return None
    return DocDependencyFailure(
        kind=kind,
        reason=_REASONS.get(dep.reason or _KIND_REASONS.get(kind, "missing"), "missing"),
        namespace=dep.doc_id.namespace,
        id=dep.doc_id.id,
        version=dep.doc_id.version,
        current_version=dep.current_version if dep.reason else -1,
        key=dep.doc_id.key,
    )


class GrpcBackend(OneClaimPerTask):
    """Runs each library operation as one call on ``api.EntroQ`` through grpcio's generated stub.

    Args:
        channel: A grpcio channel to the service (closed by ``aclose``).
        metadata: Sent with every call (credentials, namespace).
    """

    def __init__(self, channel: grpc.Channel, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.schema = grpc_support.v1()
        self.pb2: Any = self.schema.pb2
        self.channel = channel
        self.stub = self.schema.stub(channel)
        self.metadata = tuple(metadata)
        self.action_names = {v.number: v.name for v in self.pb2.ActionType.values}
        self.health = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=grpc_support.HealthCheckResponse.FromString,
        )

    # --- calls ------------------------------------------------------------------------

    async def call(self, method: Any, request: Any, *, grpc_timeout_s: float | None = None) -> Any:
        """Runs one unary call without blocking trio; a cancelled scope cancels the call.

        Raises:
            grpc.RpcError: the call failed (also a grpc.Call: code, details, trailers).
        """
        future = method.future(request, metadata=self.metadata, timeout=grpc_timeout_s)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def on_done(_: Any) -> None:
            # On a grpcio thread, or on this one at once if the call already ended.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future.add_done_callback(on_done)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    async def _call(
        self, method: Any, request: Any, *, grpc_timeout_s: float | None = None, claiming: bool = False
    ) -> Any:
        try:
            return await self.call(method, request, grpc_timeout_s=grpc_timeout_s)
        except grpc.RpcError as exc:
            raise self.error(exc, claiming) from None

    def error(self, exc: grpc.RpcError, claiming: bool = False) -> Exception:
        """The library exception for a failed call."""
        call: Any = exc  # a grpc.RpcError raised by a call is also a grpc.Call
        code: grpc.StatusCode = call.code()
        message = call.details() or code.name
        if code == grpc.StatusCode.NOT_FOUND:
            deps = self.details(exc, self.pb2.ModifyDep)
            kinds = [self.action_names.get(d.type, "") for d in deps]
            failures: list[DependencyFailure] = []
            doc_failures: list[DocDependencyFailure] = []
            for dep, kind in zip(deps, kinds, strict=True):
                if dep.HasField("doc_id"):
                    doc_failures += filter(None, [doc_failure_of(dep, kind)])
                else:
                    failures += filter(None, [failure_of(dep, kind)])
            if failures or doc_failures or "DETAIL" in kinds:
                return DependencyError(failures, doc_failures=doc_failures)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return InvalidArgumentError(message)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return PermissionDeniedError(message, 401)
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return PermissionDeniedError(message, 403)
        if code == grpc.StatusCode.UNAVAILABLE:
            if (REASON_KEY, "outcome_unknown") in (call.trailing_metadata() or ()):
                return OutcomeUnknownError(message)
            return StoreUnavailableError(message)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and claiming:
            return ClaimTimeoutError(message)
        return StoreError(f"gRPC {code.name}: {message}")

    @staticmethod
    def details(exc: grpc.RpcError, detail_class: Any) -> list[Any]:
        """The ``detail_class`` messages packed in a failed call's ``grpc-status-details-bin``."""
        try:
            status = grpc_support.status_details(exc)
        except DecodeError:
            return []
        found = []
        for detail in status.details if status is not None else ():
            message = detail_class()
            if detail.Unpack(message):
                found.append(message)
        return found

    # --- the Backend protocol ----------------------------------------------------------

    async def ping(self) -> None:
        answer = await self._call(self.health, grpc_support.HealthCheckRequest())
        if answer.status != grpc_support.SERVING:
            raise StoreUnavailableError(f"the service's health check answered {answer.status}, not SERVING")

    async def time_ms(self) -> int:
        response = await self._call(self.stub.Time, self.pb2.TimeRequest())
        return int(response.time_ms)

    def _task_id(self, task_id: TaskID) -> Any:
        return self.pb2.TaskID(id=task_id.id, version=task_id.version, queue=task_id.queue)

    def _claim_request(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID]
    ) -> Any:
        return self.pb2.ClaimRequest(
            claimant_id=claimant,
            queues=list(queues),
            duration_ms=duration_ms,
            finish=[self._task_id(t) for t in finish],
        )

    async def _try_claim_one(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID] = ()
    ) -> Task | None:
        request = self._claim_request(claimant, queues, duration_ms, finish)
        response = await self._call(self.stub.TryClaim, request)
        return task_of(response.task) if response.HasField("task") else None

    async def try_claim_id(self, claimant: str, queue: str, task_id: str, duration_ms: int) -> Task | None:
        # As the HTTP backend: the service claims by ID in the one queue named (the one it
        # authorizes), so a call without a queue looks the task's queue up first.
        if not queue:
            found = await self.tasks("", [task_id], "", 1, True)
            if not found:
                return None
            queue = found[0].queue
        request = self._claim_request(claimant, [queue], duration_ms, ())
        request.task_id = task_id
        response = await self._call(self.stub.TryClaim, request)
        return task_of(response.task) if response.HasField("task") else None

    async def _claim_one(
        self,
        claimant: str,
        queues: Sequence[str],
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> Task:
        # The first call deletes ``finish`` (even if it then waits in vain); later ones must not.
        request = self._claim_request(claimant, queues, duration_ms, finish)
        deadline = None if timeout_s is None else trio.current_time() + timeout_s
        while True:
            wait_s = WAIT_CHUNK_S
            if deadline is not None:
                wait_s = max(0.0, min(wait_s, deadline - trio.current_time()))
            try:
                response = await self._call(self.stub.Claim, request, grpc_timeout_s=wait_s, claiming=True)
            except ClaimTimeoutError:
                request.ClearField("finish")
                # Our call's deadline ended (or the service's cap): go on until our own deadline.
                if deadline is not None and trio.current_time() >= deadline:
                    raise ClaimTimeoutError(f"no task in {list(queues)} within {timeout_s} s") from None
                continue
            if response.HasField("task"):
                return task_of(response.task)
            raise StoreError("the service ended a blocking claim without a task")

    def _value(self, value: bytes) -> Any:
        """The v1 Value sent for library bytes (None: no value)."""
        if not value:
            return None
        try:
            return self.pb2.Value(string_value=value.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                "EntroQ's v1 gRPC schema carries values as JSON (google.protobuf.Value): "
                "bytes that are not UTF-8 cannot be sent"
            ) from None

    def _task_data(self, data: TaskData | TaskChange) -> Any:
        message = self.pb2.TaskData(queue=data.queue, attempt=data.attempt, err=data.err)
        if data.delay_ms is not None:
            message.by_ms = data.delay_ms
        else:
            message.at_ms = arrival_ms(data.at)
        value = self._value(as_bytes(data.value))
        if value is not None:
            message.value.CopyFrom(value)
        return message

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
        request = self.pb2.ModifyRequest(claimant_id=claimant)
        for data in inserts:
            message = self._task_data(data)
            if data.id:
                message.id = data.id
            request.inserts.append(message)
        for change in changes:
            old_id = self.pb2.TaskID(id=change.id, version=change.version, queue=change.old_queue)
            mode = self.pb2.ChangeMode.values_by_name[_MODES[change.mode]].number
            request.changes.append(
                self.pb2.TaskChange(old_id=old_id, new_data=self._task_data(change), mode=mode)
            )
        request.deletes.extend(self._task_id(t) for t in deletes)
        request.depends.extend(self._task_id(t) for t in depends)
        request.doc_inserts.extend(self._doc_insert(d) for d in doc_inserts)
        request.doc_changes.extend(self._doc_change(c) for c in doc_changes)
        request.doc_deletes.extend(self._doc_id(d) for d in doc_deletes)
        request.doc_depends.extend(self._doc_id(d) for d in doc_depends)
        response = await self._call(self.stub.Modify, request)
        return ModifyResult(
            [task_of(t) for t in response.inserted],
            [task_of(t) for t in response.changed],
            [doc_of(d) for d in response.inserted_docs],
            [doc_of(d) for d in response.changed_docs],
        )

    def _doc_id(self, doc_id: DocID) -> Any:
        return self.pb2.DocID(
            namespace=doc_id.namespace, id=doc_id.id, version=doc_id.version, key=doc_id.key
        )

    def _doc_data(
        self, namespace: str, key: str, secondary_key: str, content: bytes, at: Any, delay_ms: int | None
    ) -> Any:
        message = self.pb2.DocData(namespace=namespace, key=key, secondary_key=secondary_key)
        if delay_ms is not None:
            message.by_ms = delay_ms
        else:
            message.at_ms = arrival_ms(at)
        value = self._value(as_bytes(content))
        if value is not None:
            message.content.CopyFrom(value)
        return message

    def _doc_insert(self, data: DocData) -> Any:
        message = self._doc_data(
            data.namespace, data.key, data.secondary_key, data.content, data.at, data.delay_ms
        )
        if data.id:
            message.id = data.id
        return message

    def _doc_change(self, change: DocChange) -> Any:
        old_id = self.pb2.DocID(namespace=change.namespace, id=change.id, version=change.version)
        if change.mode == "lease":
            if change.is_set_ref():
                old_id.key = change.key
            new = self._doc_data("", "", "", b"", change.at, change.delay_ms)
            mode = self.pb2.ChangeMode.values_by_name["CHANGE_LEASE"].number
            return self.pb2.DocChange(old_id=old_id, new_data=new, mode=mode)
        new = self._doc_data(
            change.namespace, change.key, change.secondary_key, change.content, change.at, change.delay_ms
        )
        return self.pb2.DocChange(old_id=old_id, new_data=new)

    async def tasks(
        self, queue: str, ids: Sequence[str], claimant: str, limit: int, omit_values: bool, offset: int = 0
    ) -> list[Task]:
        request = self.pb2.TasksRequest(
            claimant_id=claimant,
            queue=queue,
            limit=limit,
            task_id=list(ids),
            omit_values=omit_values,
            offset=offset,
        )
        response = await self._call(self.stub.Tasks, request)
        return [task_of(t) for t in response.tasks]

    async def queues(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int, detail: Detail
    ) -> list[QueueStats]:
        request = self.pb2.QueuesRequest(match_prefix=list(prefixes), match_exact=list(exact), limit=limit)
        method = self.stub.QueueStats if detail == "stats" else self.stub.Queues
        response = await self._call(method, request)
        return [
            QueueStats(
                name=q.name,
                num_tasks=q.num_tasks,
                num_claimed=q.num_claimed,
                num_available=q.num_available,
                num_future=q.num_future,
                max_claims=q.max_claims,
            )
            for q in response.queues
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
        found: list[Doc] = []
        # The service takes at most MAX_PAGE IDs per listing: ask in pages, in the order given.
        for start in range(0, max(len(ids), 1), MAX_PAGE):
            query = self.pb2.DocQuery(
                namespace=namespace,
                ids=list(ids[start : start + MAX_PAGE]),
                key_start=key_start,
                key_end=key_end,
                limit=0 if ids else limit,
                omit_values=omit_values,
            )
            response = await self._call(self.stub.Docs, self.pb2.DocsRequest(query=query))
            found += [doc_of(d) for d in response.docs]
        return found

    async def claim_docs(self, claimant: str, namespace: str, key: str, duration_ms: int) -> list[Doc]:
        claim = self.pb2.DocClaim(claimant=claimant, namespace=namespace, key=key, duration_ms=duration_ms)
        response = await self._call(self.stub.ClaimDocs, self.pb2.ClaimDocsRequest(claim_query=claim))
        return [doc_of(d) for d in response.docs]

    async def claim_doc_sets(
        self, claimant: str, sets: Sequence[DocSet], duration_ms: int, task_to_match: TaskID | None
    ) -> ClaimedDocs:
        claim = self.pb2.DocClaim(claimant=claimant)
        for item in sets:
            claim.sets.add(
                set=self.pb2.DocSet(namespace=item.namespace, key=item.key), omit_members=item.omit_members
            )
        if task_to_match is not None:
            claim.task_to_match.CopyFrom(self._task_id(task_to_match))
        else:
            claim.duration_ms = duration_ms
        response = await self._call(self.stub.ClaimDocs, self.pb2.ClaimDocsRequest(claim_query=claim))
        return ClaimedDocs(sets=[doc_of(d) for d in response.sets], docs=[doc_of(d) for d in response.docs])

    async def namespace_stats(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int
    ) -> list[NamespaceStats]:
        request = self.pb2.NamespacesRequest(
            match_prefix=list(prefixes), match_exact=list(exact), limit=limit
        )
        response = await self._call(self.stub.NamespaceStats, request)
        return [
            NamespaceStats(name=n.name, num_docs=n.num_docs, num_claimed=n.num_claimed)
            for n in response.namespaces
        ]

    async def aclose(self) -> None:
        self.channel.close()


def channel_to(address: str) -> grpc.Channel:
    """An insecure (h2c) channel to ``grpc://host:port`` with a connection of its own.

    grpcio shares connections between channels to the same target unless told not to; the
    suite's ``other`` client must have its own, as it does on every backend.
    """
    return grpc.insecure_channel(
        address.removeprefix("grpc://"),
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )


def call_metadata(token: str | None = None, namespace: str | None = None) -> list[tuple[str, str]]:
    """Metadata of a call: ``authorization: Bearer <token>`` and ``entroq-namespace``."""
    metadata = []
    if token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    if namespace:
        metadata.append((NAMESPACE_KEY, namespace))
    return metadata


@contextlib.asynccontextmanager
async def open_grpc_client(
    address: str,
    *,
    namespace: str | None = None,
    token: str | None = None,
    claimant_id: str | None = None,
) -> AsyncIterator[EntroQ]:
    """An EntroQ client on the service's gRPC address, built as ``entroq_redis.connect`` builds one."""
    backend = GrpcBackend(channel_to(address), call_metadata(token, namespace))
    try:
        yield EntroQ(backend, claimant_id)
    finally:
        await backend.aclose()
