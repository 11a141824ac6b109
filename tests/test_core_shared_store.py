"""Namespace views over one store connection: ``EntroQ.for_namespace``.

Every view of a client runs on the client's one connection pool and one wake subscription;
each namespace in use adds only its wake channel. Checked on the store: connections are
named (``client_name`` in the URL), so CLIENT LIST shows how many the client holds and which
carry subscriptions.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import trio
from cluster_fixture import LocalCluster
from conftest import ServiceProcess
from store_clients import POOL_BOUND, named_url, service_clients, subscribed

import entroq_redis
from entroq_redis import EntroQ, InvalidArgumentError, Task, TaskData


@pytest.fixture
def names(sync_redis: redis.Redis) -> Iterator[list[str]]:
    """Namespaces of this test (removed afterwards)."""
    chosen = ["v" + secrets.token_hex(4) + f"-{i}" for i in range(40)]
    yield chosen
    for name in chosen:
        keys = list(sync_redis.scan_iter(match="{" + name + "}:*", count=1000))
        if keys:
            sync_redis.delete(*keys)


def numsub(store: redis.Redis, namespace: str) -> int:
    ((_, count),) = store.pubsub_numsub("{" + namespace + "}:wake")
    return int(count)


async def claim_woken_by_insert(waiter: EntroQ, inserter: EntroQ, queue: str = "q") -> float:
    """A blocking claim in ``waiter``'s namespace, woken by ``inserter``'s insert; its latency."""
    result: dict[str, Any] = {}

    async def wait() -> None:
        result["task"] = await waiter.claim(queue, duration_ms=10_000, timeout_s=10)
        result["at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(0.2)
        (task,), _ = await inserter.modify(inserts=[TaskData(queue)])
        inserted_at = trio.current_time()
    assert isinstance(result["task"], Task) and result["task"].id == task.id
    return float(result["at"]) - inserted_at


async def test_views_share_one_pool_and_one_subscription(
    store_url: str, sync_redis: redis.Redis, names: list[str]
) -> None:
    client_name = "eqviews-" + secrets.token_hex(4)
    async with entroq_redis.connect(named_url(store_url, client_name), namespace=names[0]) as root:
        views = [root.for_namespace(name) for name in names]
        assert all(view.claimant_id == root.claimant_id for view in views)

        async def use(view: EntroQ) -> None:
            await view.modify(inserts=[TaskData("first")])
            assert await view.try_claim("first") is not None
            assert await claim_woken_by_insert(view, view) < 0.5

        async with trio.open_nursery() as nursery:
            for view in views:
                nursery.start_soon(use, view)
        connections = service_clients(sync_redis, client_name)
        holders = [c for c in connections if subscribed(c)]
        assert len(holders) == 1 and subscribed(holders[0]) == len(names), holders
        assert len(connections) <= POOL_BOUND + 1, len(connections)
        assert all(numsub(sync_redis, name) == 1 for name in names)
        # Each namespace sees only its own tasks.
        for name, view in zip(names, views, strict=True):
            assert sorted(await view.queues()) == ["first", "q"], name
    assert service_clients(sync_redis, client_name) == []


async def test_an_insert_wakes_only_its_own_namespace(
    store_url: str, sync_redis: redis.Redis, names: list[str]
) -> None:
    async with (
        entroq_redis.connect(store_url, namespace=names[0]) as root,
        entroq_redis.connect(store_url, namespace=names[0]) as producer_root,
    ):
        a, b = root.for_namespace(names[1]), root.for_namespace(names[2])
        producer = producer_root.for_namespace(names[1])
        b_result: list[Task] = []

        async def b_waits() -> None:
            b_result.append(await b.claim("q", duration_ms=10_000, timeout_s=10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(b_waits)
            await trio.sleep(0.2)
            b_hub = b.backend._hub  # type: ignore[attr-defined]
            # A's waiter is woken by A's insert, promptly, on the same subscription.
            for _ in range(3):
                assert await claim_woken_by_insert(a, producer) < 0.1
            # B's waiter heard nothing of A's inserts (not even a message to re-check on).
            assert b_hub.messages == 0 and not b_result
            await producer_root.for_namespace(names[2]).modify(inserts=[TaskData("q")])
        assert len(b_result) == 1 and b_hub.messages == 1


async def test_closing_a_view_keeps_the_others_working(
    store_url: str, sync_redis: redis.Redis, names: list[str]
) -> None:
    async with entroq_redis.connect(store_url, namespace=names[0]) as root:
        closed, kept = root.for_namespace(names[1]), root.for_namespace(names[2])
        twin = root.for_namespace(names[2])  # a second view of kept's namespace
        for view in (closed, kept, twin):
            assert await claim_woken_by_insert(view, view) < 0.5
        assert (numsub(sync_redis, names[1]), numsub(sync_redis, names[2])) == (1, 1)
        await closed.aclose()
        await twin.aclose()
        # The closed view's channel is off the subscription; the twin's stays for kept.
        assert (numsub(sync_redis, names[1]), numsub(sync_redis, names[2])) == (0, 1)
        assert await claim_woken_by_insert(kept, kept) < 0.5
        assert await claim_woken_by_insert(root, root) < 0.5
        # A closed view can be used again: it rejoins the subscription.
        assert await claim_woken_by_insert(closed, closed) < 0.5
    assert (numsub(sync_redis, names[1]), numsub(sync_redis, names[2])) == (0, 0)


async def test_for_namespace_refuses_a_bad_name(
    store_url: str, namespace: str, http_service: ServiceProcess
) -> None:
    for url in (store_url, http_service.url):
        async with entroq_redis.connect(url, namespace=namespace) as root:
            with pytest.raises(InvalidArgumentError, match="namespace must be"):
                root.for_namespace("no spaces")


async def test_for_namespace_over_http_sends_the_views_namespace(
    http_service: ServiceProcess, store_url: str, names: list[str]
) -> None:
    async with entroq_redis.connect(http_service.url, namespace=names[0]) as root:
        view = root.for_namespace(names[1])
        await view.modify(inserts=[TaskData("here")])
        assert await root.queues() == {}
        latency = await claim_woken_by_insert(view, view)
        assert latency < 0.5
        await view.aclose()  # leaves the HTTP connections to root
        assert await root.queues() == {}
    async with entroq_redis.connect(store_url, namespace=names[1]) as direct:
        assert sorted(await direct.queues()) == ["here", "q"]


async def test_views_on_a_cluster_share_one_sharded_subscription(cluster: LocalCluster) -> None:
    spread = cluster.spread_namespaces("views-" + secrets.token_hex(3), per_primary=3)
    client_name = "eqviews-" + secrets.token_hex(4)
    async with (
        entroq_redis.connect(named_url(cluster.url, client_name), namespace=spread[0]) as root,
        entroq_redis.connect(cluster.url, namespace=spread[0]) as producer_root,
    ):
        for name in spread:
            latency = await claim_woken_by_insert(root.for_namespace(name), producer_root.for_namespace(name))
            assert latency < 0.1, (name, latency)
        holders: list[dict[str, Any]] = []
        for node in cluster.nodes:
            if node.running:
                with contextlib.closing(node.client()) as client:
                    holders += [c for c in service_clients(client, client_name) if subscribed(c)]
        # One sharded subscription: a connection per primary, each carrying the channels of
        # the namespaces whose slots it serves (3 per primary here).
        assert len(holders) == cluster.primaries, holders
        assert sorted(subscribed(c) for c in holders) == [3] * cluster.primaries
