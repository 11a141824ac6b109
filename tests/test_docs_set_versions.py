"""A member doc of a held doc set, named at the SET's version (lua/README.md section 6).

EntroQ 1.13's clients (PyPI entroq 0.15.0, its ``EntroQWorker._fix_versions``: "a doc has no
version of its own -- it carries its set's") name every doc they claimed through a set at
that set's version, because EntroQ's doc groups keep one version per group. This store
versions each doc and each set lock on its own, so modify.lua accepts a doc change, delete or
depend at either number: the doc's own version, or -- only while the caller holds the doc's
set (its current key) and the doc is below the lock's version -- the set lock's current
version.

The two counters share one range of numbers, so within a set that has a lock record they are
kept in one order: a lock write goes above every member's version, a member write above the
lock's. A member is then below its lock's version exactly when nobody wrote it since the lock
was written, and no stale version -- a doc's or a lock's -- ever names a doc again.

Everything here runs on the real store through the library (the Redis backend), with a
second claimant for "held by someone else"; nothing-written checks compare every key of the
namespace with DUMP.
"""

from __future__ import annotations

import random
import struct
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
from entroq_redis._keys import Keys

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
    """A doc of (``ns``, ``key``) brought to ``own_version`` by plain changes at its own version.

    Each change adds exactly 1 only while the key's set was never claimed.
    """
    (doc,) = (await eq.modify(doc_inserts=[DocData("ns", id=doc_id, key=key, content=b"0")])).inserted_docs
    while doc.version < own_version:
        (doc,) = (
            await eq.modify(doc_changes=[doc.as_change(content=str(doc.version + 1).encode())])
        ).changed_docs
    assert doc.version == own_version
    return doc


async def held_set(eq: EntroQ, key: str, renewals: int = 0) -> Doc:
    """The lock of (``ns``, ``key``), claimed by ``eq`` for an hour, then renewed ``renewals`` times."""
    (lock,) = (await eq.claim_doc_sets([DocSet("ns", key, omit_members=True)], HOUR_MS)).sets
    for _ in range(renewals):
        version = lock.version
        (lock,) = await eq.renew_docs_for([lock], HOUR_MS)
        assert lock.version > version
    assert lock.claimant == eq.claimant_id
    return lock


async def read(eq: EntroQ, doc_id: str) -> Doc:
    (doc,) = await eq.docs("ns", ids=[doc_id])
    return doc


# --- the two counters of a set, in one order ---------------------------------------------------


async def test_a_sets_first_claim_goes_above_every_member(redis_eq: EntroQ) -> None:
    for doc_id, own_version in (("a", 0), ("b", 5), ("c", 2)):
        await member_at(redis_eq, doc_id, "k", own_version)
    (lock, empty) = (
        await redis_eq.claim_doc_sets([DocSet("ns", "k", omit_members=True), DocSet("ns", "none")], HOUR_MS)
    ).sets
    assert (lock.version, empty.version) == (6, 1)
    # Renewals with no member write in between add 1, as before.
    (renewed,) = await redis_eq.renew_docs_for([lock], HOUR_MS)
    assert renewed.version == 7


async def test_a_lock_write_goes_above_the_members_written_since(redis_eq: EntroQ, other: EntroQ) -> None:
    """Member changes (at their own version), key claims and moves in all count; so does a later claim."""
    a = await member_at(redis_eq, "a", "k", 0)
    lock = await held_set(redis_eq, "k")
    assert lock.version == 1
    # The holder changes a member at its own version: the doc goes above the lock ...
    (a,) = (await redis_eq.modify(doc_changes=[a.as_change(content=b"1")])).changed_docs
    assert a.version == lock.version + 1 == 2
    # ... and the renewal above the doc, without reading it.
    (lock,) = await redis_eq.renew_docs_for([lock], HOUR_MS)
    assert lock.version == a.version + 1 == 3
    # A key claim by the holder is a member write too.
    (a,) = await redis_eq.claim_docs("ns", "k", HOUR_MS)
    assert a.version == lock.version + 1 == 4
    # A doc moved in from a key never claimed goes above the lock as well.
    b = await member_at(redis_eq, "b", "plain", 9)
    (b,) = (await redis_eq.modify(doc_changes=[b.as_change(key="k")])).changed_docs
    assert b.version == 10
    (released,) = (await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])).changed_docs
    assert (released.version, released.claimant) == (11, "")
    # The members are changed while nobody holds the set; the next claim goes above them.
    (a,) = (await redis_eq.modify(doc_changes=[a.as_change(at=None, content=b"2")])).changed_docs
    assert a.version == 12
    (theirs,) = (await other.claim_doc_sets([DocSet("ns", "k", omit_members=True)], HOUR_MS)).sets
    assert theirs.version == 13


