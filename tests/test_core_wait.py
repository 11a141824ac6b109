"""Blocking claims (docs/design.md 2.5): woken by inserts and releases, by due arrivals,
bounded by timeouts."""

from __future__ import annotations

import pytest
import trio

from entroq_redis import ClaimTimeoutError, EntroQ, Task, TaskData


async def test_waiting_claim_wakes_within_100ms_of_insert_from_another_connection(
    eq: EntroQ, other: EntroQ
) -> None:
    result: dict[str, float | Task] = {}

    async def waiter() -> None:
        result["task"] = await eq.claim("wake", duration_ms=5_000, timeout_s=10)
        result["claimed_at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.3)
        (inserted,), _ = await other.modify(inserts=[TaskData("wake", value=b"hi")])
        inserted_at = trio.current_time()
    task = result["task"]
    assert isinstance(task, Task) and task.id == inserted.id
    latency = float(result["claimed_at"]) - inserted_at  # type: ignore[arg-type]
    assert latency < 0.1, f"woke {latency * 1000:.1f} ms after the insert"


async def test_waiting_claim_wakes_when_a_release_makes_a_task_available(eq: EntroQ, other: EntroQ) -> None:
    await other.modify(inserts=[TaskData("rel")])
    held = await other.try_claim("rel", duration_ms=60_000)
    assert held is not None
    async with trio.open_nursery() as nursery:

        async def release() -> None:
            await trio.sleep(0.2)
            await other.modify(changes=[held.as_change(at=None)])

        nursery.start_soon(release)
        start = trio.current_time()
        task = await eq.claim("rel", duration_ms=1_000, timeout_s=10)
        assert task.id == held.id
        assert trio.current_time() - start < 0.2 + 0.1


async def test_waiting_claim_wakes_when_a_future_arrival_comes_due(eq: EntroQ, other: EntroQ) -> None:
    await other.modify(inserts=[TaskData("due", delay_ms=400)])
    start = trio.current_time()
    task = await eq.claim("due", duration_ms=1_000, timeout_s=10)
    waited = trio.current_time() - start
    assert task.queue == "due"
    assert 0.3 <= waited < 0.4 + 0.15, waited


async def test_waiting_claim_learns_of_an_earlier_arrival_inserted_while_it_sleeps(
    eq: EntroQ, other: EntroQ
) -> None:
    await other.modify(inserts=[TaskData("soon", delay_ms=30_000)])
    async with trio.open_nursery() as nursery:

        async def insert_earlier() -> None:
            await trio.sleep(0.2)
            await other.modify(inserts=[TaskData("soon", delay_ms=300, value=b"early")])

        nursery.start_soon(insert_earlier)
        start = trio.current_time()
        task = await eq.claim("soon", duration_ms=1_000, timeout_s=10)
    assert task.value == b"early"
    assert trio.current_time() - start < 0.5 + 0.15


async def test_waiting_claim_takes_a_task_whose_lease_runs_out(eq: EntroQ, other: EntroQ) -> None:
    await other.modify(inserts=[TaskData("lease")])
    held = await other.try_claim("lease", duration_ms=300)
    assert held is not None
    start = trio.current_time()
    task = await eq.claim("lease", duration_ms=1_000, timeout_s=10)
    assert task.id == held.id and task.version == held.version + 1
    assert 0.2 <= trio.current_time() - start < 0.3 + 0.15


async def test_waiting_claim_times_out(eq: EntroQ) -> None:
    start = trio.current_time()
    with pytest.raises(ClaimTimeoutError) as caught:
        await eq.claim("never", duration_ms=1_000, timeout_s=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert 0.29 <= trio.current_time() - start < 0.3 + 0.3


async def test_a_cancelled_waiting_claim_takes_nothing_afterwards(eq: EntroQ, other: EntroQ) -> None:
    # Cancelling the caller must end the wait where it runs (the store, the HTTP service, the
    # gRPC service): a wait left running there would claim the next task for nobody.
    with trio.move_on_after(0.2) as scope:
        await eq.claim("abandoned", duration_ms=60_000)
    assert scope.cancelled_caught
    await trio.sleep(0.1)  # the cancellation reaches a service asynchronously
    (task,), _ = await other.modify(inserts=[TaskData("abandoned")])
    await trio.sleep(0.3)
    (listed,) = await other.tasks("abandoned")
    assert (listed.version, listed.claims) == (task.version, 0)


async def test_one_insert_per_waiter_serves_every_waiter_once(eq: EntroQ, other: EntroQ) -> None:
    claimed: list[str] = []

    async def waiter() -> None:
        task = await eq.claim("many", duration_ms=60_000, timeout_s=10)
        claimed.append(task.id)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(waiter)
        await trio.sleep(0.2)
        inserted: list[Task] = []
        for _ in range(5):
            batch, _ = await other.modify(inserts=[TaskData("many")])
            inserted += batch
            await trio.sleep(0.02)
    assert sorted(claimed) == sorted(t.id for t in inserted)


async def test_cancelled_waiter_hands_its_wake_to_another(
    redis_eq: EntroQ, store_url: str, namespace: str
) -> None:
    import entroq_redis

    async with entroq_redis.connect(store_url, namespace=namespace) as producer:
        # Insert without announcing it, then deliver the one wake by hand to the first
        # waiter and cancel that waiter before it looks: only the hand-off can tell the
        # second waiter (otherwise it would sleep past its timeout).
        producer.backend._notify = ""  # type: ignore[attr-defined]
        got: list[Task] = []
        took: list[float] = []
        handed_at: list[float] = []
        async with trio.open_nursery() as nursery:
            cancel_first = trio.CancelScope()

            async def first() -> None:
                with cancel_first:
                    await redis_eq.claim("handoff", duration_ms=60_000)

            async def second() -> None:
                got.append(await redis_eq.claim("handoff", duration_ms=60_000, timeout_s=5))
                took.append(trio.current_time() - handed_at[0])

            nursery.start_soon(first)
            await trio.sleep(0.1)
            nursery.start_soon(second)
            await trio.sleep(0.1)
            await producer.modify(inserts=[TaskData("handoff")])
            backend = redis_eq.backend
            hub = backend._hub  # type: ignore[attr-defined]
            handed_at.append(trio.current_time())
            hub.wake("handoff", 1)
            cancel_first.cancel()
        assert len(got) == 1
        # Without the hand-off the second waiter would only find it at its 5 s timeout.
        assert took[0] < 0.5, took
        assert backend.waiting_claims == 0  # type: ignore[attr-defined]


async def test_abandoned_waits_leave_no_registrations(redis_eq: EntroQ) -> None:
    for _ in range(50):
        with trio.move_on_after(0.01):
            await redis_eq.claim(["x", "y"], duration_ms=1_000)
    assert redis_eq.backend.waiting_claims == 0  # type: ignore[attr-defined]
