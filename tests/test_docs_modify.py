"""modify.lua's doc items on the store itself: key layout, records, indexes and script errors.

What lua/README.md sections 2, 3 and 6 promise for docs, checked by reading the store with a
plain client (the records, the ``dk:``/``dc:``/``dn``/``ds:`` keys) and by calling the script
directly where the library would refuse the input first. The behaviour through the library
(every backend) is tests/test_docs_behaviour.py.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence

import pytest
import redis

import entroq_redis
from entroq_redis import (
    DependencyError,
    DocData,
    DocID,
    DocSet,
    EntroQ,
    InvalidArgumentError,
    StoreError,
    TaskData,
)
from entroq_redis._contract import MAX_TOTAL_BYTES, MAX_VALUE_BYTES
from entroq_redis._keys import Keys
from entroq_redis._scripts import script_source

HOUR_MS = 3_600_000

# Names a doc may hold (docs/design.md 2.14: any bytes): NUL, the hash-tag braces, the key separator, a
# byte that is not UTF-8 (str through surrogateescape, as the library carries it), the limits.
HOSTILE_NAMESPACES = ["a\0b", "{x}", "}{", "a:b:", ":", "\udcff\udcfe", "n" * 1024, "é" * 512]
HOSTILE_IDS = ["i\0d", "{", "}", "1:", "\udcff", "i" * 256]
HOSTILE_KEYS = ["", "\0", "k\0\0", "{k}", "}:{", "\udcff", "k" * 1024]


def raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def unpack_doc(record: bytes) -> dict[str, object]:
    """The doc record of lua/README.md section 3, read independently of the scripts."""
    format_version, version, at, created, modified = struct.unpack_from(">BiqqQ", record)
    position = struct.calcsize(">BiqqQ")
    fields = []
    for _ in range(3):
        (length,) = struct.unpack_from(">H", record, position)
        fields.append(record[position + 2 : position + 2 + length])
        position += 2 + length
    key, secondary_key, claimant = fields
    return {
        "format": format_version,
        "version": version,
        "at_ms": at,
        "created_ms": created,
        "modified_ms": modified,
        "key": key,
        "secondary_key": secondary_key,
        "claimant": claimant,
        "content": record[position:],
    }


def unpack_set_lock(record: bytes) -> tuple[int, int, int, int, bytes]:
    """(format, version, highest member version, at_ms, claimant) of a set lock record."""
    format_version, version, highest, at, length = struct.unpack_from(">BiiqH", record)
    claimant = record[struct.calcsize(">BiiqH") :]
    assert len(claimant) == length
    return format_version, version, highest, at, claimant


def sort_part(value: bytes) -> bytes:
    """lua/README.md section 2's enc(): NUL -> NUL 0xFF, then NUL 0x01."""
    return value.replace(b"\0", b"\0\xff") + b"\0\x01"