async def test_a_doc_moved_out_of_a_claimed_set_goes_above_its_lock(redis_eq: EntroQ) -> None:
    doc = await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", renewals=2)
    assert lock.version == 3
    (moved,) = (await redis_eq.modify(doc_changes=[doc.as_change(key="plain")])).changed_docs
    assert (moved.key, moved.version) == ("plain", 4)
    # Out of every claimed set now: plain + 1 again.
    (changed,) = (await redis_eq.modify(doc_changes=[moved.as_change(content=b"x")])).changed_docs
    assert changed.version == 5
    # The old set's next lock write goes above the version the doc left with.
    (renewed,) = await redis_eq.renew_docs_for([lock], HOUR_MS)
    assert renewed.version == 5


async def test_docs_of_keys_never_claimed_as_sets_add_one(redis_eq: EntroQ) -> None:
    """Protocol 1 (EntroQ's "every change or claim adds 1") wherever no set was ever claimed."""
    keyless = await member_at(redis_eq, "keyless", "", 3)
    keyed = await member_at(redis_eq, "keyed", "k", 3)
    (claimed,) = await redis_eq.claim_docs("ns", "k", HOUR_MS)
    assert claimed.version == keyed.version + 1 == 4
    items = [claimed.as_change(mode="lease", delay_ms=HOUR_MS), keyless.as_change()]
    changed, keyless = (await redis_eq.modify(doc_changes=items)).changed_docs
    assert (changed.version, keyless.version) == (5, 4)
    # A claim of another key's set does not change that.
    await held_set(redis_eq, "other")
    (changed,) = (await redis_eq.modify(doc_changes=[changed.as_change(content=b"y")])).changed_docs
    assert changed.version == 6


async def test_a_doc_inserted_into_a_held_set_starts_at_0_and_is_named_at_the_sets_version(
    redis_eq: EntroQ,
) -> None:
    lock = await held_set(redis_eq, "k", renewals=1)
    (doc,) = (await redis_eq.modify(doc_inserts=[DocData("ns", id="new", key="k")])).inserted_docs
    assert doc.version == 0 < lock.version
    (changed,) = (
        await redis_eq.modify(doc_changes=[DocChange("ns", "new", lock.version, key="k", content=b"1")])
    ).changed_docs
    assert changed.version == lock.version + 1


# --- accepted while the caller holds the set -------------------------------------------------


@pytest.mark.parametrize(("own_version", "renewals"), [(0, 2), (5, 0)])
async def test_a_member_change_at_the_held_sets_version_goes_above_it(
    redis_eq: EntroQ, own_version: int, renewals: int
) -> None:
    await member_at(redis_eq, "m", "k", own_version)
    lock = await held_set(redis_eq, "k", renewals)
    assert lock.version == own_version + 1 + renewals
    (changed,) = (
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", lock.version, key="k", content=b"new")])
    ).changed_docs
    assert (changed.id, changed.version, changed.content) == ("m", lock.version + 1, b"new")
    assert await read(redis_eq, "m") == changed
    # The lock's version is untouched by a member write; its next write goes above the member.
    (renewed,) = await redis_eq.renew_docs_for([lock], HOUR_MS)
    assert renewed.version == changed.version + 1


