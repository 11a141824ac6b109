"""The store side: script loading, the embedded Valkey's durability, unsafe configurations."""

from __future__ import annotations

import pathlib

import pytest
import redis

import entroq_redis
from entroq_redis import EntroQ, TaskData, UnsafeStoreError
from entroq_redis._embedded import open_embedded_store


async def test_everything_works_after_script_flush(redis_eq: EntroQ, sync_redis: redis.Redis) -> None:
    await redis_eq.modify(inserts=[TaskData("f")])
    sync_redis.script_flush()
    task = await redis_eq.try_claim("f")
    assert task is not None
    sync_redis.script_flush()
    await redis_eq.modify(deletes=[task.as_id()])
    sync_redis.script_flush()
    assert await redis_eq.tasks("f") == []
    sync_redis.script_flush()
    assert await redis_eq.queue_stats() == []


async def test_readiness_ping_reloads_scripts(redis_eq: EntroQ, sync_redis: redis.Redis) -> None:
    from entroq_redis._scripts import script_sha

    sync_redis.script_flush()
    await redis_eq.backend.ping()  # type: ignore[attr-defined]
    assert all(sync_redis.script_exists(script_sha(name), script_sha(name)) for name in ("claim", "modify"))


async def test_keys_follow_the_documented_layout(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    (task,), _ = await redis_eq.modify(inserts=[TaskData("layout", id="k1")])
    await redis_eq.try_claim("layout", duration_ms=60_000)
    keys = {k.decode() for k in sync_redis.scan_iter(match="{" + namespace + "}:*")}
    prefix = "{" + namespace + "}:"
    assert keys == {
        prefix + "queues",
        prefix + "t:k1",
        prefix + "q:layout",
        prefix + "c:layout",
        prefix + "h:layout",
        prefix + "m:layout",
    }
    await redis_eq.modify(deletes=[(await redis_eq.tasks("layout"))[0].as_id()])
    assert not list(sync_redis.scan_iter(match="{" + namespace + "}:*")), "an empty namespace leaves no keys"
    del task


async def test_restart_on_same_data_dir_keeps_every_task(tmp_path: pathlib.Path) -> None:
    async with (
        open_embedded_store(tmp_path, fsync="always") as store,
        entroq_redis.connect(store.url) as eq,
    ):
        await eq.modify(inserts=[TaskData(f"q{i % 3}", value=b"%d" % i) for i in range(100)])
        await eq.try_claim(["q0", "q1"], duration_ms=60_000)
        before = sorted(
            await eq.tasks("q0") + await eq.tasks("q1") + await eq.tasks("q2"), key=lambda t: t.id
        )
    async with (
        open_embedded_store(tmp_path, fsync="always") as store,
        entroq_redis.connect(store.url) as eq,
    ):
        after = sorted(await eq.tasks("q0") + await eq.tasks("q1") + await eq.tasks("q2"), key=lambda t: t.id)
        stats = await eq.queue_stats()
    assert after == before
    assert sum(s.num_claimed for s in stats) == 1


async def test_kill_9_with_fsync_always_keeps_acknowledged_modifies(tmp_path: pathlib.Path) -> None:
    acknowledged: list[str] = []
    async with (
        open_embedded_store(tmp_path, fsync="always") as store,
        entroq_redis.connect(store.url) as eq,
    ):
        for i in range(50):
            inserted, _ = await eq.modify(inserts=[TaskData("k", value=b"%d" % i), TaskData("k2")])
            acknowledged += [t.id for t in inserted]
        store.kill()
    async with (
        open_embedded_store(tmp_path, fsync="always") as store,
        entroq_redis.connect(store.url) as eq,
    ):
        present = {t.id for t in await eq.tasks("k") + await eq.tasks("k2")}
    assert present == set(acknowledged)


async def test_evicting_store_is_refused_unless_allowed(tmp_path: pathlib.Path) -> None:
    async with open_embedded_store(tmp_path) as store:
        redis.Redis.from_url(store.url).config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(UnsafeStoreError, match="allkeys-lru"):
            async with entroq_redis.connect(store.url):
                pass
        async with entroq_redis.connect(store.url, allow_evicting_store=True) as eq:
            assert await eq.time() > 0


async def test_embedded_store_runs_with_aof_and_noeviction(tmp_path: pathlib.Path) -> None:
    async with open_embedded_store(tmp_path, fsync="always") as store:
        config = redis.Redis.from_url(store.url, decode_responses=True).config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "always"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["dir"] == str(tmp_path)


async def test_unsupported_url_is_rejected() -> None:
    with pytest.raises(entroq_redis.InvalidArgumentError, match="unsupported URL"):
        async with entroq_redis.connect("ftp://nowhere"):
            pass
