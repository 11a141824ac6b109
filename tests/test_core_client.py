"""The client as a library user meets it: exceptions, asyncio, unreachable stores."""

from __future__ import annotations

import asyncio
import gc

import pytest

import entroq_redis
from entroq_redis import DependencyError, StoreUnavailableError, TaskData, TaskID


async def test_errors_raised_in_the_block_come_out_unwrapped(store_url: str, namespace: str) -> None:
    with pytest.raises(DependencyError):
        async with entroq_redis.connect(store_url, namespace=namespace) as eq:
            await eq.modify(deletes=[TaskID("nope", 0)])
    with pytest.raises(KeyError):
        async with entroq_redis.connect(store_url, namespace=namespace):
            raise KeyError("mine")


# coredis 6.9 drops the anyio streams of connections that failed to connect without
# closing them; they are garbage, collected here so the warning lands on this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_unreachable_store_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailableError, match="cannot reach the store"):
        async with entroq_redis.connect("redis://127.0.0.1:1", namespace="x"):
            pass
    gc.collect()


def test_client_runs_under_asyncio(store_url: str, namespace: str) -> None:
    async def main() -> tuple[bytes, bytes, dict[str, int]]:
        async with (
            entroq_redis.connect(store_url, namespace=namespace) as eq,
            entroq_redis.connect(store_url, namespace=namespace) as producer,
        ):

            async def insert_later() -> None:
                await asyncio.sleep(0.2)
                await producer.modify(inserts=[TaskData("aio", value=b"waited")])

            await eq.modify(inserts=[TaskData("aio", value=b"first")])
            first = await eq.claim("aio", duration_ms=60_000, timeout_s=5)
            later = asyncio.ensure_future(insert_later())
            second = await eq.claim("aio", duration_ms=60_000, timeout_s=5)
            await later
            await eq.modify(deletes=[first.as_id(), second.as_id()])
            return first.value, second.value, await eq.queues()

    assert asyncio.run(main()) == (b"first", b"waited", {})