async def test_the_own_version_still_names_a_member_of_a_held_set(redis_eq: EntroQ) -> None:
    doc = await member_at(redis_eq, "m", "k", 1)
    lock = await held_set(redis_eq, "k", renewals=2)
    assert lock.version == 4
    (changed,) = (await redis_eq.modify(doc_changes=[doc.as_change(content=b"x")])).changed_docs
    assert changed.version == lock.version + 1


async def test_a_lease_change_and_a_delete_at_the_held_sets_version(redis_eq: EntroQ) -> None:
    await member_at(redis_eq, "a", "k", 0)
    await member_at(redis_eq, "b", "k", 2)
    lock = await held_set(redis_eq, "k")
    assert lock.version == 3
    (renewed,) = (
        await redis_eq.modify(
            doc_changes=[DocChange("ns", "a", lock.version, delay_ms=HOUR_MS, mode="lease")]
        )
    ).changed_docs
    assert (renewed.version, renewed.claimant, renewed.content) == (4, redis_eq.claimant_id, b"0")
    # Writing one member does not change what the set's version names for the others.
    await redis_eq.modify(doc_deletes=[DocID("ns", "b", lock.version)])
    assert await redis_eq.docs("ns", ids=["b"]) == []


async def test_a_depend_at_the_held_sets_version_writes_nothing(
    redis_eq: EntroQ, other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    doc = await member_at(redis_eq, "m", "k", 2)
    lock = await held_set(redis_eq, "k")
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
    theirs = await held_set(other, "k")
    assert theirs.version == 3
    before = dump(sync_redis, namespace)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(
            doc_changes=[DocChange("ns", "m", theirs.version, key="k", content=b"mine")],
        )
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", 3, 2, "k")]
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_deletes=[DocID("ns", "m", theirs.version)])
    assert failures(caught.value) == [("DELETE", "mismatch", "ns", "m", 3, 2, "k")]
    assert dump(sync_redis, namespace) == before
    # The holder itself is accepted at that version.
    (changed,) = (
        await other.modify(doc_changes=[DocChange("ns", "m", theirs.version, key="k", content=b"theirs")])
    ).changed_docs
    assert changed.version == 4