def dump(sync_redis: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    return {key: sync_redis.dump(key) for key in sync_redis.scan_iter(match="{" + namespace + "}:*")}


# --- keys and records ------------------------------------------------------------------------


async def test_an_inserted_doc_is_stored_as_the_readme_lays_out(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    (doc,) = (
        await redis_eq.modify(
            doc_inserts=[DocData("acc:1", id="d", key="k\0", secondary_key="s", content=b'{"a": 1}')]
        )
    ).inserted_docs
    assert keys.doc("acc:1", "d") == "{" + namespace + "}:d:5:acc:1d"
    record = unpack_doc(sync_redis.get(keys.doc("acc:1", "d")))
    assert record == {
        "format": 2,
        "version": 0,
        "at_ms": doc.at_ms,
        "created_ms": doc.created_ms,
        "modified_ms": doc.modified_ms,
        "key": b"k\0",
        "secondary_key": b"s",
        "claimant": b"",
        "content": b'{"a": 1}',
    }
    assert sync_redis.zrange(keys.doc_index("acc:1"), 0, -1, withscores=True) == [
        (b"k\0\xff\0\x01" + b"s\0\x01" + b"d", 0.0)
    ]
    assert sync_redis.zrange(keys.doc_namespaces, 0, -1) == [b"acc:1"]
    assert sync_redis.exists(keys.doc_claimed("acc:1")) == 0
    assert sorted(sync_redis.scan_iter(match="{" + namespace + "}:*")) == sorted(
        raw(k) for k in (keys.doc("acc:1", "d"), keys.doc_index("acc:1"), keys.doc_namespaces)
    )


async def test_hostile_names_are_stored_and_read_back_byte_for_byte(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    inserts = []
    for n, doc_namespace in enumerate(HOSTILE_NAMESPACES):
        for m, doc_id in enumerate(HOSTILE_IDS):
            key = HOSTILE_KEYS[(n + m) % len(HOSTILE_KEYS)]
            secondary = HOSTILE_KEYS[(n + 2 * m) % len(HOSTILE_KEYS)]
            content = bytes(range(256)) + raw(doc_namespace + doc_id)
            inserts.append(
                DocData(doc_namespace, id=doc_id, key=key, secondary_key=secondary, content=content)
            )
    result = await redis_eq.modify(doc_inserts=inserts)
    assert [(d.namespace, d.id, d.key, d.secondary_key, d.content) for d in result.inserted_docs] == [
        (d.namespace, d.id, d.key, d.secondary_key, d.content) for d in inserts
    ]
    for data in inserts:
        assert data.id is not None
        record = unpack_doc(sync_redis.get(raw(keys.doc(data.namespace, data.id))))
        assert (record["key"], record["secondary_key"], record["content"]) == (
            raw(data.key),
            raw(data.secondary_key),
            data.content,
        )
    # Each namespace holds exactly its own docs, and is listed by its exact bytes.
    assert sorted(sync_redis.zrange(keys.doc_namespaces, 0, -1)) == sorted(raw(n) for n in HOSTILE_NAMESPACES)
    for doc_namespace in HOSTILE_NAMESPACES:
        members = sync_redis.zrange(raw(keys.doc_index(doc_namespace)), 0, -1)
        assert len(members) == len(HOSTILE_IDS)
        listed = await redis_eq.docs(doc_namespace, ids=HOSTILE_IDS)
        assert [(d.namespace, d.id) for d in listed] == [(doc_namespace, i) for i in HOSTILE_IDS]
        assert listed == [d for d in result.inserted_docs if d.namespace == doc_namespace]


async def test_length_prefixed_namespaces_never_share_a_record(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    # Pairs whose plain concatenation is the same bytes.
    pairs = [("a", "bc"), ("ab", "c"), ("1:a", "b"), ("1", ":ab"), ("a\0", "b"), ("a", "\0b")]
    await redis_eq.modify(doc_inserts=[DocData(n, id=i, content=raw(n + "|" + i)) for n, i in pairs])
    records = [sync_redis.get(raw(Keys(namespace).doc(n, i))) for n, i in pairs]
    assert [unpack_doc(r)["content"] for r in records] == [raw(n + "|" + i) for n, i in pairs]
    assert len({raw(Keys(namespace).doc(n, i)) for n, i in pairs}) == len(pairs)


async def test_the_doc_index_sorts_by_key_then_secondary_key_then_id(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    rows = [
        ("a", "", "1"),
        ("a\0", "", "2"),
        ("a\0b", "", "3"),
        ("ab", "", "4"),
        ("", "z", "5"),
        ("a", "\0", "6"),
        ("a", "", "0"),
        ("\udcff", "", "7"),
        ("a\x01", "", "8"),
    ]
    await redis_eq.modify(doc_inserts=[DocData("ns", id=i, key=k, secondary_key=s) for k, s, i in rows])
    expected = sorted(rows, key=lambda row: tuple(raw(part) for part in row))
    members = sync_redis.zrange(raw(Keys(namespace).doc_index("ns")), 0, -1)
    assert members == [sort_part(raw(k)) + sort_part(raw(s)) + raw(i) for k, s, i in expected]
    # The library lists the range in the same order.
    listed = await redis_eq.docs("ns")
    assert [(d.key, d.secondary_key, d.id) for d in listed] == expected


async def test_the_claim_index_and_namespace_list_follow_the_docs(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    doc, other = (
        await redis_eq.modify(doc_inserts=[DocData("ns", id="d", key="k"), DocData("ns", id="e", key="k")])
    ).inserted_docs
    (held,) = (await redis_eq.modify(doc_changes=[doc.as_change(key="k2", delay_ms=HOUR_MS)])).changed_docs
    assert sync_redis.zrange(keys.doc_claimed("ns"), 0, -1, withscores=True) == [(b"d", float(held.at_ms))]
    assert sync_redis.zrange(keys.doc_index("ns"), 0, -1) == [
        sort_part(b"k") + sort_part(b"") + b"e",
        sort_part(b"k2") + sort_part(b"") + b"d",
    ]
    assert unpack_doc(sync_redis.get(keys.doc("ns", "d")))["claimant"] == raw(redis_eq.claimant_id)
    (released,) = (await redis_eq.modify(doc_changes=[held.as_change(at=None)])).changed_docs
    assert sync_redis.exists(keys.doc_claimed("ns")) == 0
    await redis_eq.modify(doc_deletes=[released])
    assert sync_redis.zrange(keys.doc_namespaces, 0, -1) == [b"ns"]
    await redis_eq.modify(doc_deletes=[other])
    assert list(sync_redis.scan_iter(match="{" + namespace + "}:*")) == []


async def test_a_set_lease_change_writes_the_lock_record_and_keeps_it(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    lock_key = Keys(namespace).doc_set("n:s", "k\0")
    (doc,) = (await redis_eq.modify(doc_inserts=[DocData("n:s", id="d", key="k\0")])).inserted_docs
    (doc,) = (await redis_eq.modify(doc_changes=[doc.as_change(content=b"1")])).changed_docs
    (lock,) = (await redis_eq.claim_doc_sets([DocSet("n:s", "k\0")], 60_000)).sets
    # Format 4: the highest member version (the doc's 1, read by the first claim), and the
    # lock's version above it.
    assert unpack_set_lock(sync_redis.get(raw(lock_key))) == (
        4,
        lock.version,
        1,
        lock.at_ms,
        raw(redis_eq.claimant_id),
    )
    assert lock.version == 2
    # A member write folds its version into the record; the lock's version stays.
    (doc,) = (await redis_eq.modify(doc_changes=[doc.as_change(content=b"2")])).changed_docs
    assert doc.version == 3
    assert unpack_set_lock(sync_redis.get(raw(lock_key))) == (4, 2, 3, lock.at_ms, raw(redis_eq.claimant_id))
    (released,) = (await redis_eq.modify(doc_changes=[lock.as_change(at=None, mode="lease")])).changed_docs
    assert unpack_set_lock(sync_redis.get(raw(lock_key))) == (4, 4, 3, released.at_ms, b"")
    # The lock outlives the set's last doc: a stale holder can never match again.
    await redis_eq.modify(doc_deletes=[doc])
    assert unpack_set_lock(sync_redis.get(raw(lock_key)))[1:3] == (4, 3)


# --- nothing written on refusal ----------------------------------------------------------------


async def test_a_refused_mixed_modify_leaves_every_key_as_it_was(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str, store_url: str
) -> None:
    (task,), _ = await redis_eq.modify(inserts=[TaskData("q", id="t")])
    docs = (
        await redis_eq.modify(doc_inserts=[DocData("ns", id=i, key="k") for i in ("a", "b", "c")])
    ).inserted_docs
    (held,) = (await redis_eq.modify(doc_changes=[docs[2].as_change(delay_ms=HOUR_MS)])).changed_docs
    before = dump(sync_redis, namespace)
    async with entroq_redis.connect(store_url, namespace=namespace) as other:
        with pytest.raises(DependencyError) as caught:
            await other.modify(
                inserts=[TaskData("q2", id="new-task")],
                changes=[task.as_change(value=b"x")],
                deletes=[],
                doc_inserts=[DocData("ns", id="new", key="k"), DocData("fresh", id="x")],
                doc_changes=[docs[0].as_change(key="moved", content=b"1")],
                doc_deletes=[docs[1], held],
            )
    assert [(f.kind, f.id) for f in caught.value.doc_failures] == [("CLAIM", "c")]
    assert dump(sync_redis, namespace) == before


# --- the script's own checks (what other languages get) ---------------------------------------


def call_modify(
    sync_redis: redis.Redis,
    namespace: str,
    counts: Sequence[int],
    items: Sequence[bytes | str | int],
    *,
    contract: str = entroq_redis.CONTRACT_VERSION,
    id_seed: str = "",
) -> object:
    prefix = "{" + namespace + "}:"
    return sync_redis.eval(
        script_source("modify"), 1, prefix + "queues", prefix, contract, "me", id_seed, "", *counts, *items
    )


def doc_insert(namespace: str = "ns", doc_id: str = "d", key: str = "k") -> list[bytes | str | int]:
    return [raw(namespace), raw(doc_id), raw(key), "", "at", 0, "{}"]


def doc_change(
    namespace: str = "ns", doc_id: str = "d", mode: str = "full", key: str = "k"
) -> list[bytes | str | int]:
    return [raw(namespace), raw(doc_id), 0, mode, raw(key), "", "by", 0, "{}"]


@pytest.mark.parametrize(
    ("counts", "items", "message"),
    [
        ([0, 0, 0, 0, 1, 0, 0, 0], doc_insert(namespace=""), "doc insert 1 namespace must not be empty"),
        ([0, 0, 0, 0, 1, 0, 0, 0], doc_insert(namespace="n" * 1025), "namespace is longer than 1024"),
        ([0, 0, 0, 0, 1, 0, 0, 0], doc_insert(doc_id="i" * 257), "id is longer than 256"),
        ([0, 0, 0, 0, 1, 0, 0, 0], doc_insert(key="k" * 1025), "key is longer than 1024"),
        ([0, 0, 0, 0, 1, 0, 0, 0], doc_insert(doc_id=""), "id_seed must hold at least 16 bytes"),
        ([0, 0, 0, 0, 0, 1, 0, 0], doc_change(doc_id=""), "a set may only have its lease changed"),
        ([0, 0, 0, 0, 0, 1, 0, 0], doc_change(doc_id="", key="", mode="lease"), "needs an id, or a key"),
        ([0, 0, 0, 0, 0, 1, 0, 0], doc_change(doc_id="", key="k" * 1025, mode="lease"), "set key is longer"),
        ([0, 0, 0, 0, 0, 1, 0, 0], doc_change(mode="reset_claims"), "mode must be full or lease"),
        ([0, 0, 0, 0, 0, 0, 1, 0], ["ns", "", 0], "doc delete 1 id must not be empty"),
        ([0, 0, 0, 0, 0, 0, 0, 1], ["ns", "d", -1], "version must be an integer"),
        ([0, 0, 0, 0, 1, 0, 1, 0], [*doc_insert(), "ns", "d", 0], "doc delete 1 names a doc"),
        ([0, 0, 0, 0, 0, 2, 0, 0], doc_change(doc_id="", mode="lease") * 2, "doc change 2 names a doc"),
        ([0, 0, 0, 0, 1, 0, 0, 0], doc_insert()[:-1], "the item counts call for 20"),
        ([500, 0, 0, 0, 0, 0, 0, 501], [], "at most 1000 items (tasks and docs) per modify, got 1001"),
    ],
)
def test_the_script_refuses_malformed_doc_items(
    sync_redis: redis.Redis, namespace: str, counts: list[int], items: list[bytes | str | int], message: str
) -> None:
    with pytest.raises(redis.ResponseError, match=r"^EQ_BADARG .*" + re.escape(message)):
        call_modify(sync_redis, namespace, counts, items)
    assert list(sync_redis.scan_iter(match="{" + namespace + "}:*")) == []


def test_a_contract_1_caller_gets_eq_contract(sync_redis: redis.Redis, namespace: str) -> None:
    prefix = "{" + namespace + "}:"
    # Contract 1's modify: four counts, then the items.
    contract_1_insert = [prefix, "1", "me", "", "", 1, 0, 0, 0, "id", "q", "at", 0, "v", 0, ""]
    with pytest.raises(redis.ResponseError, match=r"^EQ_CONTRACT"):
        sync_redis.eval(script_source("modify"), 1, prefix + "queues", *contract_1_insert)
    assert list(sync_redis.scan_iter(match=prefix + "*")) == []


def test_generated_doc_ids_follow_the_readme_formula(sync_redis: redis.Redis, namespace: str) -> None:
    seed = "0123456789abcdef"
    reply = call_modify(
        sync_redis,
        namespace,
        [1, 0, 0, 0, 2, 0, 0, 0],
        ["", "q", "at", 0, "", 0, "", *doc_insert(doc_id=""), *doc_insert(doc_id="")],
        id_seed=seed,
    )
    assert isinstance(reply, list) and reply[0] == 1

    def uuid(i: int) -> bytes:
        h = hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()
        variant = "89ab"[int(h[16], 16) % 4]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}".encode()

    (task,) = reply[1]
    assert task[1] == uuid(1)
    assert [doc[1] for doc in reply[3]] == [uuid(2), uuid(3)]
    assert reply[4] == []


async def test_a_doc_record_of_another_format_is_eq_corrupt(
    redis_eq: EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    (doc,) = (await redis_eq.modify(doc_inserts=[DocData("ns", id="d", key="k")])).inserted_docs
    good = sync_redis.get(keys.doc("ns", "d"))
    sync_redis.set(keys.doc("ns", "d"), b"\x09" + good[1:])
    before = dump(sync_redis, namespace)
    for change in (doc.as_change(content=b"1"), doc.as_change(mode="lease")):
        with pytest.raises(StoreError, match="EQ_CORRUPT a doc record has format 9"):
            await redis_eq.modify(inserts=[TaskData("q")], doc_changes=[change])
    assert dump(sync_redis, namespace) == before
    sync_redis.set(keys.doc_set("ns", "k"), b"\x01" + b"\0" * 14)
    with pytest.raises(StoreError, match="EQ_CORRUPT a doc set lock record has format 1"):
        await redis_eq.modify(doc_inserts=[DocData("ns", id="e", key="k")])


# --- the limits ---------------------------------------------------------------------------------


async def test_a_thousand_items_of_tasks_and_docs_and_not_one_more(redis_eq: EntroQ) -> None:
    result = await redis_eq.modify(
        inserts=[TaskData("q") for _ in range(500)], doc_inserts=[DocData("ns") for _ in range(500)]
    )
    assert len(result.inserted) == len(result.inserted_docs) == 500
    with pytest.raises(InvalidArgumentError, match="at most 1000 items"):
        await redis_eq.modify(
            inserts=[TaskData("q")], doc_depends=[d.as_id() for d in result.inserted_docs] * 2
        )


async def test_doc_contents_count_toward_the_total_bytes(redis_eq: EntroQ) -> None:
    big = b"x" * MAX_VALUE_BYTES
    count = MAX_TOTAL_BYTES // MAX_VALUE_BYTES
    with pytest.raises(InvalidArgumentError, match="add up to more than"):
        await redis_eq.modify(
            inserts=[TaskData("q", value=b"1")],
            doc_inserts=[DocData("ns", content=big) for _ in range(count)],
        )
    with pytest.raises(InvalidArgumentError, match="content is 16777217 bytes"):
        await redis_eq.modify(doc_inserts=[DocData("ns", content=big + b"!")])
    assert await redis_eq.tasks("q") == [] and await redis_eq.docs("ns") == []


async def test_doc_changes_and_deletes_of_many_namespaces_in_one_call(redis_eq: EntroQ) -> None:
    inserted = (
        await redis_eq.modify(doc_inserts=[DocData(f"ns{i}", id="d", key="k") for i in range(50)])
    ).inserted_docs
    result = await redis_eq.modify(
        doc_changes=[d.as_change(content=b"1", delay_ms=HOUR_MS) for d in inserted[:25]],
        doc_deletes=inserted[25:],
        doc_depends=[DocID(d.namespace, d.id, 0) for d in inserted],
    )
    assert [(d.namespace, d.version) for d in result.changed_docs] == [(f"ns{i}", 1) for i in range(25)]
    stats = await redis_eq.namespace_stats(prefixes=["ns"])
    assert [(s.name, s.num_docs, s.num_claimed) for s in stats] == sorted((f"ns{i}", 1, 1) for i in range(25))


async def test_a_lease_change_ignores_the_fields_it_does_not_move(
    sync_redis: redis.Redis, namespace: str
) -> None:
    # A lease change's key, secondary key and content are not even validated (lua/README.md section 6).
    call_modify(sync_redis, namespace, [0, 0, 0, 0, 1, 0, 0, 0], doc_insert())
    reply = call_modify(
        sync_redis,
        namespace,
        [0, 0, 0, 0, 0, 1, 0, 0],
        ["ns", "d", 0, "lease", "k" * 2000, "s" * 2000, "by", 60_000, "c" * 100],
    )
    assert isinstance(reply, list) and reply[0] == 1
    (changed,) = reply[4]
    assert (changed[5], changed[6], changed[7]) == (b"k", b"", b"{}")
    assert changed[3] == b"me"
