"""A member doc of a held doc set, named at the SET's version (lua/README.md section 6).

EntroQ 1.13's clients (PyPI entroq 0.15.0, its ``EntroQWorker._fix_versions``: "a doc has no
version of its own -- it carries its set's") name every doc they claimed through a set at
that set's version, because EntroQ's doc groups keep one version per group. This store
versions each doc and each set lock on its own, so modify.lua accepts a doc change, delete or
depend at either number: the doc's own version, or -- only while the caller holds the doc's
set (its current key) -- the set lock's current version. A write accepted through the set's
version gives the doc max(doc version, lock version) + 1, so once the lock moves on neither
number names the doc again.

Everything here runs on the real store through the library (the Redis backend), with a
second claimant for "held by someone else"; nothing-written checks compare every key of the
namespace with DUMP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

import entroq_redis
from entroq_redis import (
    DependencyError,
    Doc,
    DocChange,
    DocData,
    DocID,
    DocSet,
    EntroQ,
    TaskData,
)

HOUR_MS = 3_600_000


@pytest.fixture
async def other(store_url: str, namespace: str) -> AsyncIterator[EntroQ]:
    """A second claimant in the same namespace."""
    async with entroq_redis.connect(store_url, namespace=namespace) as client:
        yield client


def failures(error: DependencyError) -> list[tuple[str, str, str, str, int, int, str]]:
    return [
        (f.kind, f.reason, f.namespace, f.id, f.version, f.current_version, f.key) for f in error.doc_failures
    ]


def dump(sync_redis: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    return {key: sync_redis.dump(key) for key in sync_redis.scan_iter(match="{" + namespace + "}:*")}


async def member_at(eq: EntroQ, doc_id: str, key: str, own_version: int) -> Doc:
    """A doc of (``ns``, ``key``) brought to ``own_version`` by plain changes at its own version."""
    (doc,) = (await eq.modify(doc_inserts=[DocData("ns", id=doc_id, key=key, content=b"0")])).inserted_docs
    while doc.version < own_version:
        (doc,) = (
            await eq.modify(doc_changes=[doc.as_change(content=str(doc.version + 1).encode())])
        ).changed_docs
    return doc


async def held_set(eq: EntroQ, key: str, version: int) -> Doc:
    """The lock of (``ns``, ``key``), held by ``eq`` for an hour, at ``version`` (claim, then renewals)."""
    (lock,) = (await eq.claim_doc_sets([DocSet("ns", key, omit_members=True)], HOUR_MS)).sets
    while lock.version < version:
        (lock,) = await eq.renew_docs_for([lock], HOUR_MS)
    assert (lock.version, lock.claimant) == (version, eq.claimant_id)
    return lock


async def read(eq: EntroQ, doc_id: str) -> Doc:
    (doc,) = await eq.docs("ns", ids=[doc_id])
    return doc


# --- accepted while the caller holds the set -------------------------------------------------


@pytest.mark.parametrize(("own_version", "set_version"), [(0, 3), (5, 2)])
async def test_a_member_change_at_the_held_sets_version_gets_the_larger_version_plus_one(
    redis_eq: EntroQ, own_version: int, set_version: int
) -> None:
    await member_at(redis_eq, "m", "k", own_version)
    lock = await held_set(redis_eq, "k", set_version)
    assert own_version != lock.version
    (changed,) = (
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", lock.version, key="k", content=b"new")])
    ).changed_docs
    assert (changed.id, changed.version, changed.content) == ("m", max(own_version, set_version) + 1, b"new")
    assert changed.version > own_version and changed.version > lock.version
    assert await read(redis_eq, "m") == changed
    # The lock itself is untouched by a member write: same version, same holder.
    (still,) = await redis_eq.renew_docs_for([lock], HOUR_MS)
    assert still.version == lock.version + 1


async def test_the_own_version_still_names_a_member_of_a_held_set_and_adds_one(redis_eq: EntroQ) -> None:
    doc = await member_at(redis_eq, "m", "k", 1)
    await held_set(redis_eq, "k", 4)
    (changed,) = (await redis_eq.modify(doc_changes=[doc.as_change(content=b"x")])).changed_docs
    assert changed.version == doc.version + 1 == 2


async def test_a_lease_change_and_a_delete_at_the_held_sets_version(redis_eq: EntroQ) -> None:
    await member_at(redis_eq, "a", "k", 0)
    await member_at(redis_eq, "b", "k", 2)
    lock = await held_set(redis_eq, "k", 1)
    (renewed,) = (
        await redis_eq.modify(
            doc_changes=[DocChange("ns", "a", lock.version, delay_ms=HOUR_MS, mode="lease")]
        )
    ).changed_docs
    assert (renewed.version, renewed.claimant, renewed.content) == (2, redis_eq.claimant_id, b"0")
    await redis_eq.modify(doc_deletes=[DocID("ns", "b", lock.version)])
    assert await redis_eq.docs("ns", ids=["b"]) == []


async def test_a_depend_at_the_held_sets_version_writes_nothing(
    redis_eq: EntroQ, other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    doc = await member_at(redis_eq, "m", "k", 2)
    lock = await held_set(redis_eq, "k", 1)
    before = dump(sync_redis, namespace)
    result = await redis_eq.modify(doc_depends=[DocID("ns", "m", lock.version)])
    assert (result.inserted_docs, result.changed_docs) == ([], [])
    assert dump(sync_redis, namespace) == before
    # The same depend with a task insert: the task is written, the doc is not.
    await redis_eq.modify(inserts=[TaskData("q", value=b"t")], doc_depends=[DocID("ns", "m", lock.version)])
    assert await read(redis_eq, "m") == doc
    # Not through a set held by someone else (nor, below, one not held at all).
    await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])
    (theirs,) = (await other.claim_doc_sets([DocSet("ns", "k", omit_members=True)], HOUR_MS)).sets
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_depends=[DocID("ns", "m", theirs.version)])
    assert failures(caught.value) == [("DEPEND", "mismatch", "ns", "m", theirs.version, 2, "k")]


# --- refused unless the caller holds the set now ---------------------------------------------


async def test_refused_when_another_claimant_holds_the_set(
    redis_eq: EntroQ, other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await member_at(redis_eq, "m", "k", 2)
    theirs = await held_set(other, "k", 1)
    before = dump(sync_redis, namespace)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(
            doc_changes=[DocChange("ns", "m", theirs.version, key="k", content=b"mine")],
        )
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", 1, 2, "k")]
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_deletes=[DocID("ns", "m", theirs.version)])
    assert failures(caught.value) == [("DELETE", "mismatch", "ns", "m", 1, 2, "k")]
    assert dump(sync_redis, namespace) == before
    # The holder itself is accepted at that version.
    (changed,) = (
        await other.modify(doc_changes=[DocChange("ns", "m", theirs.version, key="k", content=b"theirs")])
    ).changed_docs
    assert changed.version == 3


async def test_refused_once_the_set_is_released(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", 2)
    (released,) = (await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])).changed_docs
    assert (released.version, released.claimant) == (3, "")
    before = dump(sync_redis, namespace)
    for version in (lock.version, released.version):
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(doc_changes=[DocChange("ns", "m", version, key="k", content=b"late")])
        assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", version, 0, "k")]
    assert dump(sync_redis, namespace) == before


async def test_refused_when_the_callers_lock_has_run_out(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await member_at(redis_eq, "m", "k", 0)
    # A zero-length claim: the lock names the caller but its at_ms is the claim's own now, so
    # it is not held at any later modify (the same state as a lease that ran out).
    (lock,) = (await redis_eq.claim_doc_sets([DocSet("ns", "k", omit_members=True)], 0)).sets
    assert (lock.version, lock.claimant) == (1, redis_eq.claimant_id)
    before = dump(sync_redis, namespace)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(
            doc_changes=[DocChange("ns", "m", lock.version, key="k", content=b"late")],
            doc_depends=[DocID("ns", "m", lock.version)],
        )
    assert failures(caught.value) == [
        ("CHANGE", "mismatch", "ns", "m", 1, 0, "k"),
        ("DEPEND", "mismatch", "ns", "m", 1, 0, "k"),
    ]
    assert dump(sync_redis, namespace) == before


async def test_a_set_version_only_names_the_docs_of_that_set(redis_eq: EntroQ) -> None:
    await member_at(redis_eq, "elsewhere", "other-key", 0)
    await member_at(redis_eq, "keyless", "", 0)
    lock = await held_set(redis_eq, "k", 2)
    for doc_id in ("elsewhere", "keyless"):
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(doc_changes=[DocChange("ns", doc_id, lock.version, key="k")])
        assert [f[:4] for f in failures(caught.value)] == [("CHANGE", "mismatch", "ns", doc_id)]


# --- the fence: no replay --------------------------------------------------------------------


@pytest.mark.parametrize("release_first", [False, True])
async def test_the_commit_with_the_sets_release_applies_once_and_its_retry_is_refused(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str, release_first: bool
) -> None:
    """0.15.0's worker commit: the member change and the set's release, both at the set's version.

    In either order: the checks see the lock as it was before the call.
    """
    await member_at(redis_eq, "m", "k", 1)
    lock = await held_set(redis_eq, "k", 3)
    member_change = DocChange("ns", "m", lock.version, key="k", content=b"done")
    release = DocChange("ns", "", lock.version, key="k", mode="lease")
    doc_changes = [release, member_change] if release_first else [member_change, release]
    changed = {d.id: d for d in (await redis_eq.modify(doc_changes=doc_changes)).changed_docs}
    assert (changed[""].version, changed[""].claimant) == (4, "")
    assert (changed["m"].version, changed["m"].content) == (4, b"done")  # max(1, 3) + 1
    # The same commit again, the member change alone, and the member named at the version it
    # had before: each refused with the doc's current version, and nothing written.
    before = dump(sync_redis, namespace)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=doc_changes)
    assert sorted(failures(caught.value)) == [
        ("CHANGE", "mismatch", "ns", "", 3, 4, "k"),
        ("CHANGE", "mismatch", "ns", "m", 3, 4, "k"),
    ]
    for version in (3, 1):
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(doc_changes=[DocChange("ns", "m", version, key="k", content=b"done")])
        assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", version, 4, "k")]
    assert dump(sync_redis, namespace) == before


async def test_a_retry_is_refused_after_the_set_is_claimed_again(redis_eq: EntroQ) -> None:
    """Even by the same claimant: the re-claim moved the lock past the version the retry names."""
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", 1)
    commit = {
        "doc_changes": [
            DocChange("ns", "m", lock.version, key="k", content=b"once"),
            DocChange("ns", "", lock.version, key="k", mode="lease"),
        ]
    }
    await redis_eq.modify(**commit)  # type: ignore[arg-type]
    again = await held_set(redis_eq, "k", 3)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(**commit)  # type: ignore[arg-type]
    assert sorted(failures(caught.value)) == [
        ("CHANGE", "mismatch", "ns", "", 1, again.version, "k"),
        ("CHANGE", "mismatch", "ns", "m", 1, 2, "k"),
    ]
    assert (await read(redis_eq, "m")).content == b"once"


async def test_a_commit_that_renews_the_set_leaves_it_held_at_its_next_version(redis_eq: EntroQ) -> None:
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", 2)
    changed = (
        await redis_eq.modify(
            doc_changes=[
                DocChange("ns", "m", lock.version, key="k", content=b"1"),
                DocChange("ns", "", lock.version, key="k", delay_ms=HOUR_MS, mode="lease"),
            ]
        )
    ).changed_docs
    assert [(d.id, d.version, d.claimant) for d in changed] == [("m", 3, ""), ("", 3, redis_eq.claimant_id)]
    # Held at 3 now: the member (own version 3 too) is named at 3 either way, +1.
    (changed_again,) = (
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", 3, key="k", content=b"2")])
    ).changed_docs
    assert changed_again.version == 4
    # The old lock version 2 names nothing any more.
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", 2, key="k", content=b"stale")])
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", 2, 4, "k")]


# --- moving a doc out of its set -------------------------------------------------------------


async def test_a_member_moved_to_another_key_at_its_old_sets_version(redis_eq: EntroQ, other: EntroQ) -> None:
    await member_at(redis_eq, "m", "old", 0)
    await member_at(redis_eq, "n", "old", 0)
    lock = await held_set(redis_eq, "old", 2)
    # The new key's set held by another: CLAIM naming that set, as for a move at the own version.
    theirs = await held_set(other, "new", 1)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", lock.version, key="new")])
    assert failures(caught.value) == [("CLAIM", "claimed", "ns", "", 1, 1, "new")]
    # A free new key: the move is accepted through the old set's version.
    (moved,) = (
        await redis_eq.modify(doc_changes=[DocChange("ns", "n", lock.version, key="free")])
    ).changed_docs
    assert (moved.key, moved.version) == ("free", 3)
    # Holding only the NEW key's set does not name a doc that is not in it yet.
    await other.modify(doc_changes=[theirs.as_change(at=None, mode="lease")])
    mine = await held_set(redis_eq, "new", 4)  # released at 2, claimed (3), renewed (4)
    await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", mine.version, key="new")])
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", 4, 0, "old")]