async def test_refused_once_the_set_is_released(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", renewals=1)
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
    lock = await held_set(redis_eq, "k", renewals=1)
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

    In either order: the checks see the lock as it was before the call, and the member writes
    are applied before the lock's, which goes above them.
    """
    await member_at(redis_eq, "m", "k", 1)
    lock = await held_set(redis_eq, "k", renewals=1)
    assert lock.version == 3
    member_change = DocChange("ns", "m", lock.version, key="k", content=b"done")
    release = DocChange("ns", "", lock.version, key="k", mode="lease")
    doc_changes = [release, member_change] if release_first else [member_change, release]
    changed = {d.id: d for d in (await redis_eq.modify(doc_changes=doc_changes)).changed_docs}
    assert (changed["m"].version, changed["m"].content) == (4, b"done")  # max(1, 3) + 1
    assert (changed[""].version, changed[""].claimant) == (5, "")  # max(3, 4) + 1
    # The same commit again, the member change alone, and the member named at the version it
    # had before: each refused with the doc's current version, and nothing written.
    before = dump(sync_redis, namespace)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=doc_changes)
    assert sorted(failures(caught.value)) == [
        ("CHANGE", "mismatch", "ns", "", 3, 5, "k"),
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
    lock = await held_set(redis_eq, "k")
    commit = {
        "doc_changes": [
            DocChange("ns", "m", lock.version, key="k", content=b"once"),
            DocChange("ns", "", lock.version, key="k", mode="lease"),
        ]
    }
    await redis_eq.modify(**commit)  # type: ignore[arg-type]
    again = await held_set(redis_eq, "k", renewals=1)
    assert again.version == 5  # released at 3 (above the member's 2), claimed (4), renewed (5)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(**commit)  # type: ignore[arg-type]
    assert sorted(failures(caught.value)) == [
        ("CHANGE", "mismatch", "ns", "", 1, again.version, "k"),
        ("CHANGE", "mismatch", "ns", "m", 1, 2, "k"),
    ]
    assert (await read(redis_eq, "m")).content == b"once"


async def test_a_commit_that_renews_the_set_leaves_it_held_at_its_next_version(redis_eq: EntroQ) -> None:
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", renewals=1)
    assert lock.version == 2
    changed = (
        await redis_eq.modify(
            doc_changes=[
                DocChange("ns", "m", lock.version, key="k", content=b"1"),
                DocChange("ns", "", lock.version, key="k", delay_ms=HOUR_MS, mode="lease"),
            ]
        )
    ).changed_docs
    assert [(d.id, d.version, d.claimant) for d in changed] == [("m", 3, ""), ("", 4, redis_eq.claimant_id)]
    # Held at 4 now, the member (3, written before the renewal) is named at 4: + 1 above it.
    (changed_again,) = (
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", 4, key="k", content=b"2")])
    ).changed_docs
    assert changed_again.version == 5
    # Neither the old lock version 2 nor the new one 4 names it any more.
    for version in (2, 4):
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(doc_changes=[DocChange("ns", "m", version, key="k", content=b"stale")])
        assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", version, 5, "k")]


# --- moving a doc out of its set -------------------------------------------------------------


async def test_a_member_moved_to_another_key_at_its_old_sets_version(redis_eq: EntroQ, other: EntroQ) -> None:
    await member_at(redis_eq, "m", "old", 0)
    await member_at(redis_eq, "n", "old", 0)
    lock = await held_set(redis_eq, "old", renewals=1)
    assert lock.version == 2
    # The new key's set held by another: CLAIM naming that set, as for a move at the own version.
    theirs = await held_set(other, "new")
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
    mine = await held_set(redis_eq, "new", renewals=1)  # released at 2, claimed (3), renewed (4)
    assert mine.version == 4
    await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=[DocChange("ns", "m", mine.version, key="new")])
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", 4, 0, "old")]


# --- stale versions the two counters could once confuse (now refused) -------------------------
#
# Doc versions and lock versions are separate counters over one range of numbers. These are the
# stale commits lua/README.md once listed as unfenced; each is refused now that the counters of
# a set are ordered (section 6, *Why no stale version commits*).


async def test_a_change_prepared_at_the_sets_version_is_refused_when_the_doc_later_climbs_past_it(
    redis_eq: EntroQ, other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    """Prepared through the set at v, never applied; the doc's own version never equals v later."""
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", renewals=2)
    prepared = DocChange("ns", "m", lock.version, key="k", content=b"stale")
    await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])
    # Another claimant changes the doc at its own version, past v; after every change the
    # prepared one is refused (before the counters were ordered it was accepted at the change
    # that brought the doc to exactly v).
    doc = await read(other, "m")
    while doc.version <= lock.version + 2:
        (doc,) = (await other.modify(doc_changes=[doc.as_change(content=b"theirs")])).changed_docs
        assert doc.version != lock.version
        before = dump(sync_redis, namespace)
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(doc_changes=[prepared])
        assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", lock.version, doc.version, "k")]
        assert dump(sync_redis, namespace) == before


