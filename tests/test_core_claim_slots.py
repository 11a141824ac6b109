"""claim.lua's slots (contract 3): per-slot claimants and leases, and the script's refusals.

RedisBackend.try_claim_slots is the entry a service uses to claim for several callers in one
store call ("each" form); the direct script calls check the ARGV rules of lua/README.md
section 5 (every refusal writes nothing).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

import entroq_redis
from entroq_redis import ClaimSlot, DependencyError, EntroQ, TaskData
from entroq_redis._keys import Keys
from entroq_redis._redis_backend import RedisBackend
from entroq_redis._scripts import script_source


def redis_backend(eq: EntroQ) -> RedisBackend:
    assert isinstance(eq.backend, RedisBackend)
    return eq.backend


async def test_each_slot_claims_as_its_own_claimant_for_its_own_lease(redis_eq: EntroQ) -> None:
    await redis_eq.modify(inserts=[TaskData("per", value=b"%d" % i) for i in range(5)])
    slots = [ClaimSlot("alice", 1_000), ClaimSlot("bob", 60_000), ClaimSlot("alice", 0)]
    tasks, wait_ms = await redis_backend(redis_eq).try_claim_slots("", ["per"], slots)
    assert wait_ms == 0 and len(tasks) == 3 and len({t.id for t in tasks}) == 3
    for slot, task in zip(slots, tasks, strict=True):
        assert task.claimant == slot.claimant
        assert task.at_ms == task.modified_ms + slot.duration_ms
        assert (task.version, task.claims) == (1, 1)
    stored = {t.id: t for t in await redis_eq.tasks("per")}
    assert all(stored[t.id] == t for t in tasks)
    # Each holder's fence is its own: alice's 0 ms task is free again, bob's is held by bob.
    bob = redis_eq.as_claimant("bob")
    with pytest.raises(DependencyError):
        await redis_eq.as_claimant("alice").modify(deletes=[tasks[1]])
    await bob.modify(deletes=[tasks[1]])


async def test_more_slots_than_tasks_fill_in_order_and_report_nothing_after(redis_eq: EntroQ) -> None:
    await redis_eq.modify(inserts=[TaskData("two"), TaskData("two")])
    slots = [ClaimSlot(f"c{i}", 30_000) for i in range(5)]
    tasks, _ = await redis_backend(redis_eq).try_claim_slots("", ["two"], slots)
    # Slots 0 and 1 got the two tasks; 2..4 got nothing.
    assert [t.claimant for t in tasks] == ["c0", "c1"]
    none, wait_ms = await redis_backend(redis_eq).try_claim_slots("", ["two"], slots[:1])
    assert none == [] and 29_000 < wait_ms <= 30_000


async def test_the_finisher_is_whom_the_finish_deletes_are_checked_against(redis_eq: EntroQ) -> None:
    await redis_eq.modify(inserts=[TaskData("fin") for _ in range(3)])
    held = await redis_eq.as_claimant("owner").try_claim("fin", duration_ms=60_000)
    assert held is not None
    backend = redis_backend(redis_eq)
    with pytest.raises(DependencyError):
        await backend.try_claim_slots("someone-else", ["fin"], [ClaimSlot("x", 1000)], [held.as_id()])
    assert len(await redis_eq.tasks("fin")) == 3
    tasks, _ = await backend.try_claim_slots("owner", ["fin"], [ClaimSlot("x", 1000)], [held.as_id()])
    assert len(tasks) == 1 and tasks[0].claimant == "x" and tasks[0].id != held.id
    assert len(await redis_eq.tasks("fin")) == 2


# --- The script's argument rules, called directly ---------------------------------------------


def call(sync_redis: redis.Redis, keys: Keys, *argv: Any, contract: str | None = None) -> Any:
    version = entroq_redis.CONTRACT_VERSION if contract is None else contract
    return sync_redis.eval(script_source("claim"), 1, keys.queue_index, keys.prefix, version, *argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("me", 1000, 0, 1, 1, "shared", "q", 1), "exactly 11 ARGV"),  # one random short
        (("me", 1000, 0, 1, 1, "shared", "q", 1, 2, 3), "exactly 11 ARGV"),
        (("me", 1000, 0, 2, 1, "shared", "q", 1, 2), "exactly 12 ARGV"),  # n_queues says 2
        (("me", 1000, 0, 1, 0, "shared", "q"), "k must be"),
        (("me", 1000, 0, 1, 1001, "shared", "q"), "k must be"),
        (("me", 1000, 0, 0, 1, "shared", 1, 2), "n_queues must be"),
        (("me", 1000, 0, 1, 1, "both", "q", 1, 2), "form must be"),
        (("", 1000, 0, 1, 1, "shared", "q", 1, 2), "claimant must not be empty"),
        (("", 0, 0, 1, 1, "each", "q", "", 10, 1, 2), "slot 1 claimant"),
        (("", 0, 0, 1, 1, "each", "q", "a", -1, 1, 2), "slot 1 duration_ms"),
        (("", 0, 0, 1, 2, "each", "q", "a", 1, 1, 2, "b", 1, 2**52, 2), "slot 2 rank_random"),
        (("me", 1000, 0, 1, 1, "shared", "q", 1, 2**31), "slot 1 order_random"),
        (("me", 1000, 0, 1, 1), "at least 8"),
    ],
)
async def test_malformed_claims_are_refused_with_nothing_written(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str, argv: tuple[Any, ...], message: str
) -> None:
    keys = Keys(namespace)
    await redis_eq.modify(inserts=[TaskData("q")])
    before = {k: sync_redis.dump(k) for k in sync_redis.scan_iter(match="{" + namespace + "}:*")}
    with pytest.raises(redis.ResponseError, match=rf"^EQ_BADARG .*{message}"):
        call(sync_redis, keys, *argv)
    after = {k: sync_redis.dump(k) for k in sync_redis.scan_iter(match="{" + namespace + "}:*")}
    assert after == before


async def test_the_script_speaks_contract_3_only(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis_eq.modify(inserts=[TaskData("q")])
    assert entroq_redis.CONTRACT_VERSION == "3"
    assert script_source("claim").startswith("-- entroq-redis contract 3: claim.lua\n")
    # A contract-2 caller's claim (claimant, duration, rank, order, n_finish, queue) is refused.
    with pytest.raises(redis.ResponseError, match=r"^EQ_CONTRACT claim\.lua speaks contract 3"):
        call(sync_redis, keys, "me", 1000, 5, 9, 0, "q", contract="2")
    assert (await redis_eq.tasks("q"))[0].claims == 0
    reply = call(sync_redis, keys, "me", 1000, 0, 1, 3, "shared", "q", 5, 9, 6, 10, 7, 11)
    assert reply[0] == 1 and len(reply[1]) == 1 and reply[1][0][4] == b"me"
