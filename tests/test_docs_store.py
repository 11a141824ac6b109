"""The document store's reading and claiming scripts on a real store.

The store: docs/design.md 2.14, docs/reference/entroq-v1-grpc-and-docs.md 4.

docs.lua (listing by key range or IDs), claim_docs.lua (every doc of one key, all or
nothing), claim_doc_sets.lua (set locks, task_to_match, omit_members) and namespaces.lua
(doc namespace stats), through the library's Redis backend. Docs get into the store through
modify.lua's doc items, as they do in production; the raw client only inspects the store
(record keys, byte for byte) and calls a script directly where the library would refuse the
input before the store sees it.
"""

from __future__ import annotations

import dataclasses
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
    InvalidArgumentError,
    StoreError,
    TaskData,
    TaskID,
)
from entroq_redis._codec import raw
from entroq_redis._keys import Keys
from entroq_redis._scripts import script_source

LONG_LEASE_MS = 600_000


@pytest.fixture
async def redis_other(store_url: str, namespace: str) -> AsyncIterator[EntroQ]:
    """A second claimant on the same namespace."""
    async with entroq_redis.connect(store_url, namespace=namespace) as client:
        yield client


def store_state(sync_redis: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of the namespace with its serialized value, to prove nothing was written."""
    return {
        key: sync_redis.dump(key) for key in sync_redis.scan_iter(match="{" + namespace + "}:*", count=1000)
    }


def run_script(sync_redis: redis.Redis, namespace: str, name: str, *args: str | bytes | int) -> object:
    keys = Keys(namespace)
    return sync_redis.eval(
        script_source(name), 1, keys.queue_index, keys.prefix, entroq_redis.CONTRACT_VERSION, *args
    )


async def insert_docs(eq: EntroQ, docs: list[DocData]) -> list[Doc]:
    inserted: list[Doc] = []
    for start in range(0, len(docs), 1000):
        inserted += (await eq.modify(doc_inserts=docs[start : start + 1000])).inserted_docs
    return inserted


def sort_key(doc: Doc) -> tuple[bytes, bytes, bytes]:
    return raw(doc.key), raw(doc.secondary_key), raw(doc.id)


# --- docs.lua: listing ----------------------------------------------------------------------

# Names no escaping scheme may confuse: NUL, a raw 0xFF byte (surrogateescape), U+00FF (UTF-8
# c3 bf), the key layout's own separators, and lengths past 256 bytes.
HOSTILE = [
    "",
    "\x00",
    "\x00\x00",
    "a\x00b",
    "a",
    "a\x01",
    "\udcff",
    "\udcff\x00",
    "\xff",
    "{",
    "}",
    ":",
    "{x}:d:",
    "3:abc",
    "k" * 300,
    "k" * 300 + "\x00",
]


async def test_listing_orders_hostile_names_byte_for_byte(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    doc_namespace = "n\x00{s}:\udcff" + "s" * 300
    docs = []
    for i, key in enumerate(HOSTILE):
        for j, secondary in enumerate(HOSTILE[::3]):
            doc_id = f"{i}:{j}\x00" + ("\udcff" if i % 2 else "{}") + "i" * (200 if j == 1 else 0)
            docs.append(DocData(doc_namespace, doc_id, key, secondary, f"{i}/{j}".encode() + b"\x00\xff"))
    inserted = await insert_docs(redis_eq, docs)
    assert len(inserted) == len(docs)

    listed = await redis_eq.docs(doc_namespace)
    assert [sort_key(d) for d in listed] == sorted(sort_key(d) for d in inserted)
    by_id = {d.id: d for d in inserted}
    for doc in listed:
        assert doc == by_id[doc.id]
        original = next(d for d in docs if d.id == doc.id)
        assert (raw(doc.key), raw(doc.secondary_key), doc.content) == (
            raw(original.key),
            raw(original.secondary_key),
            original.content,
        )
        # The record sits under the length-prefixed doc namespace and the raw ID bytes.
        record_key = Keys(namespace).doc(doc_namespace, doc.id)
        assert sync_redis.exists(raw(record_key)) == 1
    # A doc namespace that is a prefix of another (or shares its bytes) sees nothing.
    assert await redis_eq.docs(doc_namespace[:-1]) == []
    assert await redis_eq.docs(doc_namespace + "s") == []


async def test_key_range_is_half_open(redis_eq: EntroQ) -> None:
    keys = ["", "a", "b", "b\x00", "b\x00\x00", "ba", "b\udcff", "c", "c\x00"]
    await insert_docs(redis_eq, [DocData("r", f"id{i}", key, "s") for i, key in enumerate(keys)])

    async def keys_in(start: str, end: str) -> list[str]:
        return [d.key for d in await redis_eq.docs("r", key_start=start, key_end=end)]

    assert await keys_in("", "") == keys
    assert await keys_in("b", "c") == ["b", "b\x00", "b\x00\x00", "ba", "b\udcff"]
    assert await keys_in("b", "b\x00") == ["b"]
    assert await keys_in("b\x00", "ba") == ["b\x00", "b\x00\x00"]
    assert await keys_in("", "b") == ["", "a"]
    assert await keys_in("c", "") == ["c", "c\x00"]
    assert await keys_in("c\x00\x00", "") == []
    assert await keys_in("c", "b") == []  # end before start: empty
    assert await keys_in("b", "b") == []


async def test_secondary_key_and_id_order_within_a_key(redis_eq: EntroQ) -> None:
    items = [("k", "2", "x"), ("k", "1", "z"), ("k", "1", "y"), ("k", "1\x00", "a"), ("j", "9", "b")]
    await insert_docs(redis_eq, [DocData("o", i, k, s) for k, s, i in items])
    listed = await redis_eq.docs("o")
    assert [(d.key, d.secondary_key, d.id) for d in listed] == [
        ("j", "9", "b"),
        ("k", "1", "y"),
        ("k", "1", "z"),
        ("k", "1\x00", "a"),
        ("k", "2", "x"),
    ]


async def test_id_mode_keeps_the_order_asked_and_skips_missing(redis_eq: EntroQ) -> None:
    inserted = await insert_docs(
        redis_eq, [DocData("ids", f"d{i}", f"k{9 - i}", content=b"c%d" % i) for i in range(5)]
    )
    listed = await redis_eq.docs("ids", ids=["d3", "nope", "d0", "d3", "d4"])
    assert [d.id for d in listed] == ["d3", "d0", "d3", "d4"]
    assert listed[1] == inserted[0]
    # Key range and limit do not apply to IDs; another doc namespace has none of them.
    assert [d.id for d in await redis_eq.docs("ids", ids=["d1"], key_start="z", limit=1)] == ["d1"]
    assert await redis_eq.docs("other", ids=["d1", "d2"]) == []


async def test_omit_values_empties_only_the_content(redis_eq: EntroQ) -> None:
    (doc,) = await insert_docs(redis_eq, [DocData("ov", "x", "k", "s", b"payload\x00")])
    (listed,) = await redis_eq.docs("ov", omit_values=True)
    assert listed.content == b""
    assert listed == dataclasses.replace(doc, content=b"")
    (by_id,) = await redis_eq.docs("ov", ids=["x"], omit_values=True)
    assert by_id == listed
    assert (await redis_eq.docs("ov"))[0].content == b"payload\x00"


async def test_omitting_contents_reads_the_longest_fields_whole(
    redis_eq: EntroQ, store_url: str, namespace: str
) -> None:
    # Without contents the scripts read only a record's leading fields (GETRANGE): the longest
    # key, secondary key and claimant must still come back whole.
    key, secondary = "k" * 1023 + "\x00", "s" * 1023 + "\udcff"
    await insert_docs(redis_eq, [DocData("long", "x" * 256, key, secondary, b"c" * 5000)])
    async with entroq_redis.connect(store_url, namespace=namespace, claimant_id="h" * 128) as holder:
        (held,) = await holder.claim_docs("long", key, duration_ms=LONG_LEASE_MS)
    for listed in (
        await redis_eq.docs("long", omit_values=True),
        await redis_eq.docs("long", ids=[held.id], omit_values=True),
    ):
        assert listed == [dataclasses.replace(held, content=b"")]
    with pytest.raises(DependencyError) as refused:
        await redis_eq.claim_doc_sets([DocSet("long", key, omit_members=True)])
    assert [(f.id, f.version, f.key) for f in refused.value.doc_failures] == [(held.id, 1, key)]


async def test_paging_past_one_thousand(redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str) -> None:
    count = 2345
    await insert_docs(redis_eq, [DocData("big", f"{i:05d}", f"k{i % 7}", f"{i:05d}") for i in range(count)])
    everything = await redis_eq.docs("big", omit_values=True)
    assert len(everything) == count
    assert [sort_key(d) for d in everything] == sorted(sort_key(d) for d in everything)
    assert len({d.id for d in everything}) == count
    assert await redis_eq.docs("big", limit=1500, omit_values=True) == everything[:1500]
    in_range = await redis_eq.docs("big", key_start="k2", key_end="k5", omit_values=True)
    assert in_range == [d for d in everything if "k2" <= d.key < "k5"]
    assert len(in_range) > 1000
    assert len(await redis_eq.docs("big", ids=[d.id for d in everything])) == count

    # The script's own pages: offsets within the range, -1 exactly when the range ends.
    first = run_script(sync_redis, namespace, "docs", "big", "k2", "k5", 1000, 0, "1")
    assert isinstance(first, list) and first[0] == 1000 and len(first[1]) == 1000
    rest = len(in_range) - 1000
    last = run_script(sync_redis, namespace, "docs", "big", "k2", "k5", rest, 1000, "1")
    assert isinstance(last, list) and last[0] == -1 and len(last[1]) == rest
    past = run_script(sync_redis, namespace, "docs", "big", "k2", "k5", 10, 5000, "1")
    assert past == [-1, []]


async def test_listing_arguments_are_checked(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    with pytest.raises(InvalidArgumentError):
        await redis_eq.docs("")
    with pytest.raises(InvalidArgumentError, match="1024"):
        await redis_eq.docs("n" * 1025)
    with pytest.raises(InvalidArgumentError, match="1024"):
        await redis_eq.docs("n", key_start="k" * 1025)
    with pytest.raises(InvalidArgumentError, match="256"):
        await redis_eq.docs("n", ids=["i" * 257])
    for args in [("n", "", "", 0, 0, "0"), ("n", "", "", 1, -1, "0"), ("n", "", "", 1, 0, "yes")]:
        with pytest.raises(redis.ResponseError, match="EQ_BADARG"):
            run_script(sync_redis, namespace, "docs", *args)
    with pytest.raises(redis.ResponseError, match="EQ_BADARG"):
        run_script(sync_redis, namespace, "docs", "n", "", "", 1, 0, "0", *["i"] * 1001)


async def test_a_record_of_another_format_is_reported_not_misread(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    # A damaged store (or a record from a later contract): the format byte is read first, and
    # every reading script answers EQ_CORRUPT instead of unpacking it as a doc.
    await insert_docs(redis_eq, [DocData("bad", "x", "k")])
    await redis_eq.claim_doc_sets([DocSet("bad", "k")], duration_ms=0)
    record_key = raw(Keys(namespace).doc("bad", "x"))
    sync_redis.set(record_key, b"\x09" + (sync_redis.get(record_key) or b"")[1:])
    before = store_state(sync_redis, namespace)
    for call in (
        lambda: redis_eq.docs("bad"),
        lambda: redis_eq.docs("bad", ids=["x"], omit_values=True),
        lambda: redis_eq.claim_docs("bad", "k"),
        lambda: redis_eq.claim_doc_sets([DocSet("bad", "k", omit_members=True)]),
    ):
        with pytest.raises(StoreError, match=r"EQ_CORRUPT.*format 9"):
            await call()
    lock_key = raw(Keys(namespace).doc_set("bad", "k"))
    sync_redis.set(lock_key, b"\x02")
    with pytest.raises(StoreError, match="EQ_CORRUPT set lock"):
        await redis_eq.claim_doc_sets([DocSet("bad", "k")])
    assert store_state(sync_redis, namespace) == {**before, lock_key: sync_redis.dump(lock_key)}


# --- claim_docs.lua: every doc of one key ----------------------------------------------------


async def test_claim_docs_claims_every_doc_of_the_key(redis_eq: EntroQ) -> None:
    await insert_docs(
        redis_eq,
        [
            DocData("c", "x2", "key", "2", b"two"),
            DocData("c", "x1", "key", "1", b"one"),
            DocData("c", "x0", "key", "1", b"zero"),
            DocData("c", "y", "key\x00", "0"),
            DocData("c", "z", "ke", "0"),
        ],
    )
    before = await redis_eq.time()
    claimed = await redis_eq.claim_docs("c", "key", duration_ms=LONG_LEASE_MS)
    after = await redis_eq.time()
    assert [(d.id, d.secondary_key, d.content) for d in claimed] == [
        ("x0", "1", b"zero"),
        ("x1", "1", b"one"),
        ("x2", "2", b"two"),
    ]
    for doc in claimed:
        assert (doc.version, doc.claimant) == (1, redis_eq.claimant_id)
        assert before <= doc.modified_ms <= after and doc.at_ms == doc.modified_ms + LONG_LEASE_MS
    assert await redis_eq.docs("c", ids=["x0", "x1", "x2"]) == claimed
    # Docs of other keys (even ones sharing bytes with it) are untouched.
    assert [d.version for d in await redis_eq.docs("c", ids=["y", "z"])] == [0, 0]
    # The holder may claim them again: each claim moves the version.
    again = await redis_eq.claim_docs("c", "key", duration_ms=LONG_LEASE_MS)
    assert [d.version for d in again] == [2, 2, 2]


async def test_claim_docs_of_a_key_without_docs_is_empty_and_writes_nothing(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await insert_docs(redis_eq, [DocData("e", "x", "other")])
    before = store_state(sync_redis, namespace)
    assert await redis_eq.claim_docs("e", "missing") == []
    assert await redis_eq.claim_docs("nowhere", "missing") == []
    assert store_state(sync_redis, namespace) == before


async def test_claim_docs_is_all_or_nothing(
    redis_eq: EntroQ, redis_other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    inserted = await insert_docs(redis_eq, [DocData("a", f"d{i}", "key", f"{i}") for i in range(4)])
    # Another claimant holds two of them (a change with a future arrival holds a doc).
    future = await redis_other.time() + LONG_LEASE_MS
    held = (
        await redis_other.modify(
            doc_changes=[inserted[1].as_change(at=future), inserted[3].as_change(at=future)]
        )
    ).changed_docs
    assert [d.claimant for d in held] == [redis_other.claimant_id] * 2
    before = store_state(sync_redis, namespace)
    with pytest.raises(DependencyError) as refused:
        await redis_eq.claim_docs("a", "key", duration_ms=LONG_LEASE_MS)
    assert store_state(sync_redis, namespace) == before
    assert refused.value.failures == ()
    assert [
        (f.kind, f.reason, f.namespace, f.id, f.version, f.current_version, f.key)
        for f in refused.value.doc_failures
    ] == [
        ("CLAIM", "claimed", "a", "d1", 1, 1, "key"),
        ("CLAIM", "claimed", "a", "d3", 1, 1, "key"),
    ]
    # Once released, the key claims whole.
    await redis_other.modify(doc_changes=[d.as_change(at=None) for d in held])
    claimed = await redis_eq.claim_docs("a", "key", duration_ms=LONG_LEASE_MS)
    assert [(d.id, d.version) for d in claimed] == [("d0", 1), ("d1", 3), ("d2", 1), ("d3", 3)]


async def test_claim_docs_takes_docs_whose_lease_ran_out(redis_eq: EntroQ, redis_other: EntroQ) -> None:
    await insert_docs(redis_eq, [DocData("l", "d", "key")])
    (lapsed,) = await redis_other.claim_docs("l", "key", duration_ms=0)
    assert lapsed.claimant == redis_other.claimant_id and lapsed.at_ms == lapsed.modified_ms
    (mine,) = await redis_eq.claim_docs("l", "key", duration_ms=LONG_LEASE_MS)
    assert (mine.version, mine.claimant) == (2, redis_eq.claimant_id)
    # And the stale holder's version no longer commits.
    with pytest.raises(DependencyError) as stale:
        await redis_other.modify(doc_changes=[lapsed.as_change(content=b"late")])
    assert [(f.kind, f.reason) for f in stale.value.doc_failures] == [("CHANGE", "mismatch")]


async def test_claim_docs_refuses_more_than_a_thousand_docs(redis_eq: EntroQ) -> None:
    await insert_docs(redis_eq, [DocData("m", f"{i:04d}", "key") for i in range(1001)])
    with pytest.raises(InvalidArgumentError, match="1000"):
        await redis_eq.claim_docs("m", "key")
    assert {d.version for d in await redis_eq.docs("m", omit_values=True)} == {0}


async def test_claim_docs_arguments_are_checked(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    with pytest.raises(InvalidArgumentError):
        await redis_eq.claim_docs("c", "")
    with pytest.raises(InvalidArgumentError, match="1024"):
        await redis_eq.claim_docs("c", "k" * 1025)
    with pytest.raises(InvalidArgumentError, match="1024"):
        await redis_eq.claim_docs("c" * 1025, "k")
    for args in [
        ("", 1, "c", "k"),
        ("me", -1, "c", "k"),
        ("me", 1, "c", "k", "extra"),
        ("x" * 129, 1, "c", "k"),
    ]:
        with pytest.raises(redis.ResponseError, match="EQ_BADARG"):
            run_script(sync_redis, namespace, "claim_docs", *args)


# --- claim_doc_sets.lua: set locks -----------------------------------------------------------


async def test_set_claim_returns_locks_and_members(redis_eq: EntroQ) -> None:
    await insert_docs(
        redis_eq,
        [
            DocData("s", "b2", "b", "2", b"b-two"),
            DocData("s", "b1", "b", "1", b"b-one"),
            DocData("s", "a1", "a", "1", b"a-one"),
            DocData("t", "c1", "c", "1", b"c-one"),
        ],
    )
    before = await redis_eq.time()
    claimed = await redis_eq.claim_doc_sets(
        [DocSet("s", "b"), DocSet("t", "c", omit_members=True), DocSet("s", "a"), DocSet("s", "none")],
        duration_ms=LONG_LEASE_MS,
    )
    after = await redis_eq.time()
    assert [(s.namespace, s.id, s.key, s.version) for s in claimed.sets] == [
        ("s", "", "b", 1),
        ("t", "", "c", 1),
        ("s", "", "a", 1),
        ("s", "", "none", 1),
    ]
    for lock in claimed.sets:
        assert lock.is_set_ref() and lock.claimant == redis_eq.claimant_id
        assert before + LONG_LEASE_MS <= lock.at_ms <= after + LONG_LEASE_MS
        assert (lock.secondary_key, lock.content, lock.created_ms, lock.modified_ms) == ("", b"", 0, 0)
    # Members of the sets without omit_members, set by set, each by secondary key; unchanged.
    assert [(d.id, d.version, d.claimant, d.content) for d in claimed.docs] == [
        ("b1", 0, "", b"b-one"),
        ("b2", 0, "", b"b-two"),
        ("a1", 0, "", b"a-one"),
    ]
    assert claimed.docs == await redis_eq.docs("s", ids=["b1", "b2", "a1"])
    # Claiming again (the holder renews by claiming) moves each lock's version.
    again = await redis_eq.claim_doc_sets([DocSet("s", "b", omit_members=True)], duration_ms=1000)
    assert [s.version for s in again.sets] == [2] and again.docs == []


async def test_a_held_set_refuses_another_claimant(
    redis_eq: EntroQ, redis_other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await insert_docs(redis_eq, [DocData("h", "m", "k", content=b"member")])
    (lock,) = (await redis_eq.claim_doc_sets([DocSet("h", "k")], duration_ms=LONG_LEASE_MS)).sets
    before = store_state(sync_redis, namespace)
    with pytest.raises(DependencyError) as refused:
        await redis_other.claim_doc_sets([DocSet("h", "free"), DocSet("h", "k")], duration_ms=LONG_LEASE_MS)
    (failure,) = refused.value.doc_failures
    assert (failure.kind, failure.reason, failure.namespace, failure.id, failure.key) == (
        "CLAIM",
        "claimed",
        "h",
        "",
        "k",
    )
    assert failure.version == failure.current_version == lock.version
    assert "doc set 'k'" in str(refused.value)
    # Nor can the other claimant take the key's docs by key claim.
    with pytest.raises(DependencyError) as by_key:
        await redis_other.claim_docs("h", "k", duration_ms=LONG_LEASE_MS)
    assert [(f.id, f.key, f.version) for f in by_key.value.doc_failures] == [("", "k", lock.version)]
    assert store_state(sync_redis, namespace) == before  # the free set was not claimed either
    # The holder itself may claim the docs of its set by key (a write of the members: each goes
    # above the lock's version, lua/README.md section 6).
    assert [d.version for d in await redis_eq.claim_docs("h", "k")] == [lock.version + 1]


async def test_a_member_held_by_another_refuses_the_set(redis_eq: EntroQ, redis_other: EntroQ) -> None:
    await insert_docs(redis_eq, [DocData("mh", "m1", "k", "1"), DocData("mh", "m2", "k", "2")])
    await redis_other.claim_docs("mh", "k", duration_ms=LONG_LEASE_MS)
    with pytest.raises(DependencyError) as refused:
        await redis_eq.claim_doc_sets([DocSet("mh", "k", omit_members=True)])
    assert [(f.kind, f.id, f.version, f.key) for f in refused.value.doc_failures] == [
        ("CLAIM", "m1", 1, "k"),
        ("CLAIM", "m2", 1, "k"),
    ]
    # A set never claimed has no lock record after a refused claim.
    with pytest.raises(DependencyError) as renew:
        await redis_eq.renew_docs_for([DocID("mh", "", 1, key="k")], LONG_LEASE_MS)
    assert [(f.kind, f.reason, f.current_version) for f in renew.value.doc_failures] == [
        ("CHANGE", "missing", -1)
    ]


async def test_task_to_match_ties_the_lock_to_the_task_lease(redis_eq: EntroQ, redis_other: EntroQ) -> None:
    await redis_eq.modify(inserts=[TaskData("work", id="job")])
    task = await redis_eq.try_claim("work", duration_ms=LONG_LEASE_MS)
    assert task is not None
    claimed = await redis_eq.claim_doc_sets(
        [DocSet("tm", "k"), DocSet("tm", "j")], duration_ms=5, task_to_match=task
    )
    assert [(s.key, s.at_ms, s.claimant) for s in claimed.sets] == [
        ("k", task.at_ms, redis_eq.claimant_id),
        ("j", task.at_ms, redis_eq.claimant_id),
    ]
    # The queue is checked when named; a TaskID works as well as the task.
    matched = await redis_eq.claim_doc_sets(
        [DocSet("tm", "k")], task_to_match=TaskID("job", task.version, "work")
    )
    assert [(s.version, s.at_ms) for s in matched.sets] == [(2, task.at_ms)]


async def test_task_to_match_must_be_held_by_the_caller_at_that_version(
    redis_eq: EntroQ, redis_other: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    await redis_eq.modify(inserts=[TaskData("work", id="job"), TaskData("idle", id="free")])
    task = await redis_eq.try_claim("work", duration_ms=LONG_LEASE_MS)
    assert task is not None
    sets = [DocSet("tm", "k")]
    cases = [
        (redis_other, TaskID("job", task.version), "claimed", "work", task.version),  # held by another
        (redis_eq, TaskID("job", task.version + 1), "mismatch", "work", task.version),
        (redis_eq, TaskID("job", task.version, "elsewhere"), "missing", "elsewhere", task.version),
        (redis_eq, TaskID("nope", 0), "missing", "", -1),
        (redis_eq, TaskID("free", 0), "claimed", "idle", 0),  # available: held by nobody
    ]
    before = store_state(sync_redis, namespace)
    for client, match, reason, queue, current in cases:
        with pytest.raises(DependencyError) as refused:
            await client.claim_doc_sets(sets, task_to_match=match)
        (failure,) = refused.value.failures
        assert (failure.kind, failure.reason, failure.id, failure.version) == (
            "DEPEND",
            reason,
            match.id,
            match.version,
        )
        assert (failure.queue, failure.current_version) == (queue, current)
        assert refused.value.doc_failures == ()
        assert "task to match" in str(refused.value)
    assert store_state(sync_redis, namespace) == before
    # A lease that ran out is not held either.
    _, (lapsed,) = await redis_eq.modify(changes=[task.as_change(at=None)])
    with pytest.raises(DependencyError):
        await redis_eq.claim_doc_sets(sets, task_to_match=lapsed)


async def test_task_and_set_failures_are_reported_together(redis_eq: EntroQ, redis_other: EntroQ) -> None:
    await redis_other.claim_doc_sets([DocSet("both", "k")], duration_ms=LONG_LEASE_MS)
    with pytest.raises(DependencyError) as refused:
        await redis_eq.claim_doc_sets([DocSet("both", "k")], task_to_match=TaskID("nope", 0))
    assert [f.reason for f in refused.value.failures] == ["missing"]
    assert [(f.id, f.key) for f in refused.value.doc_failures] == [("", "k")]


async def test_set_lock_protects_members_against_another_claimants_modify(
    redis_eq: EntroQ, redis_other: EntroQ
) -> None:
    inserted = await insert_docs(
        redis_eq, [DocData("p", "in", "locked", content=b"v0"), DocData("p", "out", "open", content=b"w0")]
    )
    member, outsider = inserted
    (lock,) = (await redis_eq.claim_doc_sets([DocSet("p", "locked")], duration_ms=LONG_LEASE_MS)).sets
    attempts = {
        "change a member": {"doc_changes": [member.as_change(content=b"v1")]},
        "delete a member": {"doc_deletes": [member]},
        "insert into the set": {"doc_inserts": [DocData("p", "new", "locked")]},
        "move a doc into the set": {"doc_changes": [outsider.as_change(key="locked")]},
        "move a member out": {"doc_changes": [member.as_change(key="open")]},
    }
    for what, items in attempts.items():
        with pytest.raises(DependencyError) as refused:
            await redis_other.modify(**items)  # type: ignore[arg-type]
        assert [(f.kind, f.reason, f.id, f.key, f.version) for f in refused.value.doc_failures] == [
            ("CLAIM", "claimed", "", "locked", lock.version)
        ], what
    assert await redis_eq.docs("p") == [member, outsider]
    # The holder changes members freely, without claiming them (the member goes above the lock).
    (changed,) = (await redis_eq.modify(doc_changes=[member.as_change(content=b"v1")])).changed_docs
    assert (changed.version, changed.content, changed.claimant) == (lock.version + 1, b"v1", "")
    # Docs outside the set stay open to everyone.
    await redis_other.modify(doc_changes=[outsider.as_change(content=b"w1")])


async def test_set_lease_change_renews_and_releases(redis_eq: EntroQ, redis_other: EntroQ) -> None:
    await insert_docs(redis_eq, [DocData("r", "m", "k")])
    (lock,) = (await redis_eq.claim_doc_sets([DocSet("r", "k")], duration_ms=1000)).sets
    # Renewal: a lease change of the set moves its version and arrival.
    (renewed,) = await redis_eq.renew_docs_for([lock], LONG_LEASE_MS)
    assert renewed.is_set_ref() and (renewed.key, renewed.version) == ("k", lock.version + 1)
    assert renewed.claimant == redis_eq.claimant_id and renewed.at_ms > lock.at_ms
    # The stale version no longer renews; the other claimant cannot renew or release it.
    with pytest.raises(DependencyError) as stale:
        await redis_eq.renew_docs_for([lock], LONG_LEASE_MS)
    assert [(f.kind, f.reason, f.current_version) for f in stale.value.doc_failures] == [
        ("CHANGE", "mismatch", renewed.version)
    ]
    with pytest.raises(DependencyError) as foreign:
        await redis_other.modify(doc_changes=[DocChange("r", "", renewed.version, key="k", mode="lease")])
    assert [(f.kind, f.reason) for f in foreign.value.doc_failures] == [("CLAIM", "claimed")]
    # Release: an arrival of now frees the set for the other claimant.
    (released,) = (
        await redis_eq.modify(doc_changes=[DocChange("r", "", renewed.version, key="k", mode="lease")])
    ).changed_docs
    assert (released.version, released.claimant) == (renewed.version + 1, "")
    taken = await redis_other.claim_doc_sets([DocSet("r", "k")], duration_ms=LONG_LEASE_MS)
    assert [(s.version, s.claimant) for s in taken.sets] == [(released.version + 1, redis_other.claimant_id)]
    assert [d.id for d in taken.docs] == ["m"]


async def test_set_claim_arguments_are_checked(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="twice"):
        await redis_eq.claim_doc_sets([DocSet("d", "k"), DocSet("d", "k", omit_members=True)])
    with pytest.raises(InvalidArgumentError, match="n_sets"):
        await redis_eq.claim_doc_sets([])
    with pytest.raises(InvalidArgumentError, match="n_sets"):
        await redis_eq.claim_doc_sets([DocSet("d", f"k{i}") for i in range(1001)])
    with pytest.raises(InvalidArgumentError, match="key"):
        await redis_eq.claim_doc_sets([DocSet("d", "")])
    with pytest.raises(redis.ResponseError, match="EQ_BADARG"):
        run_script(sync_redis, namespace, "claim_doc_sets", "me", 1, "", 0, "", 2, "d", "k", "0")
    with pytest.raises(redis.ResponseError, match="EQ_BADARG"):
        run_script(sync_redis, namespace, "claim_doc_sets", "me", 1, "", 0, "", 1, "d", "k", "maybe")
    assert store_state(sync_redis, namespace) == {}


async def test_set_claim_refuses_more_than_a_thousand_members(redis_eq: EntroQ) -> None:
    await insert_docs(redis_eq, [DocData("mm", f"{i:04d}", "k1" if i < 600 else "k2") for i in range(1001)])
    assert len((await redis_eq.claim_doc_sets([DocSet("mm", "k1")])).docs) == 600
    with pytest.raises(InvalidArgumentError, match="1000"):
        await redis_eq.claim_doc_sets(
            [DocSet("mm", "k1", omit_members=True), DocSet("mm", "k2", omit_members=True)]
        )


# --- namespaces.lua: doc namespace stats ------------------------------------------------------


async def test_namespace_stats_by_prefix_and_exact_name(redis_eq: EntroQ) -> None:
    names = ["a/1", "a/2", "a/2/x", "b", "b\x00", "c", "\udcff"]  # byte order
    await insert_docs(redis_eq, [DocData(name, f"{name}-{i}", "k") for name in names for i in range(2)])
    stats = await redis_eq.namespace_stats()
    assert [(s.name, s.num_docs, s.num_claimed) for s in stats] == [(n, 2, 0) for n in names]
    assert [s.name for s in await redis_eq.namespace_stats(prefixes=["a/2"])] == ["a/2", "a/2/x"]
    assert [s.name for s in await redis_eq.namespace_stats(exact=["b", "nope"])] == ["b"]
    assert [s.name for s in await redis_eq.namespace_stats(prefixes=["a/"], exact=["c", "a/1"])] == [
        "a/1",
        "a/2",
        "a/2/x",
        "c",
    ]
    assert [s.name for s in await redis_eq.namespace_stats(prefixes=["b", "\udcff"])] == [
        "b",
        "b\x00",
        "\udcff",
    ]
    assert [s.name for s in await redis_eq.namespace_stats(prefixes=[""])] == names
    # Overlapping matchers list each name once, in order, and page as one listing.
    overlapping = {"prefixes": ["a/2", "a", "a/"], "exact": ["a/2", "a/1", "b"]}
    assert [s.name for s in await redis_eq.namespace_stats(**overlapping)] == names[:4]
    assert [s.name for s in await redis_eq.namespace_stats(**overlapping, limit=2)] == names[:2]
    assert [s.name for s in await redis_eq.namespace_stats(limit=3)] == names[:3]
    assert [s.name for s in await redis_eq.namespace_stats(prefixes=["a/"], limit=2)] == ["a/1", "a/2"]
    assert await redis_eq.namespace_stats(prefixes=["z"]) == []


async def test_num_claimed_counts_only_live_holds(redis_eq: EntroQ, redis_other: EntroQ) -> None:
    await insert_docs(redis_eq, [DocData("live", f"d{i}", f"k{i % 3}") for i in range(6)])
    await redis_eq.claim_docs("live", "k0", duration_ms=LONG_LEASE_MS)  # 2 held
    await redis_other.claim_docs("live", "k1", duration_ms=0)  # 2 claimed, lease already over
    # A set lock holds no doc by itself: the members of k2 are not counted.
    await redis_other.claim_doc_sets([DocSet("live", "k2")], duration_ms=LONG_LEASE_MS)
    (stats,) = await redis_eq.namespace_stats(exact=["live"])
    assert (stats.num_docs, stats.num_claimed) == (6, 2)
    # Released docs stop counting at once.
    held = await redis_eq.docs("live", key_start="k0", key_end="k1")
    await redis_eq.modify(doc_changes=[d.as_change(at=None) for d in held])
    (stats,) = await redis_eq.namespace_stats(exact=["live"])
    assert (stats.num_docs, stats.num_claimed) == (6, 0)


async def test_namespace_stats_page_past_one_thousand(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    names = [f"ns{i:04d}" for i in range(1203)]
    await insert_docs(redis_eq, [DocData(name, "d", "k") for name in names])
    assert [s.name for s in await redis_eq.namespace_stats()] == names
    assert [s.name for s in await redis_eq.namespace_stats(prefixes=["ns1"])] == names[1000:]
    assert [s.name for s in await redis_eq.namespace_stats(exact=names[::-1][:1000])] == names[203:]
    # The script's pages: after the last name of a page, more = 0 at the end.
    page = run_script(sync_redis, namespace, "namespaces", 1000, "", 0)
    assert isinstance(page, list) and page[0] == 1 and len(page[1]) == 1000
    tail = run_script(sync_redis, namespace, "namespaces", 1000, page[1][-1][0], 0)
    assert isinstance(tail, list) and tail[0] == 0 and [row[0].decode() for row in tail[1]] == names[1000:]
    after_prefix = run_script(sync_redis, namespace, "namespaces", 5, "ns11", 1, "ns1")
    assert isinstance(after_prefix, list) and [row[0].decode() for row in after_prefix[1]] == names[1100:1105]


async def test_namespace_stats_arguments_are_checked(sync_redis: redis.Redis, namespace: str) -> None:
    for args in [(0, "", 0), (1, "", 2, "only-one"), (1, "", -1), (1, "", 0, *["x"] * 1001)]:
        with pytest.raises(redis.ResponseError, match="EQ_BADARG"):
            run_script(sync_redis, namespace, "namespaces", *args)