async def test_a_change_prepared_at_the_docs_own_version_is_refused_through_a_later_hold_of_its_set(
    redis_eq: EntroQ, other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    """Prepared at the doc's own version d, overtaken by another write; the set's lock never reaches d."""
    doc = await member_at(redis_eq, "m", "k", 2)
    prepared = doc.as_change(content=b"stale")
    await other.modify(doc_changes=[doc.as_change(content=b"theirs")])
    # The caller claims the set and renews it past d; at every lock version the prepared change
    # is refused (before, it was accepted through the set once the lock stood at exactly d).
    (lock,) = (await redis_eq.claim_doc_sets([DocSet("ns", "k", omit_members=True)], HOUR_MS)).sets
    while True:
        assert lock.version != doc.version
        before = dump(sync_redis, namespace)
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(doc_changes=[prepared])
        overtaken = ("CHANGE", "mismatch", "ns", "m", doc.version, doc.version + 1, "k")
        assert failures(caught.value) == [overtaken]
        assert dump(sync_redis, namespace) == before
        if lock.version > doc.version + 1:
            break
        (lock,) = await redis_eq.renew_docs_for([lock], HOUR_MS)


async def test_the_holders_own_repeat_at_the_sets_version_is_refused(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    """Still holding the lock at v: after one write through v the doc is above v, so v names it no more."""
    await member_at(redis_eq, "m", "k", 0)
    lock = await held_set(redis_eq, "k", renewals=1)
    change = DocChange("ns", "m", lock.version, key="k", content=b"once")
    (written,) = (await redis_eq.modify(doc_changes=[change])).changed_docs
    assert written.version > lock.version
    before = dump(sync_redis, namespace)
    for items in (
        {"doc_changes": [change]},
        {"doc_changes": [DocChange("ns", "m", lock.version, delay_ms=HOUR_MS, mode="lease")]},
        {"doc_deletes": [DocID("ns", "m", lock.version)]},
        {"doc_depends": [DocID("ns", "m", lock.version)]},
    ):
        with pytest.raises(DependencyError) as caught:
            await redis_eq.modify(**items)  # type: ignore[arg-type]
        assert [f[:2] + f[4:6] for f in failures(caught.value)] == [
            (caught.value.doc_failures[0].kind, "mismatch", lock.version, written.version)
        ]
    assert dump(sync_redis, namespace) == before
    # The lock is still held at v, and the doc is named at its own version as usual.
    (again,) = (await redis_eq.modify(doc_changes=[written.as_change(content=b"twice")])).changed_docs
    assert again.version == written.version + 1


async def test_a_change_prepared_before_the_holder_moved_the_doc_into_its_set_is_refused(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    """The doc's own version d before it joined the set equals the held lock's version: still refused."""
    lock = await held_set(redis_eq, "k")
    doc = await member_at(redis_eq, "m", "elsewhere", lock.version)  # a key never claimed: plain + 1
    assert doc.version == lock.version
    prepared = doc.as_change(key="k", content=b"stale")
    (moved,) = (await redis_eq.modify(doc_changes=[doc.as_change(key="k", content=b"moved")])).changed_docs
    assert moved.version > lock.version
    before = dump(sync_redis, namespace)
    with pytest.raises(DependencyError) as caught:
        await redis_eq.modify(doc_changes=[prepared])
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "m", lock.version, moved.version, "k")]
    assert dump(sync_redis, namespace) == before


# --- a random walk: no retired name ever names a doc again --------------------------------------


def lock_state(sync_redis: redis.Redis, namespace: str, key: str) -> tuple[int, str] | None:
    """(version, holder or "") of the set (``ns``, ``key``), read from its record
    (lua/README.md section 3)."""
    record = sync_redis.get(Keys(namespace).doc_set("ns", key).encode())
    if record is None:
        return None
    format_version, version, _highest, _at, length = struct.unpack_from(">BiiqH", record)
    holder = record[struct.calcsize(">BiiqH") :]
    assert (format_version, len(holder)) == (4, length)
    return version, holder.decode()


@pytest.mark.parametrize("seed", range(6))
async def test_a_name_that_stopped_naming_a_doc_never_names_it_again(
    redis_eq: EntroQ, other: EntroQ, sync_redis: redis.Redis, namespace: str, seed: int
) -> None:
    """Two claimants claim, renew and release sets, claim keys, change and move docs at the names
    they hold, at random. After every step, for each claimant and doc, the names that stop naming
    the doc -- its own version, or the held lock's version while the doc is below it -- never name
    it again, a doc's version never equals its set's lock version, and the store refuses a
    retired name whenever one is tried."""
    rng = random.Random(seed)
    clients = {"A": redis_eq, "B": other}
    claimant = {name: client.claimant_id for name, client in clients.items()}
    set_keys = ["S", "T"]
    doc_ids = ["d0", "d1", "d2", "d3"]
    for i, doc_id in enumerate(doc_ids):
        await redis_eq.modify(doc_inserts=[DocData("ns", id=doc_id, key=["S", "T", "U", ""][i])])
    locks: dict[tuple[str, str], Doc] = {}  # (client, set key) -> the lock it holds
    retired: dict[tuple[str, str], set[int]] = {(c, d): set() for c in clients for d in doc_ids}
    valid_before: dict[tuple[str, str], set[int]] = {(c, d): set() for c in clients for d in doc_ids}
    newest_retired: list[tuple[str, str, int]] = []
    refusals = 0

    async def valid_names() -> dict[tuple[str, str], set[int]]:
        docs = {d.id: d for d in await redis_eq.docs("ns", ids=doc_ids)}
        lock_of = {key: lock_state(sync_redis, namespace, key) for key in set_keys}
        names: dict[tuple[str, str], set[int]] = {}
        for doc_id, doc in docs.items():
            lock = lock_of.get(doc.key)
            if lock is not None:
                assert doc.version != lock[0], (doc, lock)
            for c in clients:
                names[(c, doc_id)] = {doc.version}
                if lock is not None and lock[1] == claimant[c] and doc.version < lock[0]:
                    names[(c, doc_id)].add(lock[0])
        return names

    for _ in range(120):
        c = rng.choice(list(clients))
        eq = clients[c]
        action = rng.choice(["claim", "renew", "release", "key_claim", "change", "change", "stale"])
        key = rng.choice(set_keys)
        try:
            if action == "claim" and (c, key) not in locks:
                (locks[(c, key)],) = (await eq.claim_doc_sets([DocSet("ns", key)], HOUR_MS)).sets
            elif action == "renew" and (c, key) in locks:
                (locks[(c, key)],) = await eq.renew_docs_for([locks[(c, key)]], HOUR_MS)
            elif action == "release" and (c, key) in locks:
                await eq.modify(doc_changes=[locks.pop((c, key)).as_change(at=None, mode="lease")])
            elif action == "key_claim":
                await eq.claim_docs("ns", key, 0)
            elif action == "change":
                doc_id = rng.choice(doc_ids)
                name = rng.choice(sorted((await valid_names())[(c, doc_id)]))
                new_key = rng.choice(["S", "T", "U", "", None])
                if new_key is None:
                    change = DocChange("ns", doc_id, name, mode="lease")
                else:
                    change = DocChange("ns", doc_id, name, key=new_key, content=str(rng.random()).encode())
                await eq.modify(doc_changes=[change])
            elif action == "stale":
                # Half the time one of the names this claimant lost last (the likeliest to be
                # mistaken for a current one), else any it ever lost.
                candidates = [(d, n) for (c2, d, n) in newest_retired if c2 == c][-3:]
                if not candidates or rng.random() < 0.5:
                    candidates = sorted((d, n) for (c2, d), lost in retired.items() if c2 == c for n in lost)
                if candidates:
                    doc_id, name = rng.choice(candidates)
                    with pytest.raises(DependencyError) as caught:
                        await eq.modify(doc_changes=[DocChange("ns", doc_id, name, mode="lease")])
                    assert [(f.kind, f.reason) for f in caught.value.doc_failures] == [("CHANGE", "mismatch")]
                    refusals += 1
        except DependencyError as error:
            # Held by the other claimant: the only refusal a current name may get.
            assert {f.kind for f in error.doc_failures} == {"CLAIM"}, (action, error)
            if action == "renew":
                locks.pop((c, key))
        names = await valid_names()
        for pair, now_valid in names.items():
            assert not (now_valid & retired[pair]), (pair, now_valid, retired[pair])
            lost = valid_before[pair] - now_valid
            retired[pair] |= lost
            newest_retired.extend((*pair, n) for n in sorted(lost))
            valid_before[pair] = now_valid
    assert refusals > 0
    assert sum(len(r) for r in retired.values()) > 10
