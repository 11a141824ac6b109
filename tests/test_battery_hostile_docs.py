"""Battery row f for the document store (docs/design.md 2.14): hostile doc namespaces, IDs, keys and contents.

Doc namespaces, IDs, keys and secondary keys may hold any bytes: NUL, ``{``, ``}``, ``:``,
Lua and RESP text, bytes that are not UTF-8 (0xFF, an overlong "/", through the library's
surrogateescape strings), up to their limits (namespace, key, secondary key 1,024 bytes; ID
256). Each must be stored and listed byte for byte (by key range, by ID, by key claim, in
the namespace stats), under keys of the test namespace's cluster slot only; keys holding NUL
and high bytes must sort as bytes do; a length prefix must keep (namespace, ID) pairs apart
that would read the same run together; one byte over a limit must be refused with a clear
error and nothing written.

Through the library on the session store (so on the stock Redis too in CI's second run).
"""

from __future__ import annotations

import pytest
import redis
from battery.hostile import HOSTILE_STRINGS, HOSTILE_VALUES, namespace_state, outside_namespace

import entroq_redis
from entroq_redis import Doc, DocChange, DocData, InvalidArgumentError, NamespaceStats
from entroq_redis._keys import Keys

# Not UTF-8: the library carries such bytes in str through surrogateescape, as names read
# from the store come back.
NOT_UTF8 = ["\udcff", "a\udcc0\udcafb", "\udced\udca0\udc80", "\udcff\x00\udcfe"]
LONG = ["{" * 256, "}:" * 128, "\x00" * 256, "\U0001f600" * 64]  # 256 bytes each
HOSTILE_DOC_STRINGS = HOSTILE_STRINGS + NOT_UTF8 + LONG


def raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def fields(doc: Doc) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """A doc's names and content as the bytes they stand for."""
    return raw(doc.namespace), raw(doc.id), raw(doc.key), raw(doc.secondary_key), doc.content


def doc_keys_left(client: redis.Redis, namespace: str) -> list[bytes]:
    """The namespace's keys other than doc set lock records (kept for good by design)."""
    prefix = raw(Keys(namespace).prefix)
    return [k for k in namespace_state(client, namespace) if not k.startswith(prefix + b"ds:")]


@pytest.mark.parametrize("text", HOSTILE_DOC_STRINGS, ids=[repr(s)[:24] for s in HOSTILE_DOC_STRINGS])
async def test_hostile_strings_as_doc_namespace_id_keys_and_claimant_round_trip(
    redis_eq: entroq_redis.EntroQ, sync_redis: redis.Redis, namespace: str, text: str
) -> None:
    content = raw(text) + b"\x00\xff"
    claimant = text if len(raw(text)) <= 128 else "w"
    eq = redis_eq.as_claimant(claimant)
    inserted = (
        await eq.modify(doc_inserts=[DocData(text, id=text, key=text, secondary_key=text, content=content)])
    ).inserted_docs
    expected = (raw(text), raw(text), raw(text), raw(text), content)
    assert [fields(d) for d in inserted] == [expected]
    assert (inserted[0].version, inserted[0].claimant) == (0, "")

    # Listed byte for byte: the whole namespace, the key's range, by ID, in the stats.
    for listing in (
        await eq.docs(text),
        await eq.docs(text, key_start=text, key_end=text + "\x00"),
        await eq.docs(text, ids=[text]),
    ):
        assert [fields(d) for d in listing] == [expected]
    assert await eq.docs(text, key_start=text + "\x00") == []
    assert await eq.namespace_stats(exact=[text]) == [NamespaceStats(text, 1, 0)]

    # Stored under exactly these bytes, in the namespace's slot only.
    keys = Keys(namespace)
    assert sync_redis.exists(raw(keys.doc(text, text)))
    assert sync_redis.zscore(raw(keys.doc_namespaces), raw(text)) == 0
    assert outside_namespace(list(namespace_state(sync_redis, namespace)), namespace) == []

    # Claimed by key, changed (the key moved) and deleted, all naming these bytes.
    claimed = await eq.claim_docs(text, text, 60_000)
    assert [fields(d) for d in claimed] == [expected]
    assert (claimed[0].version, claimed[0].claimant) == (1, claimant)
    assert await eq.namespace_stats(exact=[text]) == [NamespaceStats(text, 1, 1)]
    moved = (
        await eq.modify(doc_changes=[claimed[0].as_change(key=text + "/2", content=content + b"2", at=None)])
    ).changed_docs
    assert [fields(d) for d in moved] == [(raw(text), raw(text), raw(text + "/2"), raw(text), content + b"2")]
    assert [fields(d) for d in await eq.docs(text, key_start=text + "/2", key_end=text + "/3")] == [
        fields(moved[0])
    ]
    await eq.modify(doc_deletes=[moved[0]])
    assert await eq.docs(text) == []
    assert await eq.namespace_stats(exact=[text]) == []
    assert doc_keys_left(sync_redis, namespace) == []


