"""The Redis backend: every operation is one EVALSHA of a script in lua/.

coredis is the client library: redis-py's asyncio client does not run under trio, and
coredis is built on anyio, so this backend runs under trio and asyncio alike. coredis's
Script objects send EVALSHA and reload the script on NOSCRIPT (after SCRIPT FLUSH or a
store restart), so nothing here tracks whether scripts are loaded. On a Redis/Valkey
Cluster the same code runs on coredis's cluster client: every script names the
namespace's queue index as KEYS[1], so it is routed to the node owning the namespace's
slot, and MOVED/ASK redirects and failovers are coredis's job.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc
import coredis
import coredis.exceptions

from . import _codec
from ._backend import Detail
from ._contract import MAX_PAGE, SCRIPT_NAMES
from ._doc_types import ClaimedDocs, Doc, DocChange, DocData, DocID, DocSet, ModifyResult, NamespaceStats
from ._durability import Durability
from ._errors import (
    ClaimTimeoutError,
    OutcomeUnknownError,
    StoreError,
    StoreUnavailableError,
    UnsafeStoreError,
)
from ._keys import Keys
from ._masked_url import masked_url
from ._scripts import script_source
from ._types import ClaimSlot, QueueStats, Task, TaskChange, TaskData, TaskID
from ._wake import WakeHub

T = TypeVar("T")

# Policies that may evict keys that have no TTL, i.e. our tasks.
EVICTING_POLICIES = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random", "allkeys-lrm"})

# A cluster answering these is mid-failover or mid-resharding (CLUSTERDOWN, TRYAGAIN, or
# coredis out of redirects): like an unreachable store, the caller may retry (503 over HTTP).
CLUSTER_IN_TRANSITION = (
    coredis.exceptions.ClusterDownError,
    coredis.exceptions.TryAgainError,
    coredis.exceptions.ClusterError,
)

# A blocking claim re-checks at least this often even if no wake message arrives. It is a
# safety net (for a store that lost our subscription silently), not the wake-up path.
SAFETY_RECHECK_S = 30.0


def _store_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception in its group) says the store did not answer."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_store_trouble(inner) for inner in exc.exceptions)
    return isinstance(exc, (TimeoutError, coredis.exceptions.ConnectionError, *CLUSTER_IN_TRANSITION))


def _wrote(name: str, reply: Any, args: list[_codec.Arg]) -> bool:
    """Whether a script call changed the store (only then is there anything to confirm)."""
    if name == "claim":
        # Claimed, or nothing to claim after its finish deletes (ARGV[5] = n_finish).
        return bool(reply[0] == 1 or (reply[0] == 0 and int(args[4]) > 0))
    if name == "claim_id":
        return bool(reply[0] == 1)
    if name == "claim_docs":
        # Claimed at least one doc (a key without docs writes nothing).
        return bool(reply[0] == 1 and reply[1])
    if name == "claim_doc_sets":
        return bool(reply[0] == 1)
    if name == "modify":
        # Applied, with at least one insert, change or delete of a task (ARGV[6..8]) or a doc
        # (ARGV[10..12]).
        writes = sum(int(args[i]) for i in (5, 6, 7, 9, 10, 11))
        return bool(reply[0] == 1 and writes > 0)
    return False


def _outcome_unknown(name: str, detail: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"{name} was applied on the primary but not confirmed durable in time ({detail}); "
        "it may be lost if the primary fails now. Retrying with the same versions is "
        "safe: a modify applies at most once"
    )


async def _confirm_durable(connection: Any, name: str, durability: Durability) -> None:
    """WAIT / WAITAOF on the connection that carried the write, right after its reply.

    WAIT counts the writes of the connection it is sent on, so it must follow the script
    on that same connection; the connection is shared, so a later write of another call
    may be waited for too, which only makes the answer stronger.
    """
    if durability.fsync:
        local, replicas = await connection.create_request(
            b"WAITAOF", 1, durability.replicas, durability.timeout_ms, decode=False
        )
        if local < 1 or replicas < durability.replicas:
            raise _outcome_unknown(
                name, f"WAITAOF: local fsync {local}/1, replicas {replicas}/{durability.replicas}"
            )
        return
    acknowledged = await connection.create_request(
        b"WAIT", durability.replicas, durability.timeout_ms, decode=False
    )
    if acknowledged < durability.replicas:
        raise _outcome_unknown(
            name, f"WAIT: {acknowledged} of {durability.replicas} replicas in {durability.timeout_ms} ms"
        )


class RedisBackend:
    """Runs the scripts against one namespace of a Redis/Valkey store."""

    def __init__(
        self,
        redis: coredis.Redis[bytes] | coredis.RedisCluster[bytes],
        keys: Keys,
        task_group: anyio.abc.TaskGroup,
        notify: str = "PUBLISH",
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._notify = notify
        self._durability = durability
        self._task_group = task_group
        self._cluster = isinstance(redis, coredis.RedisCluster)
        self._scripts = {name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES}
        # Plain client, no OpenTelemetry: scripts go straight onto a pooled connection
        # (_evalsha). On a cluster, through coredis's command layer (routing, redirects).
        self._direct = isinstance(redis, coredis.Redis) and not coredis.Config.otel_enabled
        self._hub: WakeHub | None = None
        self._hub_lock = anyio.Lock()

    async def _call(self, name: str, args: list[_codec.Arg], *, mutates: bool = False) -> Any:
        try:
            if self._direct:
                return await self._evalsha(name, args, self._durability if mutates else None)
            if mutates and self._durability is not None:
                return await self._call_durably(name, args, self._durability)
            return await self._scripts[name](keys=[self.keys.queue_index], args=args)
        except (coredis.exceptions.ReplicationError, coredis.exceptions.PersistenceError) as exc:
            raise _outcome_unknown(name, str(exc)) from exc
        except coredis.exceptions.ConnectionError as exc:
            raise StoreUnavailableError(f"store unreachable: {exc}") from exc
        except TimeoutError as exc:
            raise StoreUnavailableError(f"store timed out: {exc}") from exc
        except CLUSTER_IN_TRANSITION as exc:
            raise StoreUnavailableError(f"cluster failing over or resharding: {exc}") from exc
        except coredis.exceptions.ResponseError as exc:
            raise _codec.script_error(str(exc)) from exc

    async def _evalsha(self, name: str, args: list[_codec.Arg], durability: Durability | None = None) -> Any:
        """EVALSHA on a pooled connection, reloading the script once on NOSCRIPT.

        What ``Script.__call__`` does, without coredis's per-command layers (retry and
        NOSCRIPT wrappers, telemetry span, client-side cache checks, argument adaptation):
        under load they cost about 40 us of client CPU per call, a third of a claim's.
        Like coredis, the connection goes back to the pool before the reply arrives, so
        concurrent calls share (pipeline on) the pool's connections.
        """
        pool = self.redis.connection_pool
        if getattr(pool, "cache", None) is not None:
            return await self._scripts[name](keys=[self.keys.queue_index], args=args)
        script = self._scripts[name]
        for attempt in range(2):
            connection = await pool.get_connection()
            try:
                request = connection.create_request(
                    b"EVALSHA", script.sha, 1, self.keys.queue_index, *args, decode=False
                )
            finally:
                pool.release(connection)
            try:
                reply = await request
            except coredis.exceptions.NoScriptError:
                if attempt:
                    raise
                await self.redis.script_load(script.script)
                continue
            if durability is not None and _wrote(name, reply, args):
                await _confirm_durable(connection, name, durability)
            return reply
        raise AssertionError("unreachable")

    async def _call_durably(self, name: str, args: list[_codec.Arg], durability: Durability) -> Any:
        # On a cluster: coredis sends WAIT / WAITAOF on the connection that carried the
        # script, right after its reply, and raises if fewer acknowledgements than asked
        # came in time. It waits after every call, so there a refused modify can also come
        # back as outcome unknown (the plain-store path waits only after a write).
        script = self._scripts[name]
        if durability.fsync:
            with self.redis.ensure_persistence(1, durability.replicas, durability.timeout_ms):
                return await script(keys=[self.keys.queue_index], args=args)
        with self.redis.ensure_replication(durability.replicas, durability.timeout_ms):
            return await script(keys=[self.keys.queue_index], args=args)

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (coredis.exceptions.ConnectionError, *CLUSTER_IN_TRANSITION) as exc:
            raise StoreUnavailableError(f"store unreachable: {exc}") from exc
        except coredis.exceptions.RedisError as exc:
            raise StoreError(str(exc)) from exc

    async def time_ms(self) -> int:
        # time.lua, not TIME: on a cluster TIME cannot be routed to the namespace's node (and
        # coredis 6.9's time() scales the microseconds wrongly anyway).
        (now,) = await self._call("time", _codec.time_args(self.keys))
        return int(now)

    async def ping(self) -> None:
        """Checks that the store answers and that every script is loaded (readiness)."""
        scripts = list(self._scripts.values())
        loaded = await self._guard(lambda: self.redis.script_exists([s.sha for s in scripts]))
        for script, is_loaded in zip(scripts, loaded, strict=True):
            if not is_loaded:
                source = script.script
                await self._guard(lambda: self.redis.script_load(source))  # noqa: B023

    async def try_claim_slots(
        self,
        finisher: str,
        queues: Sequence[str],
        slots: Sequence[ClaimSlot],
        finish: Sequence[TaskID] = (),
    ) -> tuple[list[Task], int]:
        """One claim.lua call whose slots each name their own claimant and lease.

        For a service that coalesces the claims of several callers into one store call:
        ``tasks[i]`` is slot i's (slots fill in order, so the slots from ``len(tasks)`` on
        got nothing). ``finish`` is deleted first, checked against ``finisher`` (modify's
        rules, all or none: DependencyError and nothing claimed). Returns the tasks and,
        when none was claimed, the ms until the earliest future arrival (-1: no tasks).
        """
        randoms = [(random.getrandbits(52), random.getrandbits(31)) for _ in slots]
        args = _codec.claim_args(self.keys, finisher, 0, queues, randoms, finish, slots)
        return _codec.decode_claim(await self._call("claim", args, mutates=True))

    async def _claim_once(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        finish: Sequence[TaskID] = (),
    ) -> tuple[list[Task], int]:
        randoms = [(random.getrandbits(52), random.getrandbits(31)) for _ in range(limit)]
        args = _codec.claim_args(self.keys, claimant, duration_ms, queues, randoms, finish)
        return _codec.decode_claim(await self._call("claim", args, mutates=True))

    async def try_claim_many(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        finish: Sequence[TaskID] = (),
    ) -> list[Task]:
        tasks, _ = await self._claim_once(claimant, queues, limit, duration_ms, finish)
        return tasks

    async def try_claim_id(self, claimant: str, queue: str, task_id: str, duration_ms: int) -> Task | None:
        args = _codec.claim_id_args(self.keys, claimant, duration_ms, task_id, queue)
        return _codec.decode_claim_id(await self._call("claim_id", args, mutates=True))

    async def _wake_hub(self) -> WakeHub:
        if self._hub is None:
            async with self._hub_lock:
                if self._hub is None:
                    hub = WakeHub(self.redis, self.keys.wake_channel, sharded=self._cluster)
                    try:
                        await self._task_group.start(hub.run)
                    except Exception as exc:
                        # No answer to SUBSCRIBE (coredis gives up after 1 s, in an exception
                        # group): the store cannot serve this claim, as for any other call.
                        if not _store_trouble(exc):
                            raise
                        raise StoreUnavailableError(f"cannot subscribe to wake-ups: {exc!r}") from exc
                    self._hub = hub
        return self._hub

    @property
    def waiting_claims(self) -> int:
        return self._hub.waiting if self._hub else 0

    async def claim_many(
        self,
        claimant: str,
        queues: Sequence[str],
        limit: int,
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> list[Task]:
        deadline = anyio.current_time() + timeout_s if timeout_s is not None else None
        hub = await self._wake_hub()
        with hub.watching(queues) as waiter:
            while True:
                consumed = waiter.rearm()
                try:
                    tasks, wait_ms = await self._claim_once(claimant, queues, limit, duration_ms, finish)
                    finish = ()  # deleted by the first attempt
                except BaseException:
                    if consumed is not None:
                        # Cancelled or failed before the attempt finished: someone else looks.
                        hub.wake(consumed, 1)
                    raise
                if tasks:
                    return tasks
                sleep_s = SAFETY_RECHECK_S
                if wait_ms >= 0:
                    # +1 ms: the store's clock has ms resolution; waking a hair early would
                    # only find the task not yet due.
                    sleep_s = min(sleep_s, (wait_ms + 1) / 1000)
                if deadline is not None:
                    remaining = deadline - anyio.current_time()
                    if remaining <= 0:
                        raise ClaimTimeoutError(f"no task in {list(queues)} within {timeout_s} s")
                    sleep_s = min(sleep_s, remaining)
                with anyio.move_on_after(sleep_s):
                    await waiter.event.wait()

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
        generates = any(not d.id for d in inserts) or any(not d.id for d in doc_inserts)
        id_seed = secrets.token_hex(16) if generates else ""
        args = _codec.modify_args(
            self.keys,
            claimant,
            id_seed,
            self._notify,
            inserts,
            changes,
            deletes,
            depends,
            doc_inserts,
            doc_changes,
            doc_deletes,
            doc_depends,
        )
        return _codec.decode_modify(await self._call("modify", args, mutates=True))

    async def tasks(
        self, queue: str, ids: Sequence[str], claimant: str, limit: int, omit_values: bool, offset: int = 0
    ) -> list[Task]:
        found: list[Task] = []
        if ids:
            for start in range(0, len(ids), MAX_PAGE):
                chunk = ids[start : start + MAX_PAGE]
                args = _codec.tasks_args(self.keys, claimant, queue, 1, 0, omit_values, chunk)
                found += _codec.decode_tasks(await self._call("tasks", args))[1]
            return found
        cursor = offset
        while cursor >= 0 and (limit <= 0 or len(found) < limit):
            page = MAX_PAGE if limit <= 0 else min(MAX_PAGE, limit - len(found))
            args = _codec.tasks_args(self.keys, claimant, queue, page, cursor, omit_values, ())
            cursor, tasks = _codec.decode_tasks(await self._call("tasks", args))
            found += tasks
        return found[:limit] if limit > 0 else found

    async def queues(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int, detail: Detail
    ) -> list[QueueStats]:
        found: list[QueueStats] = []
        after = ""
        while limit <= 0 or len(found) < limit:
            page = MAX_PAGE if limit <= 0 else min(MAX_PAGE, limit - len(found))
            args = _codec.queues_args(self.keys, detail, page, after, prefixes, exact)
            more, stats = _codec.decode_queues(await self._call("queues", args))
            found += stats
            if not more or not stats:
                break
            after = stats[-1].name
        return found

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
        if ids:
            for start in range(0, len(ids), MAX_PAGE):
                chunk = ids[start : start + MAX_PAGE]
                args = _codec.docs_args(self.keys, namespace, key_start, key_end, 1, 0, omit_values, chunk)
                found += _codec.decode_docs(await self._call("docs", args))[1]
            return found
        cursor = 0
        while cursor >= 0 and (limit <= 0 or len(found) < limit):
            page = MAX_PAGE if limit <= 0 else min(MAX_PAGE, limit - len(found))
            args = _codec.docs_args(self.keys, namespace, key_start, key_end, page, cursor, omit_values, ())
            cursor, docs = _codec.decode_docs(await self._call("docs", args))
            found += docs
        return found

    async def claim_docs(self, claimant: str, namespace: str, key: str, duration_ms: int) -> list[Doc]:
        args = _codec.claim_docs_args(self.keys, claimant, duration_ms, namespace, key)
        return _codec.decode_claim_docs(await self._call("claim_docs", args, mutates=True))

    async def claim_doc_sets(
        self, claimant: str, sets: Sequence[DocSet], duration_ms: int, task_to_match: TaskID | None
    ) -> ClaimedDocs:
        args = _codec.claim_doc_sets_args(self.keys, claimant, duration_ms, task_to_match, sets)
        return _codec.decode_claim_doc_sets(await self._call("claim_doc_sets", args, mutates=True))

    async def namespace_stats(
        self, prefixes: Sequence[str], exact: Sequence[str], limit: int
    ) -> list[NamespaceStats]:
        found: list[NamespaceStats] = []
        after = ""
        while limit <= 0 or len(found) < limit:
            page = MAX_PAGE if limit <= 0 else min(MAX_PAGE, limit - len(found))
            args = _codec.namespaces_args(self.keys, page, after, prefixes, exact)
            more, stats = _codec.decode_namespaces(await self._call("namespaces", args))
            found += stats
            if not more or not stats:
                break
            after = stats[-1].name
        return found

    async def stop_background(self) -> None:
        """Ends the wake-up subscription cleanly (before the connections close)."""
        if self._hub is not None:
            await self._hub.stop()

    async def aclose(self) -> None:
        await self.stop_background()
        self._task_group.cancel_scope.cancel()


# A cluster is named by any one node, with the scheme marking it as a cluster seed.
CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def is_cluster_url(url: str) -> bool:
    return url.startswith(tuple(CLUSTER_SCHEMES))


def store_client(url: str, **kwargs: Any) -> coredis.Redis[bytes] | coredis.RedisCluster[bytes]:
    """A coredis client for a single store (redis://, rediss://, unix://) or a cluster seed."""
    try:
        for scheme, plain in CLUSTER_SCHEMES.items():
            if url.startswith(scheme):
                with warnings.catch_warnings():
                    # coredis 6.9's from_url passes its startup node in the form its own
                    # constructor deprecates; nothing the caller can change.
                    warnings.filterwarnings(
                        "ignore", "Use coredis.connection.TCPLocation", DeprecationWarning
                    )
                    return coredis.RedisCluster.from_url(
                        plain + url[len(scheme) :], decode_responses=False, **kwargs
                    )
        return coredis.Redis.from_url(url, decode_responses=False, **kwargs)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot use store URL {masked_url(url)!r}: {exc}") from exc


@contextlib.asynccontextmanager
async def _opened(redis: coredis.Redis[bytes] | coredis.RedisCluster[bytes]) -> AsyncIterator[None]:
    """Enters the client; on a cluster, also closes what coredis 6.9 leaves open.

    Its cluster layout keeps an error stream that nothing closes, so every closed cluster
    client raised a ResourceWarning when collected (an error where warnings are errors).
    """
    try:
        async with redis:
            yield
    finally:
        layout = getattr(redis.connection_pool, "cluster_layout", None)
        for stream in getattr(layout, "_error_stream", ()):
            stream.close()


async def check_eviction_policy(redis: coredis.Redis[bytes] | coredis.RedisCluster[bytes]) -> str:
    """Returns the store's maxmemory-policy (from INFO, which needs no CONFIG rights).

    On a cluster coredis asks one node; cluster nodes are configured alike in practice.
    """
    info = await redis.info("memory")
    policy = info.get("maxmemory_policy", "noeviction")
    return policy.decode() if isinstance(policy, bytes) else str(policy)


@contextlib.asynccontextmanager
async def open_redis_backend(
    url: str,
    namespace: str,
    *,
    allow_evicting_store: bool = False,
    notify: str | None = None,
    durability: Durability | None = None,
    max_connections: int | None = None,
) -> AsyncIterator[RedisBackend]:
    """Connects to the store (or cluster) at ``url`` and yields a backend for one namespace.

    Args:
        notify: How modify announces available tasks: PUBLISH on a single store,
            SPUBLISH (sharded, follows the slot) on a cluster by default.
    """
    keys = Keys(namespace)
    kwargs: dict[str, Any] = {}
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    redis = store_client(url, **kwargs)
    if notify is None:
        notify = "SPUBLISH" if isinstance(redis, coredis.RedisCluster) else "PUBLISH"
    async with _opened(redis):
        try:
            policy = await check_eviction_policy(redis)
        except coredis.exceptions.RedisError as exc:
            raise StoreUnavailableError(f"cannot reach the store at {masked_url(url)}: {exc}") from exc
        if policy in EVICTING_POLICIES and not allow_evicting_store:
            raise UnsafeStoreError(
                f"the store at {masked_url(url)} has maxmemory-policy {policy}, which can evict tasks; "
                "set it to noeviction, or pass allow_evicting_store=True "
                "(--allow-evicting-store) if losing tasks is acceptable"
            )
        async with anyio.create_task_group() as task_group:
            backend = RedisBackend(redis, keys, task_group, notify, durability)
            try:
                yield backend
            finally:
                with anyio.CancelScope(shield=True):
                    await backend.stop_background()
                task_group.cancel_scope.cancel()
