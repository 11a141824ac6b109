"""The Redis backend: every operation is one EVALSHA of a script in lua/.

coredis is the client library: redis-py's asyncio client does not run under trio, and
coredis is built on anyio, so this backend runs under trio and asyncio alike. coredis's
Script objects send EVALSHA and reload the script on NOSCRIPT (after SCRIPT FLUSH or a
store restart), so nothing here tracks whether scripts are loaded.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc
import coredis
import coredis.exceptions
from coredis.response._callbacks import NoopCallback

from . import _codec
from ._backend import Detail
from ._contract import MAX_PAGE, SCRIPT_NAMES
from ._errors import ClaimTimeoutError, StoreError, StoreUnavailableError, UnsafeStoreError
from ._keys import Keys
from ._scripts import script_source
from ._types import QueueStats, Task, TaskChange, TaskData, TaskID
from ._wake import WakeHub

T = TypeVar("T")

# Policies that may evict keys that have no TTL, i.e. our tasks.
EVICTING_POLICIES = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random", "allkeys-lrm"})

# A blocking claim re-checks at least this often even if no wake message arrives. It is a
# safety net (for a store that lost our subscription silently), not the wake-up path.
SAFETY_RECHECK_S = 30.0


class RedisBackend:
    """Runs the scripts against one namespace of a Redis/Valkey store."""

    def __init__(
        self,
        redis: coredis.Redis[bytes],
        keys: Keys,
        task_group: anyio.abc.TaskGroup,
        notify: str = "PUBLISH",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._notify = notify
        self._task_group = task_group
        self._scripts = {name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES}
        self._hub: WakeHub | None = None
        self._hub_lock = anyio.Lock()

    async def _call(self, name: str, args: list[_codec.Arg]) -> Any:
        try:
            return await self._scripts[name](keys=[self.keys.queue_index], args=args)
        except coredis.exceptions.ConnectionError as exc:
            raise StoreUnavailableError(f"store unreachable: {exc}") from exc
        except TimeoutError as exc:
            raise StoreUnavailableError(f"store timed out: {exc}") from exc
        except coredis.exceptions.ResponseError as exc:
            raise _codec.script_error(str(exc)) from exc

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except coredis.exceptions.ConnectionError as exc:
            raise StoreUnavailableError(f"store unreachable: {exc}") from exc
        except coredis.exceptions.RedisError as exc:
            raise StoreError(str(exc)) from exc

    async def time_ms(self) -> int:
        # Raw TIME: coredis 6.9's time() scales the microseconds wrongly (divides by 1000 twice).
        seconds, micros = await self._guard(
            lambda: self.redis.create_request(b"TIME", callback=NoopCallback[list[bytes]]())
        )
        return int(seconds) * 1000 + int(micros) // 1000

    async def ping(self) -> None:
        """Checks that the store answers and that every script is loaded (readiness)."""
        scripts = list(self._scripts.values())
        loaded = await self._guard(lambda: self.redis.script_exists([s.sha for s in scripts]))
        for script, is_loaded in zip(scripts, loaded, strict=True):
            if not is_loaded:
                source = script.script
                await self._guard(lambda: self.redis.script_load(source))  # noqa: B023

    async def _claim_once(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID] = ()
    ) -> tuple[Task | None, int]:
        args = _codec.claim_args(
            self.keys, claimant, duration_ms, queues, random.getrandbits(52), random.getrandbits(31), finish
        )
        return _codec.decode_claim(await self._call("claim", args))

    async def try_claim(
        self, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[TaskID] = ()
    ) -> Task | None:
        task, _ = await self._claim_once(claimant, queues, duration_ms, finish)
        return task

    async def _wake_hub(self) -> WakeHub:
        if self._hub is None:
            async with self._hub_lock:
                if self._hub is None:
                    hub = WakeHub(self.redis, self.keys.wake_channel)
                    await self._task_group.start(hub.run)
                    self._hub = hub
        return self._hub

    @property
    def waiting_claims(self) -> int:
        return self._hub.waiting if self._hub else 0

    async def claim(
        self,
        claimant: str,
        queues: Sequence[str],
        duration_ms: int,
        timeout_s: float | None,
        finish: Sequence[TaskID] = (),
    ) -> Task:
        deadline = anyio.current_time() + timeout_s if timeout_s is not None else None
        hub = await self._wake_hub()
        with hub.watching(queues) as waiter:
            while True:
                consumed = waiter.rearm()
                try:
                    task, wait_ms = await self._claim_once(claimant, queues, duration_ms, finish)
                    finish = ()  # deleted by the first attempt
                except BaseException:
                    if consumed is not None:
                        # Cancelled or failed before the attempt finished: someone else looks.
                        hub.wake(consumed, 1)
                    raise
                if task is not None:
                    return task
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
    ) -> tuple[list[Task], list[Task]]:
        id_seed = secrets.token_hex(16) if any(not d.id for d in inserts) else ""
        args = _codec.modify_args(
            self.keys, claimant, id_seed, self._notify, inserts, changes, deletes, depends
        )
        return _codec.decode_modify(await self._call("modify", args))

    async def tasks(
        self, queue: str, ids: Sequence[str], claimant: str, limit: int, omit_values: bool
    ) -> list[Task]:
        found: list[Task] = []
        if ids:
            for start in range(0, len(ids), MAX_PAGE):
                chunk = ids[start : start + MAX_PAGE]
                args = _codec.tasks_args(self.keys, claimant, queue, 1, 0, omit_values, chunk)
                found += _codec.decode_tasks(await self._call("tasks", args))[1]
            return found
        cursor = 0
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

    async def aclose(self) -> None:
        self._task_group.cancel_scope.cancel()


async def check_eviction_policy(redis: coredis.Redis[bytes]) -> str:
    """Returns the store's maxmemory-policy (from INFO, which needs no CONFIG rights)."""
    info = await redis.info("memory")
    policy = info.get("maxmemory_policy", "noeviction")
    return policy.decode() if isinstance(policy, bytes) else str(policy)


@contextlib.asynccontextmanager
async def open_redis_backend(
    url: str,
    namespace: str,
    *,
    allow_evicting_store: bool = False,
    notify: str = "PUBLISH",
    max_connections: int | None = None,
) -> AsyncIterator[RedisBackend]:
    """Connects to the store at ``url`` and yields a backend for one namespace."""
    keys = Keys(namespace)
    kwargs: dict[str, Any] = {}
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    try:
        redis: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False, **kwargs)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot use store URL {url!r}: {exc}") from exc
    async with redis:
        try:
            policy = await check_eviction_policy(redis)
        except coredis.exceptions.ConnectionError as exc:
            raise StoreUnavailableError(f"cannot reach the store at {url}: {exc}") from exc
        if policy in EVICTING_POLICIES and not allow_evicting_store:
            raise UnsafeStoreError(
                f"the store at {url} has maxmemory-policy {policy}, which can evict tasks; "
                "set it to noeviction, or pass allow_evicting_store=True "
                "(--allow-evicting-store) if losing tasks is acceptable"
            )
        async with anyio.create_task_group() as task_group:
            backend = RedisBackend(redis, keys, task_group, notify)
            try:
                yield backend
            finally:
                task_group.cancel_scope.cancel()
