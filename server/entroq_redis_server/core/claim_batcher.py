"""Natural batching of the service's non-blocking claims (group commit, no timers).

Concurrent TryClaims of one namespace and one queue list go to the store as ONE claim.lua
call whose slots each carry their caller's own claimant and lease
(``RedisBackend.try_claim_slots``); each caller gets its own slot's task or nothing. A batch
forms only from requests that are already waiting while a claim of their lane is in flight:
a request that finds its lane idle goes to the store at once, alone, exactly as before, so a
lone request waits for nothing. Under load the service's event loop is the bottleneck (it
parses HTTP), and each store call costs it a round of coredis, anyio and trio work; one call
for the claims that piled up behind the previous one saves that work per claim.

What one caller sends must never change what another receives, so only requests whose
every input the store would accept for certain are batched (``batchable``): no ``finish``
(a refused finish fails the whole script call, and it would fail the other callers' claims
too), a claimant, lease and queue list within the store's limits. Anything else goes alone
through the library's ordinary call and fails (or not) exactly as before. A store failure of
a batch (unreachable, outcome unknown) is every member's failure: it is the store's, not a
caller's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import trio

import entroq_redis
from entroq_redis._contract import (
    MAX_CLAIM_SLOTS,
    MAX_CLAIMANT_BYTES,
    MAX_DURATION_MS,
    MAX_QUEUE_BYTES,
    MAX_QUEUES_PER_CLAIM,
)
from entroq_redis._redis_backend import RedisBackend


def _byte_length(text: str) -> int:
    # As the library sends names to the store (_codec.raw); -1: cannot be sent at all.
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return -1


def batchable(
    backend: object, claimant: str, queues: Sequence[str], duration_ms: int, finish: Sequence[object]
) -> RedisBackend | None:
    """The store backend to batch this claim on, or None when it must go alone (the library's
    own call then decides, and its errors stay this request's own)."""
    if not isinstance(backend, RedisBackend) or finish:
        return None
    if not 1 <= _byte_length(claimant) <= MAX_CLAIMANT_BYTES:
        return None
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int):
        return None
    if not 0 <= duration_ms <= MAX_DURATION_MS:
        return None
    if not 1 <= len(queues) <= MAX_QUEUES_PER_CLAIM:
        return None
    if not all(isinstance(q, str) and 1 <= _byte_length(q) <= MAX_QUEUE_BYTES for q in queues):
        return None
    return backend


@dataclasses.dataclass(eq=False, slots=True)
class _Claim:
    """One caller's claim while it waits in (or runs) a batch."""

    slot: entroq_redis.ClaimSlot
    woken: trio.Event = dataclasses.field(default_factory=trio.Event)
    lead: bool = False  # this caller runs the next batch
    done: bool = False  # its outcome is in
    task: entroq_redis.Task | None = None
    error: BaseException | None = None

    def outcome(self) -> entroq_redis.Task | None:
        if self.error is not None:
            raise self.error
        return self.task


@dataclasses.dataclass(eq=False, slots=True)
class _Lane:
    """The claims of one namespace (backend) and queue list: at most one store call in flight."""

    waiting: list[_Claim] = dataclasses.field(default_factory=list)
    busy: bool = False


_LaneKey = tuple[RedisBackend, tuple[str, ...]]


class ClaimBatcher:
    """Coalesces concurrent non-blocking claims per (namespace, queue list).

    Args:
        max_batch: The most claims in one store call (claim.lua takes up to 1,000 slots).
    """

    def __init__(self, max_batch: int = MAX_CLAIM_SLOTS) -> None:
        if not 1 <= max_batch <= MAX_CLAIM_SLOTS:
            raise ValueError(f"max_batch must be from 1 to {MAX_CLAIM_SLOTS}, got {max_batch}")
        self.max_batch = max_batch
        self._lanes: dict[_LaneKey, _Lane] = {}

    async def try_claim(
        self, backend: RedisBackend, queues: Sequence[str], claimant: str, duration_ms: int
    ) -> entroq_redis.Task | None:
        """Claims one task for ``claimant`` (lease ``duration_ms``) from ``queues``, or None;
        the inputs must have passed ``batchable``."""
        key = (backend, tuple(queues))
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        me = _Claim(entroq_redis.ClaimSlot(claimant, duration_ms))
        if not lane.busy:
            lane.busy = True
            await self._run(key, lane, [me])
            return me.outcome()
        lane.waiting.append(me)
        try:
            await me.woken.wait()
        except BaseException:
            # Cancelled while waiting: leave the line; if the lead had just been handed to
            # this caller, hand it on, or the ones behind would wait forever.
            if me in lane.waiting:
                lane.waiting.remove(me)
            if me.lead and not me.done:
                self._release(key, lane)
            raise
        if not me.done:
            # Woken to lead: the batch is everyone waiting now, this caller first.
            batch = lane.waiting[: self.max_batch]
            del lane.waiting[: self.max_batch]
            await self._run(key, lane, batch)
        return me.outcome()

    async def _run(self, key: _LaneKey, lane: _Lane, batch: list[_Claim]) -> None:
        backend, queues = key
        try:
            slots = [c.slot for c in batch]
            if len(batch) == 1:
                # Alone, the call is this caller's own: cancelling it is as it always was.
                tasks, _ = await backend.try_claim_slots("", queues, slots)
            else:
                # The others' claims ride on this call: the leader being cancelled (its
                # client went away) must not cut it off and leave their outcome unknown.
                with trio.CancelScope(shield=True):
                    tasks, _ = await backend.try_claim_slots("", queues, slots)
        except Exception as exc:
            for claim in batch:
                claim.error = exc
        else:
            # Slots fill in order: the first len(tasks) got one, the rest found nothing.
            for claim, task in zip(batch, tasks, strict=False):
                claim.task = task
        finally:
            for claim in batch:
                claim.done = True
                claim.woken.set()
            self._release(key, lane)

    def _release(self, key: _LaneKey, lane: _Lane) -> None:
        """The lane's call is over: the first waiting caller leads the next batch, or the lane
        goes idle (and is dropped, so closed namespaces' backends are not kept)."""
        if lane.waiting:
            head = lane.waiting[0]
            head.lead = True
            head.woken.set()
            return
        lane.busy = False
        if self._lanes.get(key) is lane:
            del self._lanes[key]