async def test_keys_with_nul_and_high_bytes_sort_and_range_as_bytes(redis_eq: entroq_redis.EntroQ) -> None:
    # The index encodes NUL as 0x00 0xFF and ends each key with 0x00 0x01: order and ranges must
    # be those of the plain bytes, and a key must never take in its extensions.
    keys = ["", "\x00", "\x00\x00", "\x00\x01", "\x01", "a", "a\x00", "a\x00\x00", "a\x00b", "a\x01", "ab"]
    keys += ["\u00e9", "\udcff", "\udcff\x00", "\udcff\udcff"]
    skeys = ["", "\x00", "\x00\x01", "a", "\udcff"]
    items = [
        DocData("sort", id=f"{k}|{s}|{n}", key=k, secondary_key=s, content=b"%d" % n)
        for n, (k, s) in enumerate((k, s) for k in keys for s in skeys)
    ]
    await redis_eq.modify(doc_inserts=items)
    listed = await redis_eq.docs("sort")
    by_bytes = sorted(items, key=lambda d: (raw(d.key), raw(d.secondary_key), raw(d.id or "")))
    assert [d.id for d in listed] == [d.id for d in by_bytes]

    def in_range(start: str, end: str) -> list[str]:
        return [
            d.id or "" for d in by_bytes if raw(start) <= raw(d.key) and (not end or raw(d.key) < raw(end))
        ]

    for start, end in [
        ("a", "ab"),
        ("a\x00", "a\x01"),
        ("\x00", "\x01"),
        ("", "\x00"),
        ("\udcff", ""),
        ("a", "a"),
    ]:
        assert [d.id for d in await redis_eq.docs("sort", key_start=start, key_end=end)] == in_range(
            start, end
        ), (
            start,
            end,
        )
    for key in ("a", "\x00", "a\x00", "\udcff"):
        claimed = await redis_eq.claim_docs("sort", key, 60_000)
        assert [(raw(d.key), raw(d.secondary_key)) for d in claimed] == [
            (raw(key), raw(s)) for s in sorted(skeys, key=raw)
        ]
    # Paged: a limit of 7 at a time reads the same order.
    paged = await redis_eq.docs("sort", limit=7)
    assert [d.id for d in paged] == [d.id for d in by_bytes[:7]]


async def test_a_length_prefix_keeps_namespace_and_id_apart(
    redis_eq: entroq_redis.EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    # Run together, each pair reads "abc" or "1:ab": only the prefix tells them apart.
    pairs = [("a", "bc"), ("ab", "c"), ("abc", "\x00"), ("1", ":ab"), ("1:a", "b"), ("1:", "ab"), ("a:", "b")]
    await redis_eq.modify(
        doc_inserts=[DocData(ns, id=i, key="k", content=raw(ns + "|" + i)) for ns, i in pairs]
    )
    for ns, doc_id in pairs:
        listed = await redis_eq.docs(ns)
        assert [(d.id, d.content) for d in listed] == [(doc_id, raw(ns + "|" + doc_id))]
        assert sync_redis.get(raw(Keys(namespace).doc(ns, doc_id))) is not None
    stats = await redis_eq.namespace_stats(exact=[ns for ns, _ in pairs])
    assert sorted(s.name for s in stats) == sorted(ns for ns, _ in pairs)
    assert all(s.num_docs == 1 for s in stats)
    # Deleting one leaves every other.
    first = (await redis_eq.docs("a"))[0]
    await redis_eq.modify(doc_deletes=[first])
    for ns, doc_id in pairs[1:]:
        assert [d.id for d in await redis_eq.docs(ns)] == [doc_id]


@pytest.mark.parametrize("content", HOSTILE_VALUES, ids=[repr(v)[:20] for v in HOSTILE_VALUES])
async def test_hostile_contents_round_trip_byte_for_byte(
    redis_eq: entroq_redis.EntroQ, sync_redis: redis.Redis, namespace: str, content: bytes
) -> None:
    doc = (await redis_eq.modify(doc_inserts=[DocData("v", key="k", content=content)])).inserted_docs[0]
    assert [d.content for d in await redis_eq.docs("v")] == [content]
    assert [d.content for d in await redis_eq.claim_docs("v", "k")] == [content]
    record = sync_redis.get(raw(Keys(namespace).doc("v", doc.id)))
    assert isinstance(record, bytes) and record.endswith(content)


async def test_one_byte_over_each_limit_is_refused_with_nothing_written(
    redis_eq: entroq_redis.EntroQ, sync_redis: redis.Redis, namespace: str
) -> None:
    # The limits count bytes of UTF-8: 2-byte "é" and 4-byte emoji fill them exactly.
    at_limit = DocData("é" * 512, id="\U0001f600" * 64, key="{" * 1024, secondary_key="\x00" * 1024)
    stored = (await redis_eq.modify(doc_inserts=[at_limit])).inserted_docs[0]
    assert (len(raw(stored.namespace)), len(raw(stored.id)), len(raw(stored.key))) == (1024, 256, 1024)
    assert [d.id for d in await redis_eq.docs(at_limit.namespace)] == [stored.id]
    assert len(await redis_eq.claim_docs(at_limit.namespace, at_limit.key, 1000)) == 1
    before = namespace_state(sync_redis, namespace)
    over = [
        DocData("é" * 512 + "x", id="a", key="k"),
        DocData("n", id="\U0001f600" * 64 + "x", key="k"),
        DocData("n", id="a", key="{" * 1025),
        DocData("n", id="a", key="k", secondary_key="\x00" * 1025),
        DocData("", id="a", key="k"),
    ]
    for item in over:
        with pytest.raises(InvalidArgumentError) as refused:
            await redis_eq.modify(doc_inserts=[DocData("n", id="fine", key="k"), item])
        assert str(refused.value)
    with pytest.raises(InvalidArgumentError):
        await redis_eq.modify(doc_changes=[DocChange("n", "\U0001f600" * 64 + "x", 0, key="k")])
    with pytest.raises(InvalidArgumentError):
        await redis_eq.claim_docs("n", "{" * 1025)
    with pytest.raises(InvalidArgumentError):
        await redis_eq.claim_docs("é" * 512 + "x", "k")
    with pytest.raises(InvalidArgumentError):
        await redis_eq.docs("é" * 512 + "x")
    assert namespace_state(sync_redis, namespace) == before
