"""Authorization by policy (``--authz opahttp`` or ``rego``): the service's :class:`Authorizer`.

What each call asks of the policy (reference section 7, EntroQ's model):

- TryClaim, Claim: CLAIM on each requested queue (and DELETE on the queue of each task a
  claim finishes, this service's ``finish`` extension);
- Modify: INSERT per insert; per change CHANGE on its queue, or DELETE on the real source
  queue plus INSERT on the new one when it moves (``_authz_modify``: the source is looked
  up and re-checked by the store inside the modify); DELETE per delete; READ per depend;
- Tasks, StreamTasks: READ on the queue. Beyond EntroQ: a lookup by IDs without a queue
  (which EntroQ refuses outright) returns only the tasks in queues the caller may read;
- Queues, QueueStats: not authorized by EntroQ (they reveal every queue name). Here they
  need valid credentials and list only the queues the caller may READ;
- Time: open, as in EntroQ.

Outcomes: missing or malformed credentials 401 (before any policy or store work); the
policy's ``authenticated: false`` 401; a denial 403 with AuthzDep details; an engine that is
unreachable, slow or failing 503. Any method this module does not know is denied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

import entroq_redis

from . import _wire
from ._authz_decision import (
    Decision,
    PolicyFailure,
    denied,
    engine_unavailable,
    invalid_credentials,
    parse_result,
    unauthenticated,
    visible,
)
from ._authz_input import (
    Credentials,
    CredentialsError,
    QueueEntry,
    claim_entries,
    input_document,
    read_credentials,
    read_entries,
)
from ._authz_modify import plan_finish, plan_lookups, plan_modify, translate_failures
from ._authz_opa import open_opa_engine
from ._authz_rego import PolicyConfigError, load_rego_engine
from ._authz_settings import AuthzSettings, document_path
from ._hooks import Authorizer, Call, Proceed
from ._metrics import Metrics

log = logging.getLogger(__name__)

OPEN_METHODS = frozenset({"Time"})
# The calls that act as their request's claimant_id (a listing's claimant_id is only a filter).
ACTING_METHODS = frozenset({"TryClaim", "Claim", "Modify"})
# A listing asks about at most this many queues per policy evaluation.
LISTING_BATCH = 500


class PolicyEngine(Protocol):
    async def evaluate(self, credentials: Credentials, document: dict[str, Any]) -> Any:
        """The policy's ``result`` document for ``input`` = document (None if undefined).

        Raises:
            PolicyFailure: no usable answer.
        """
        ...


class PolicyAuthorizer:
    """Asks a policy engine about every call (see the module docstring)."""

    def __init__(self, engine: PolicyEngine, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    async def authorize(self, call: Call) -> None:
        # Credentials first: a caller without any gets 401 before the store is touched.
        if call.method not in OPEN_METHODS:
            self._credentials(call)

    async def run(self, call: Call, client: entroq_redis.EntroQ, proceed: Proceed) -> Any:
        method, request = call.method, call.request
        if method in OPEN_METHODS:
            return await proceed(request)
        credentials = self._credentials(call)
        if method in ("TryClaim", "Claim"):
            return await self._claim(credentials, request, client, proceed)
        if method == "Modify":
            return await self._modify(credentials, request, client, proceed)
        if method in ("Tasks", "StreamTasks"):
            return await self._tasks(credentials, request, proceed)
        if method in ("Queues", "QueueStats"):
            return await self._queues(credentials, request, proceed)
        self._count("deny")
        raise denied(Decision(False, None, (), (f"no authorization rule for {method}",)))

    async def _claim(
        self, credentials: Credentials, request: Any, client: entroq_redis.EntroQ, proceed: Proceed
    ) -> Any:
        found = await _lookup(client, [t.id for t in request.finish if not t.queue])
        finish_queues, finish = plan_finish(request.finish, found)
        named = set(request.queues) | {t.queue for t in request.finish}
        hidden = {q for q in finish_queues if q not in named}
        await self._require(credentials, claim_entries(request.queues, finish_queues), hidden)
        if found:
            request = _copy(request)
            del request.finish[:]
            request.finish.extend(finish)
        return await proceed(request)

    async def _modify(
        self, credentials: Credentials, request: Any, client: entroq_redis.EntroQ, proceed: Proceed
    ) -> Any:
        found = await _lookup(client, plan_lookups(request.changes, request.deletes, request.depends))
        plan = plan_modify(request, found)
        await self._require(credentials, plan.entries, plan.hidden)
        try:
            return await proceed(plan.request)
        except entroq_redis.DependencyError as exc:
            raise translate_failures(exc, plan) from None

    async def _tasks(self, credentials: Credentials, request: Any, proceed: Proceed) -> Any:
        if request.queue or not request.task_id:
            await self._require(credentials, read_entries([request.queue]))
            return await proceed(request)
        # IDs from any queue: read them, then keep those in queues the caller may read
        # (a task in another queue is left out, as if it did not exist).
        response = await proceed(request)
        allowed = await self._visible(credentials, sorted({t.queue for t in response.tasks}))
        kept = [t for t in response.tasks if t.queue in allowed]
        del response.tasks[:]
        response.tasks.extend(kept)
        return response

    async def _queues(self, credentials: Credentials, request: Any, proceed: Proceed) -> Any:
        # The caller's limit applies to what it may see, so list everything that matches first.
        limit = _wire.non_negative_limit(request.limit)
        everything = _copy(request)
        everything.limit = 0
        response = await proceed(everything)
        allowed = await self._visible(credentials, [q.name for q in response.queues])
        kept = [q for q in response.queues if q.name in allowed]
        del response.queues[:]
        response.queues.extend(kept[:limit] if limit else kept)
        return response

    def _credentials(self, call: Call) -> Credentials:
        try:
            credentials = read_credentials(call.headers)
        except CredentialsError as exc:
            self._count("unauthenticated")
            raise unauthenticated(str(exc)) from None
        claimant_id = call.request.claimant_id if call.method in ACTING_METHODS else ""
        return dataclasses.replace(credentials, namespace=call.namespace, claimant_id=claimant_id)

    async def _decide(self, credentials: Credentials, entries: Sequence[QueueEntry]) -> Decision:
        started = time.perf_counter()
        try:
            return parse_result(await self.engine.evaluate(credentials, input_document(credentials, entries)))
        except PolicyFailure as exc:
            self._count("unavailable")
            log.warning("authorization refused a call, the policy engine failed: %s", exc)
            raise engine_unavailable(exc) from None
        finally:
            if self.metrics is not None:
                self.metrics.authz_seconds.observe(time.perf_counter() - started)

    async def _require(
        self, credentials: Credentials, entries: Sequence[QueueEntry], hidden: Iterable[str] = ()
    ) -> None:
        decision = await self._decide(credentials, entries)
        if decision.permits:
            self._count("allow")
            return
        if decision.authenticated is False:
            self._count("unauthenticated")
            raise invalid_credentials()
        self._count("deny")
        raise denied(decision, frozenset(hidden))

    async def _visible(self, credentials: Credentials, names: Sequence[str]) -> set[str]:
        """The names the caller may READ (one decision per batch; 401 on bad credentials)."""
        allowed: set[str] = set()
        batches = [names[i : i + LISTING_BATCH] for i in range(0, len(names), LISTING_BATCH)] or [[]]
        for batch in batches:
            entries = read_entries(batch)
            seen = visible(await self._decide(credentials, entries), entries)
            if seen is None:
                self._count("unauthenticated")
                raise invalid_credentials()
            allowed |= seen
        self._count("allow" if allowed >= set(names) else "filtered")
        return allowed

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.authz_decisions.labels(outcome).inc()


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
    if settings.mode == "opahttp":
        async with open_opa_engine(settings.opa_url, settings.opa_path, settings.opa_timeout_s) as engine:
            yield PolicyAuthorizer(engine, metrics)
    elif settings.mode == "rego":
        rego_engine = load_rego_engine(settings.policy_files, settings.policy_data_file, path)
        with contextlib.closing(rego_engine):  # its child processes end with the service
            yield PolicyAuthorizer(rego_engine, metrics)
    else:
        raise PolicyConfigError(f"unknown --authz mode {settings.mode!r}")
