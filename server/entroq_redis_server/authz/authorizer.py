"""Authorization by policy (``--authz opahttp`` or ``rego``): the service's :class:`Authorizer`.

What each call asks of the policy (docs/reference/entroq-protocol.md 7, EntroQ's model):

- TryClaim, Claim: CLAIM on each requested queue (and DELETE on the queue of each task a
  claim finishes, this service's ``finish`` extension);
- Modify: INSERT per insert; per change CHANGE on its queue, or DELETE on the real source
  queue plus INSERT on the new one when it moves (``authz.modify``: the source is looked
  up and re-checked by the store inside the modify); DELETE per delete; READ per depend;
- Tasks, StreamTasks: READ on the queue. Beyond EntroQ: a lookup by IDs without a queue
  (which EntroQ refuses outright) returns only the tasks in queues the caller may read;
- Queues, QueueStats: not authorized by EntroQ (they reveal every queue name). Here they
  need valid credentials and list only the queues the caller may READ;
- Time: open, as in EntroQ;
- the document store (EntroQ leaves it unauthorized; we do not), on the *doc* namespace, in
  the input's ``namespaces`` list (``authz.input``): Docs READ; ClaimDocs CLAIM on the key's
  namespace or on each set's (a set claim tied to ``taskToMatch`` needs the task to be held by
  the claimant the call acts as, which the store checks); a modify's doc items INSERT,
  CHANGE, DELETE and READ (depends) beside its task entries; NamespaceStats lists only the
  doc namespaces the caller may READ. A policy that does not judge doc namespaces
  (``failed_namespaces`` undefined) is refused every doc call.

Order of work, cheapest refusal first:

1. the ``Authorization`` header is read (``authz.input``): missing or malformed (a bearer
   "JWT" that is not one included) is 401 before any policy or store work;
2. the credentials alone are decided (an input with no queues and no claimant ID): a
   policy answer of ``authenticated: false`` is 401 before the store is touched or the
   request's queues are put into an input. Policies that do not define ``authenticated``
   (EntroQ's own) pass this step and are judged by step 4 as before. Credentials the policy
   did not refuse in the last few seconds skip this step (``authz.sessions`` says why that
   is safe);
3. the request's input is built and measured: larger than ``max_input_bytes``
   (``--authz-max-input-bytes``) is 413, and no engine sees it;
4. the decision: ``authenticated: false`` 401, a denial 403 with AuthzDep details, an
   engine that is unreachable, slow or failing 503. Listings are filtered in small
   decisions whose cost follows what the caller may see (``authz.listing``).

Any method this module does not know is denied. With an audit log each authorized call
writes one line (``authz.audit``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

import entroq_redis

from ..core import wire as _wire
from ..core.errors import ApiError
from ..core.hooks import Authorizer, Call, Proceed
from ..core.metrics import Metrics
from .audit import AuditLog, Trail
from .decision import (
    Decision,
    PolicyFailure,
    denied,
    engine_unavailable,
    input_too_large,
    invalid_credentials,
    namespaces_unjudged,
    parse_result,
    unauthenticated,
)
from .input import (
    Credentials,
    CredentialsError,
    QueueEntry,
    claim_entries,
    doc_claim_entries,
    doc_modify_entries,
    input_document,
    input_size,
    read_credentials,
    read_entries,
)
from .listing import ListingFilter, Unauthenticated
from .modify import plan_finish, plan_lookups, plan_modify, translate_failures
from .opa import open_opa_engine
from .rego import PolicyConfigError, load_rego_engine
from .sessions import RecentlyAuthenticated
from .settings import DEFAULT_MAX_INPUT_BYTES, AuthzSettings, document_path

log = logging.getLogger(__name__)

OPEN_METHODS = frozenset({"Time"})
# The calls that act as their request's claimant_id (a listing's claimant_id is only a filter);
# ClaimDocs acts as its claim's ``claimant``.
ACTING_METHODS = frozenset({"TryClaim", "Claim", "Modify", "ClaimDocs"})
# A listing keeps each decision's input under this share of the input limit (small inputs
# keep the engine's memory small; the limit stays for requests that cannot be split).
LISTING_SHARE = 4
_OUTCOMES = {401: "unauthenticated", 403: "deny", 413: "too_large", 503: "unavailable"}


class PolicyEngine(Protocol):
    async def evaluate(self, credentials: Credentials, document: dict[str, Any]) -> Any:
        """The policy's ``result`` document for ``input`` = document (None if undefined).

        Raises:
            PolicyFailure: no usable answer.
        """
        ...


class PolicyAuthorizer:
    """Asks a policy engine about every call (see the module docstring)."""

    def __init__(
        self,
        engine: PolicyEngine,
        metrics: Metrics | None = None,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        audit: AuditLog | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_input_bytes = max_input_bytes
        self.audit = audit
        self.sessions = RecentlyAuthenticated()

    async def authorize(self, call: Call) -> None:
        # Credentials first, alone: a caller without good ones gets 401 before the store is
        # touched and before any input of the request's queues is built or evaluated.
        if call.method in OPEN_METHODS:
            return
        trail = Trail()
        try:
            credentials = self._credentials(call, trail)
            header = credentials.header()
            if self.sessions.knows(header, call.namespace):
                return
            alone = dataclasses.replace(credentials, claimant_id="")
            decision = await self._decide(alone, [], trail)
            if decision.authenticated is False:
                self._decided(trail, "unauthenticated", decision.user)
                raise invalid_credentials()
            # Not refused (accepted, or a policy that does not say): the next calls with the
            # same credentials skip this step for a while (``authz.sessions``).
            self.sessions.remember(header, call.namespace)
        except ApiError:
            self._record(call, trail)
            raise

    async def run(self, call: Call, client: entroq_redis.EntroQ, proceed: Proceed) -> Any:
        if call.method in OPEN_METHODS:
            return await proceed(call.request)
        trail = Trail()
        try:
            return await self._run(call, client, proceed, trail)
        except ApiError as exc:
            if trail.outcome is None and exc.status in _OUTCOMES:
                trail.decided(_OUTCOMES[exc.status])
            raise
        finally:
            self._record(call, trail)

    async def _run(self, call: Call, client: entroq_redis.EntroQ, proceed: Proceed, trail: Trail) -> Any:
        method, request = call.method, call.request
        credentials = self._credentials(call, trail)
        if method in ("TryClaim", "Claim"):
            return await self._claim(credentials, request, client, proceed, trail)
        if method == "Modify":
            return await self._modify(credentials, request, client, proceed, trail)
        if method in ("Tasks", "StreamTasks"):
            return await self._tasks(credentials, request, proceed, trail)
        if method in ("Queues", "QueueStats"):
            return await self._queues(credentials, request, proceed, trail)
        if method == "Docs":
            await self._require(credentials, [], trail, namespaces=read_entries([request.query.namespace]))
            return await proceed(request)
        if method == "ClaimDocs":
            await self._require(credentials, [], trail, namespaces=doc_claim_entries(request.claim_query))
            return await proceed(request)
        if method == "NamespaceStats":
            return await self._namespace_stats(credentials, request, proceed, trail)
        self._decided(trail, "deny")
        raise denied(Decision(False, None, (), (f"no authorization rule for {method}",)))

    async def _claim(
        self,
        credentials: Credentials,
        request: Any,
        client: entroq_redis.EntroQ,
        proceed: Proceed,
        trail: Trail,
    ) -> Any:
        found = await _lookup(client, [t.id for t in request.finish if not t.queue])
        finish_queues, finish = plan_finish(request.finish, found)
        named = set(request.queues) | {t.queue for t in request.finish}
        hidden = {q for q in finish_queues if q not in named}
        await self._require(credentials, claim_entries(request.queues, finish_queues), trail, hidden)
        if found:
            request = _copy(request)
            del request.finish[:]
            request.finish.extend(finish)
        return await proceed(request)

    async def _modify(
        self,
        credentials: Credentials,
        request: Any,
        client: entroq_redis.EntroQ,
        proceed: Proceed,
        trail: Trail,
    ) -> Any:
        found = await _lookup(client, plan_lookups(request.changes, request.deletes, request.depends))
        plan = plan_modify(request, found)
        await self._require(credentials, plan.entries, trail, plan.hidden, doc_modify_entries(request))
        try:
            return await proceed(plan.request)
        except entroq_redis.DependencyError as exc:
            raise translate_failures(exc, plan) from None

    async def _tasks(self, credentials: Credentials, request: Any, proceed: Proceed, trail: Trail) -> Any:
        if request.queue or not request.task_id:
            await self._require(credentials, read_entries([request.queue]), trail)
            return await proceed(request)
        # IDs from any queue: read them, then keep those in queues the caller may read
        # (a task in another queue is left out, as if it did not exist).
        response = await proceed(request)
        allowed = await self._visible(credentials, {t.queue for t in response.tasks}, trail)
        kept = [t for t in response.tasks if t.queue in allowed]
        del response.tasks[:]
        response.tasks.extend(kept)
        return response

    async def _namespace_stats(
        self, credentials: Credentials, request: Any, proceed: Proceed, trail: Trail
    ) -> Any:
        # As _queues, over doc namespaces: list every match, keep the readable ones, then limit.
        limit = _wire.non_negative_limit(request.limit)
        everything = _copy(request)
        everything.limit = 0
        response = await proceed(everything)
        names = {n.name for n in response.namespaces}
        allowed = await self._visible(credentials, names, trail, doc_namespaces=True)
        kept = [n for n in response.namespaces if n.name in allowed]
        del response.namespaces[:]
        response.namespaces.extend(kept[:limit] if limit else kept)
        return response

    async def _queues(self, credentials: Credentials, request: Any, proceed: Proceed, trail: Trail) -> Any:
        # The caller's limit applies to what it may see, so list everything that matches first.
        limit = _wire.non_negative_limit(request.limit)
        everything = _copy(request)
        everything.limit = 0
        response = await proceed(everything)
        allowed = await self._visible(credentials, {q.name for q in response.queues}, trail)
        kept = [q for q in response.queues if q.name in allowed]
        del response.queues[:]
        response.queues.extend(kept[:limit] if limit else kept)
        return response

    def _credentials(self, call: Call, trail: Trail) -> Credentials:
        try:
            credentials = read_credentials(call.headers)
        except CredentialsError as exc:
            self._decided(trail, "unauthenticated")
            raise unauthenticated(str(exc)) from None
        if call.method == "ClaimDocs":
            claimant_id = call.request.claim_query.claimant
        else:
            claimant_id = call.request.claimant_id if call.method in ACTING_METHODS else ""
        return dataclasses.replace(credentials, namespace=call.namespace, claimant_id=claimant_id)

    async def _decide(
        self,
        credentials: Credentials,
        entries: Sequence[QueueEntry],
        trail: Trail,
        namespaces: Sequence[QueueEntry] = (),
    ) -> Decision:
        document = input_document(credentials, entries, namespaces)
        size = input_size(document)
        if size > self.max_input_bytes:
            self._decided(trail, "too_large")
            raise input_too_large(size, self.max_input_bytes)
        started = time.perf_counter()
        try:
            decision = parse_result(await self.engine.evaluate(credentials, document))
        except PolicyFailure as exc:
            self._decided(trail, "unavailable")
            log.warning("authorization refused a call, the policy engine failed: %s", exc)
            raise engine_unavailable(exc) from None
        finally:
            if self.metrics is not None:
                self.metrics.authz_seconds.observe(time.perf_counter() - started)
        trail.user = decision.user or trail.user
        return decision

    async def _require(
        self,
        credentials: Credentials,
        entries: Sequence[QueueEntry],
        trail: Trail,
        hidden: Iterable[str] = (),
        namespaces: Sequence[QueueEntry] = (),
    ) -> None:
        trail.entries, trail.namespaces = list(entries), list(namespaces)
        decision = await self._decide(credentials, entries, trail, namespaces)
        if decision.permits_namespaces() if namespaces else decision.permits:
            self._decided(trail, "allow")
            return
        if decision.authenticated is False:
            self._decided(trail, "unauthenticated")
            raise invalid_credentials()
        self._decided(trail, "deny")
        if decision.permits:  # allowed, but the policy said nothing about the doc namespaces
            raise namespaces_unjudged(decision)
        raise denied(decision, frozenset(hidden))

    async def _visible(
        self, credentials: Credentials, names: set[str], trail: Trail, doc_namespaces: bool = False
    ) -> set[str]:
        """The names the caller may READ, queues or (``doc_namespaces``) doc namespaces (see
        ``authz.listing``; 401 on bad credentials)."""

        async def decide(entries: Sequence[QueueEntry]) -> Decision:
            if doc_namespaces:
                return (await self._decide(credentials, [], trail, entries)).for_namespaces()
            return await self._decide(credentials, entries, trail)

        listing = ListingFilter(decide, self.max_input_bytes // LISTING_SHARE)
        try:
            allowed = await listing.readable(names)
        except Unauthenticated:
            self._decided(trail, "unauthenticated")
            raise invalid_credentials() from None
        except PolicyFailure as exc:
            self._decided(trail, "unavailable")
            log.warning("authorization refused a listing, the policy's answer is unusable: %s", exc)
            raise engine_unavailable(exc) from None
        outcome = "allow" if allowed >= names else "filtered"
        self._decided(trail, outcome)
        trail.shown, trail.hidden = len(allowed), len(names - allowed)
        return allowed

    def _decided(self, trail: Trail, outcome: str, user: str | None = None) -> None:
        """An outcome reached: counted in the metrics, and recorded for the audit line."""
        self._count(outcome)
        trail.decided(outcome, user)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.authz_decisions.labels(outcome).inc()

    def _record(self, call: Call, trail: Trail) -> None:
        if self.audit is not None:
            self.audit.record(
                request_id=call.request_id,
                method=call.method,
                namespace=call.namespace,
                header=call.headers.get("Authorization"),
                trail=trail,
            )


async def _lookup(client: entroq_redis.EntroQ, ids: Sequence[str]) -> dict[str, entroq_redis.Task]:
    """Where the named tasks are now (IDs not found are absent)."""
    if not ids:
        return {}
    return {t.id: t for t in await client.tasks(ids=ids, omit_values=True)}


def _copy(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def check_authz_settings(settings: AuthzSettings) -> None:
    """Fails early on settings that cannot work: a bad --opa-path, or (rego) a policy or
    data that does not load, compile and decide an empty request.

    Raises:
        PolicyConfigError: with a message for the operator.
    """
    if settings.mode == "none":
        return
    try:
        path = document_path(settings.opa_path)
    except ValueError as exc:
        raise PolicyConfigError(str(exc)) from None
    if settings.mode == "rego":
        load_rego_engine(settings.policy_files, settings.policy_data_file, path)


@contextlib.asynccontextmanager
async def open_authorizer(
    settings: AuthzSettings, metrics: Metrics | None
) -> AsyncIterator[Authorizer | None]:
    """The authorizer ``settings`` ask for, for the service's lifetime (None: allow all).

    Raises:
        PolicyConfigError: the settings cannot work (see ``check_authz_settings``).
    """
    if settings.mode == "none":
        yield None
        return
    try:
        path = document_path(settings.opa_path)
    except ValueError as exc:
        raise PolicyConfigError(str(exc)) from None
    audit = _open_audit(settings.audit_log)
    with contextlib.closing(audit) if audit is not None else contextlib.nullcontext():
        options: dict[str, Any] = {"max_input_bytes": settings.max_input_bytes, "audit": audit}
        if settings.mode == "opahttp":
            async with open_opa_engine(settings.opa_url, settings.opa_path, settings.opa_timeout_s) as engine:
                yield PolicyAuthorizer(engine, metrics, **options)
        elif settings.mode == "rego":
            rego_engine = load_rego_engine(
                settings.policy_files, settings.policy_data_file, path, time_limit_s=settings.opa_timeout_s
            )
            with contextlib.closing(rego_engine):  # its child processes end with the service
                yield PolicyAuthorizer(rego_engine, metrics, **options)
        else:
            raise PolicyConfigError(f"unknown --authz mode {settings.mode!r}")


def _open_audit(path: str | None) -> AuditLog | None:
    if path is None:
        return None
    try:
        return AuditLog.open(path)
    except OSError as exc:
        raise PolicyConfigError(f"cannot open the audit log {path}: {exc.strerror or exc}") from None
