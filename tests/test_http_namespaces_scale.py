"""A service serving 500 namespaces holds the store connections and subscriptions of one.

Every namespace is a view over the service's one store client (core/namespaces.py): one
connection pool and one wake subscription, however many namespaces it serves. Measured on
the store itself: the service names its connections (``client_name`` in its store URL) and
CLIENT LIST shows how many it has open and which carry subscriptions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from typing import Any

import httpx
import redis
import trio
from conftest import start_service
from store_clients import POOL_BOUND, named_url, service_clients, subscribed

NAMESPACES = 500
HTTP_CLIENTS = 25
INSERTS_AT_ONCE = 1


@dataclasses.dataclass
class Figures:
    namespaces: int
    connections: int  # the service's connections to the store, at the peak and after
    connections_after: int
    subscribed_connections: int  # those carrying a (sharded or pattern) subscription
    subscriptions: int  # channels and patterns on them
    slowest_wake_s: float  # from sending the insert to the claim's answer (one at a time)
    median_wake_s: float
    unavailable: int  # requests answered 503 (then retried)


async def use_namespaces(url: str, names: list[str], store: redis.Redis, client_name: str) -> Figures:
    """In each namespace: insert + claim, then a blocking claim (all waiting at once) woken by
    an insert; counts the service's store connections while all of them wait and after."""
    agent = {"User-Agent": "entroq-redis-tests"}
    async with contextlib.AsyncExitStack() as stack:
        # Several small HTTP clients: one pool of 1,000 connections spends its time looking
        # through them (httpcore's pool is quadratic), not talking to the service.
        https = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=agent, timeout=150))
            for _ in range(HTTP_CLIENTS)
        ]
        client_of = {name: https[i % HTTP_CLIENTS] for i, name in enumerate(names)}

        unavailable: list[str] = []

        async def post(namespace: str, path: str, body: dict[str, Any], **headers: str) -> Any:
            while True:
                response = await client_of[namespace].post(
                    path, json=body, headers={"EntroQ-Namespace": namespace, **headers}
                )
                if response.status_code != 503:
                    break
                # Counted (a figure), then retried as a client would: the service could not
                # reach the store, or subscribe to its wake-ups, in time.
                unavailable.append(namespace)
                await trio.sleep(0.1)
            response.raise_for_status()
            return response.json()

        def insert(queue: str) -> dict[str, Any]:
            return {"claimantId": "scale", "inserts": [{"queue": queue, "value": ""}]}

        def claim(queue: str) -> dict[str, Any]:
            return {"claimantId": "scale", "queues": [queue], "durationMs": "60000"}

        async def insert_and_claim(namespace: str) -> None:
            await post(namespace, "/api/v0/modify", insert("first"))
            got = await post(namespace, "/api/v0/claim", claim("first"))
            assert got.get("task"), f"{namespace}: nothing claimed"

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(insert_and_claim, name)

        woken: dict[str, float] = {}
        inserted: dict[str, float] = {}

        async def wait_claim(namespace: str) -> None:
            got = await post(namespace, "/api/v0/claim/wait", claim("wait"), **{"X-Server-Timeout": "120"})
            assert got.get("task"), f"{namespace}: the blocking claim ended without a task"
            woken[namespace] = trio.current_time()

        limiter = trio.CapacityLimiter(INSERTS_AT_ONCE)

        async def wake(namespace: str) -> None:
            async with limiter:
                inserted[namespace] = trio.current_time()
                await post(namespace, "/api/v0/modify", insert("wait"))

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(wait_claim, name)
            # Every claim is waiting in the service once each namespace has its wake channel.
            channels = ["{" + name + "}:wake" for name in names]
            with trio.fail_after(60):
                while sum(1 for _, n in store.pubsub_numsub(*channels) if n) < len(names):  # noqa: ASYNC110 (the store)
                    await trio.sleep(0.05)
            await trio.sleep(0.2)
            peak = service_clients(store, client_name)
            # One at a time by default: each wake's latency is its own, not a queue's.
            async with trio.open_nursery() as inserts:
                for name in names:
                    inserts.start_soon(wake, name)
        after = service_clients(store, client_name)
    holders = [c for c in peak if subscribed(c)]
    return Figures(
        namespaces=len(names),
        connections=len(peak),
        connections_after=len(after),
        subscribed_connections=len(holders),
        subscriptions=sum(subscribed(c) for c in holders),
        slowest_wake_s=max(woken[n] - inserted[n] for n in names),
        unavailable=len(unavailable),
        median_wake_s=sorted(woken[n] - inserted[n] for n in names)[len(names) // 2],
    )


async def measure(store_url: str, sync_redis: redis.Redis, count: int) -> Figures:
    client_name = "eqscale-" + secrets.token_hex(4)
    names = ["s" + secrets.token_hex(4) + f"-{i}" for i in range(count)]
    args = [arg for name in names for arg in ("--namespace", name)]
    service = start_service(named_url(store_url, client_name), *args, "--grpc-port", "0")
    try:
        try:
            return await use_namespaces(service.url, names, sync_redis, client_name)
        except BaseException:
            print(service.log()[-4000:])
            raise
    finally:
        service.stop()
        for name in names:
            keys = list(sync_redis.scan_iter(match="{" + name + "}:*", count=1000))
            if keys:
                sync_redis.delete(*keys)


async def test_500_namespaces_keep_the_store_connections_and_subscriptions_of_one(
    store_url: str, sync_redis: redis.Redis
) -> None:
    one = await measure(store_url, sync_redis, 1)
    many = await measure(store_url, sync_redis, NAMESPACES)
    for figures in (one, many):
        print(
            f"{figures.namespaces} namespaces: {figures.connections} store connections while every "
            f"namespace had a waiting claim ({figures.connections_after} after), "
            f"{figures.subscribed_connections} of them subscribed, carrying {figures.subscriptions} "
            f"channels; wake after the insert was sent: median {figures.median_wake_s * 1000:.0f} ms, "
            f"slowest {figures.slowest_wake_s * 1000:.0f} ms (inserts {INSERTS_AT_ONCE} at a time); "
            f"{figures.unavailable} requests answered 503 (retried)"
        )
    assert one.subscribed_connections == many.subscribed_connections == 1
    assert (one.subscriptions, many.subscriptions) == (1, NAMESPACES)
    # The pool's bound plus the subscription, however many namespaces; not one pool each.
    assert many.connections <= POOL_BOUND + 1, many
    assert many.connections_after <= POOL_BOUND + 1, many
    # Each blocking claim was woken by its own namespace's insert, not by the 30 s re-check: a
    # bound of half that, so a loaded CI machine cannot fail it while a lost wake-up still does.
    assert many.slowest_wake_s < 15, many
    assert many.unavailable == 0, many
