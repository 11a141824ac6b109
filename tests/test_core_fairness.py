"""Claim randomness (design 2.3): uniform within a queue, uniform over non-empty queues.

The randomness comes from the caller (the client draws from Python's `random`), so the
tests seed it: each run makes exactly the same draws and cannot flake. The bounds are
chi-square critical values at p = 1e-6, far above what a fair draw produces and far
below what a biased one (EntroQ's heap walk favours the earliest task ~45%) produces.
"""

from __future__ import annotations

import collections
import random

import redis

import entroq_redis
from entroq_redis import EntroQ, TaskData
from entroq_redis._keys import Keys
from entroq_redis._scripts import script_source

# chi-square critical values at p = 1e-6 by degrees of freedom.
CHI2_CRITICAL = {1: 23.93, 2: 27.63, 9: 41.32}


def chi_square(counts: collections.Counter[str], categories: list[str]) -> float:
    total = sum(counts[c] for c in categories)
    expected = total / len(categories)
    return sum((counts[c] - expected) ** 2 / expected for c in categories)


async def test_claim_is_uniform_within_a_queue(redis_eq: EntroQ) -> None:
    random.seed(20261128)
    inserted, _ = await redis_eq.modify(inserts=[TaskData("u", id=f"t{i}") for i in range(10)])
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(3000):
        task = await redis_eq.try_claim("u", duration_ms=0)
        assert task is not None
        counts[task.id] += 1
    ids = [t.id for t in inserted]
    assert chi_square(counts, ids) < CHI2_CRITICAL[9], counts
    # The earliest arrival gets no special share (EntroQ's in-memory heap gives it ~45%).
    assert max(counts.values()) < 0.15 * 3000


async def test_claim_is_uniform_over_queues_with_available_tasks(redis_eq: EntroQ) -> None:
    random.seed(7)
    await redis_eq.modify(inserts=[TaskData("small")])
    for _ in range(2):
        await redis_eq.modify(inserts=[TaskData("big") for _ in range(1000)])
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(2000):
        task = await redis_eq.try_claim(["empty", "small", "big"], duration_ms=0)
        assert task is not None
        counts[task.queue] += 1
    assert counts["empty"] == 0
    # A queue with 2,000 tasks does not starve a queue with one.
    assert chi_square(counts, ["small", "big"]) < CHI2_CRITICAL[1], counts


async def test_claim_skips_queues_whose_tasks_are_all_claimed(redis_eq: EntroQ) -> None:
    random.seed(3)
    await redis_eq.modify(inserts=[TaskData("a"), TaskData("b"), TaskData("c")])
    held = await redis_eq.try_claim("a", duration_ms=60_000)
    assert held is not None
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(1500):
        task = await redis_eq.try_claim(["a", "b", "c"], duration_ms=0)
        assert task is not None
        counts[task.queue] += 1
    assert counts["a"] == 0
    assert chi_square(counts, ["b", "c"]) < CHI2_CRITICAL[1], counts


async def test_claim_over_many_names_finds_the_few_non_empty_queues_evenly(redis_eq: EntroQ) -> None:
    # claim.lua drops the names of empty queues with one look at the queue index first;
    # what is left must still be chosen evenly, and a queue holding only a future task
    # must still report when its task arrives.
    random.seed(11)
    names = [f"n{i}" for i in range(1000)]
    now = await redis_eq.time()
    await redis_eq.modify(inserts=[TaskData("n17"), TaskData("n600"), TaskData("n999", at=now + 60_000)])
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(1000):
        task = await redis_eq.try_claim(names, duration_ms=0)
        assert task is not None
        counts[task.queue] += 1
    assert set(counts) == {"n17", "n600"}
    assert chi_square(counts, ["n17", "n600"]) < CHI2_CRITICAL[1], counts
    for queue in ("n17", "n600"):
        held = await redis_eq.try_claim(queue, duration_ms=60_000)
        assert held is not None
    assert await redis_eq.try_claim(names) is None


async def test_claim_over_many_names_reports_the_next_arrival(
    store_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    # The script's own reply: nothing available among 1,000 names, one of which holds a
    # task due in a minute, is {0, ms until it arrives} (the wait a blocking claim sleeps).
    keys = Keys(namespace)
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        now = await eq.time()
        await eq.modify(inserts=[TaskData("n999", at=now + 60_000)])
    names = [f"n{i}" for i in range(1000)]
    # claimant, duration_ms, n_finish, n_queues, k, form; the names; one slot's randoms.
    head = [keys.prefix, entroq_redis.CONTRACT_VERSION, "me", "1000", "0"]
    argv = [*head, str(len(names)), "1", "shared", *names, "5", "9"]
    reply = sync_redis.eval(script_source("claim"), 1, keys.queue_index, *argv)
    assert reply[0] == 0 and 55_000 < reply[1] <= 60_000, reply
    emptied = sync_redis.eval(
        script_source("claim"), 1, keys.queue_index, *head, "2", "1", "shared", "n1", "n2", "5", "9"
    )
    assert emptied == [0, -1]
