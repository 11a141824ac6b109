"""Doc modify semantics through the library only.

The rules: docs/design.md 2.14, docs/reference/entroq-v1-grpc-and-docs.md 4.

Nothing here looks at the store directly, so the same tests run over every backend: the two
fixtures below are ``eq`` and ``other`` (the Redis store, the HTTP service, the cluster when
enabled, and the service's gRPC port). Store-level checks (key layout, records, script
errors) are in tests/test_docs_modify.py.

Contents are small JSON documents, as EntroQ's v1 wire carries them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from entroq_redis import (
    DependencyError,
    Doc,
    DocChange,
    DocData,
    DocID,
    DocSet,
    EntroQ,
    InvalidArgumentError,
    TaskChange,
    TaskData,
    TaskID,
)
from entroq_redis._errors import DocDependencyFailure

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HOUR_MS = 3_600_000


@pytest.fixture
async def docs_eq(eq: EntroQ) -> AsyncIterator[EntroQ]:
    """The client under test, on every backend."""
    yield eq


@pytest.fixture
async def docs_other(other: EntroQ) -> AsyncIterator[EntroQ]:
    """A second claimant in the same namespace, on the same backend."""
    yield other


def failures(error: DependencyError) -> list[tuple[str, str, str, str, int, int, str]]:
    """The doc failures as plain tuples, in the order reported."""
    return [
        (f.kind, f.reason, f.namespace, f.id, f.version, f.current_version, f.key) for f in error.doc_failures
    ]


async def read(eq: EntroQ, namespace: str, *ids: str) -> list[Doc]:
    return await eq.docs(namespace, ids=ids)


# --- inserts -----------------------------------------------------------------------------------


async def test_inserted_docs_start_at_version_zero_and_are_not_held(docs_eq: EntroQ) -> None:
    before = await docs_eq.time()
    result = await docs_eq.modify(
        doc_inserts=[
            DocData("accounts", id="acct-1", key="customer-7", secondary_key="a", content=b'{"n": 1}'),
            DocData("accounts", key="customer-7", secondary_key="b", content=b'{"n": 2}'),
        ]
    )
    assert result.inserted == [] and result.changed == [] and result.changed_docs == []
    first, second = result.inserted_docs
    assert first.id == "acct-1" and UUID4.match(second.id), second.id
    for doc in (first, second):
        assert doc.namespace == "accounts" and doc.key == "customer-7"
        assert doc.version == 0 and doc.claimant == ""
        assert doc.created_ms == doc.modified_ms == doc.at_ms >= before
    assert [d.content for d in result.inserted_docs] == [b'{"n": 1}', b'{"n": 2}']
    assert await read(docs_eq, "accounts", "acct-1", second.id) == [first, second]


async def test_an_insert_with_a_future_arrival_is_still_not_held(docs_eq: EntroQ, docs_other: EntroQ) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="later", delay_ms=HOUR_MS)])).inserted_docs
    assert doc.claimant == "" and doc.at_ms > doc.created_ms
    # Not held, so anybody may change it.
    (changed,) = (await docs_other.modify(doc_changes=[doc.as_change(content=b"{}", at=None)])).changed_docs
    assert changed.version == 1


async def test_generated_doc_ids_differ_from_the_task_ids_of_the_same_call(docs_eq: EntroQ) -> None:
    result = await docs_eq.modify(
        inserts=[TaskData("q"), TaskData("q")], doc_inserts=[DocData("ns"), DocData("ns"), DocData("other")]
    )
    ids = [t.id for t in result.inserted] + [d.id for d in result.inserted_docs]
    assert len(set(ids)) == 5 and all(UUID4.match(i) for i in ids), ids


async def test_an_existing_id_is_an_insert_collision(docs_eq: EntroQ) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d", key="k1")])).inserted_docs
    # The same ID in another doc namespace is another doc.
    await docs_eq.modify(doc_inserts=[DocData("ns2", id="d")])
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(doc_inserts=[DocData("ns", id="d", key="k2", content=b"{}")])
    assert failures(caught.value) == [("INSERT", "collision", "ns", "d", 0, 0, "k1")]
    assert caught.value.failures == ()
    assert await read(docs_eq, "ns", "d") == [doc]


# --- changes -----------------------------------------------------------------------------------


async def test_a_change_bumps_the_version_and_a_future_arrival_makes_the_modifier_hold_it(
    docs_eq: EntroQ,
) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d", key="k", content=b"1")])).inserted_docs
    now = await docs_eq.time()
    (held,) = (
        await docs_eq.modify(
            doc_changes=[DocChange("ns", "d", 0, key="k2", secondary_key="s", content=b"2", delay_ms=HOUR_MS)]
        )
    ).changed_docs
    assert (held.version, held.claimant, held.key, held.secondary_key, held.content) == (
        1,
        docs_eq.claimant_id,
        "k2",
        "s",
        b"2",
    )
    assert held.at_ms >= now + HOUR_MS and held.created_ms == doc.created_ms and held.modified_ms >= now
    # A change to now (or the past) releases it.
    (released,) = (await docs_eq.modify(doc_changes=[held.as_change(at=None)])).changed_docs
    assert (released.version, released.claimant, released.content) == (2, "", b"2")
    assert released.at_ms == released.modified_ms
    assert await read(docs_eq, "ns", "d") == [released]


async def test_an_arrival_in_the_past_releases_at_now(docs_eq: EntroQ) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d")])).inserted_docs
    (changed,) = (await docs_eq.modify(doc_changes=[doc.as_change(at=1_000)])).changed_docs
    assert changed.claimant == "" and changed.at_ms == changed.modified_ms


async def test_a_lease_change_moves_only_the_arrival(docs_eq: EntroQ) -> None:
    (doc,) = (
        await docs_eq.modify(doc_inserts=[DocData("ns", id="d", key="k", secondary_key="s", content=b"[1]")])
    ).inserted_docs
    lease = DocChange("ns", "d", 0, key="ignored", content=b"ignored", delay_ms=HOUR_MS, mode="lease")
    (renewed,) = (await docs_eq.modify(doc_changes=[lease])).changed_docs
    assert (renewed.key, renewed.secondary_key, renewed.content) == ("k", "s", b"[1]")
    assert renewed.version == 1 and renewed.claimant == docs_eq.claimant_id and renewed.at_ms > doc.at_ms
    (renewed_again,) = await docs_eq.renew_docs_for([renewed], 2 * HOUR_MS)
    assert renewed_again.version == 2 and renewed_again.at_ms > renewed.at_ms


async def test_a_stale_or_missing_change_is_refused_with_its_details(docs_eq: EntroQ) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d", key="k")])).inserted_docs
    (changed,) = (await docs_eq.modify(doc_changes=[doc.as_change(content=b"1")])).changed_docs
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(
            doc_changes=[doc.as_change(content=b"stale"), DocChange("ns", "nobody", 3, key="kk")]
        )
    assert failures(caught.value) == [
        ("CHANGE", "mismatch", "ns", "d", 0, 1, "k"),
        ("CHANGE", "missing", "ns", "nobody", 3, -1, "kk"),
    ]
    assert caught.value.doc_failures[0].as_id() == DocID("ns", "d", 0, "k")
    assert "doc d" in str(caught.value) and "version 1, not 0" in str(caught.value)
    assert await read(docs_eq, "ns", "d") == [changed]


# --- the CLAIM check -------------------------------------------------------------------------


async def test_a_doc_held_by_another_claimant_cannot_be_changed_or_deleted(
    docs_eq: EntroQ, docs_other: EntroQ
) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d", key="k")])).inserted_docs
    (held,) = (await docs_eq.modify(doc_changes=[doc.as_change(delay_ms=HOUR_MS)])).changed_docs
    for attempt in (
        {"doc_changes": [held.as_change(content=b"{}")]},
        {"doc_changes": [DocChange("ns", "d", held.version, delay_ms=HOUR_MS, mode="lease")]},
        {"doc_deletes": [held]},
    ):
        with pytest.raises(DependencyError) as caught:
            await docs_other.modify(**attempt)  # type: ignore[arg-type]
        assert failures(caught.value) == [("CLAIM", "claimed", "ns", "d", 1, 1, "k")]
    # Depends never check the claimant; the holder itself may change it.
    await docs_other.modify(doc_depends=[held])
    (mine,) = (await docs_eq.modify(doc_changes=[held.as_change(content=b"[]")])).changed_docs
    assert mine.claimant == docs_eq.claimant_id and mine.version == 2


# --- deletes and depends ---------------------------------------------------------------------


async def test_deletes_and_depends(docs_eq: EntroQ) -> None:
    inserted = (
        await docs_eq.modify(doc_inserts=[DocData("ns", id="a", key="k"), DocData("ns", id="b", key="k")])
    ).inserted_docs
    a, b = inserted
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(
            doc_deletes=[DocID("ns", "a", 5), DocID("ns", "zz", 0)],
            doc_depends=[DocID("ns", "b", 1), DocID("ns", "yy", 0)],
        )
    assert failures(caught.value) == [
        ("DELETE", "mismatch", "ns", "a", 5, 0, "k"),
        ("DELETE", "missing", "ns", "zz", 0, -1, ""),
        ("DEPEND", "mismatch", "ns", "b", 1, 0, "k"),
        ("DEPEND", "missing", "ns", "yy", 0, -1, ""),
    ]
    # A depend may name a doc deleted or changed in the same call (checked before it).
    result = await docs_eq.modify(doc_deletes=[a], doc_depends=[a, b])
    assert result.inserted_docs == result.changed_docs == []
    assert await read(docs_eq, "ns", "a", "b") == [b]


# --- all or nothing, every failure -----------------------------------------------------------


async def test_every_failing_doc_item_is_reported_and_nothing_is_written(docs_eq: EntroQ) -> None:
    existing = (
        await docs_eq.modify(doc_inserts=[DocData("ns", id=i, key="k") for i in ("a", "b", "c", "d")])
    ).inserted_docs
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(
            doc_inserts=[DocData("ns", id="new"), DocData("ns", id="a")],
            doc_changes=[existing[1].as_change(content=b"ok"), DocChange("ns", "c", 9)],
            doc_deletes=[DocID("ns", "gone", 0), existing[3]],
            doc_depends=[DocID("ns", "b", 4)],
        )
    assert failures(caught.value) == [
        ("INSERT", "collision", "ns", "a", 0, 0, "k"),
        ("CHANGE", "mismatch", "ns", "c", 9, 0, "k"),
        ("DELETE", "missing", "ns", "gone", 0, -1, ""),
        ("DEPEND", "mismatch", "ns", "b", 4, 0, "k"),
    ]
    assert await read(docs_eq, "ns", "new", "a", "b", "c", "d") == existing


async def test_a_failing_doc_item_leaves_the_tasks_unwritten(docs_eq: EntroQ) -> None:
    (task,), _ = await docs_eq.modify(inserts=[TaskData("q", id="t", value=b"v")])
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d")])).inserted_docs
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(
            inserts=[TaskData("q", id="t2")],
            changes=[task.as_change(value=b"changed")],
            doc_changes=[DocChange("ns", "d", 7)],
        )
    assert caught.value.failures == ()
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "d", 7, 0, "")]
    assert await docs_eq.tasks("q") == [task]
    assert await read(docs_eq, "ns", "d") == [doc]


async def test_a_failing_task_item_leaves_the_docs_unwritten(docs_eq: EntroQ) -> None:
    (doc,) = (await docs_eq.modify(doc_inserts=[DocData("ns", id="d")])).inserted_docs
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(
            changes=[TaskChange("no-such-task", 0, "q")],
            doc_inserts=[DocData("ns", id="new")],
            doc_changes=[doc.as_change(content=b"1")],
            doc_deletes=[],
        )
    assert [(f.kind, f.reason, f.id) for f in caught.value.failures] == [
        ("CHANGE", "missing", "no-such-task")
    ]
    assert caught.value.doc_failures == ()
    assert await read(docs_eq, "ns", "d", "new") == [doc]


async def test_task_and_doc_failures_are_reported_together(docs_eq: EntroQ) -> None:
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(depends=[TaskID("t", 0)], doc_depends=[DocID("n", "d", 0)])
    assert [(f.kind, f.reason, f.id) for f in caught.value.failures] == [("DEPEND", "missing", "t")]
    assert failures(caught.value) == [("DEPEND", "missing", "n", "d", 0, -1, "")]


async def test_a_mixed_modify_applies_tasks_and_docs_together(docs_eq: EntroQ) -> None:
    (task,), _ = await docs_eq.modify(inserts=[TaskData("q", id="t")])
    inserted = (await docs_eq.modify(doc_inserts=[DocData("a", id="x"), DocData("b", id="y")])).inserted_docs
    result = await docs_eq.modify(
        inserts=[TaskData("q", id="t2")],
        changes=[task.as_change(value=b"v")],
        doc_inserts=[DocData("c", id="z", content=b"{}")],
        doc_changes=[inserted[0].as_change(content=b"[]")],
        doc_deletes=[inserted[1]],
    )
    inserted_tasks, changed_tasks = result
    assert [t.id for t in inserted_tasks] == ["t2"] and [t.value for t in changed_tasks] == [b"v"]
    assert [(d.namespace, d.id, d.version) for d in result.inserted_docs] == [("c", "z", 0)]
    assert [(d.namespace, d.id, d.version, d.content) for d in result.changed_docs] == [("a", "x", 1, b"[]")]
    assert await read(docs_eq, "b", "y") == []


# --- doc sets ----------------------------------------------------------------------------------


async def test_a_set_held_by_another_protects_its_members(docs_eq: EntroQ, docs_other: EntroQ) -> None:
    member, outside = (
        await docs_eq.modify(
            doc_inserts=[DocData("ns", id="m", key="locked"), DocData("ns", id="o", key="free")]
        )
    ).inserted_docs
    (lock,) = (await docs_other.claim_doc_sets([DocSet("ns", "locked", omit_members=True)], HOUR_MS)).sets
    assert lock.is_set_ref() and lock.claimant == docs_other.claimant_id
    set_failure = ("CLAIM", "claimed", "ns", "", lock.version, lock.version, "locked")
    attempts = {
        "insert into it": {"doc_inserts": [DocData("ns", id="n", key="locked")]},
        "change a member": {"doc_changes": [member.as_change(content=b"1")]},
        "renew a member": {"doc_changes": [DocChange("ns", "m", 0, delay_ms=1000, mode="lease")]},
        "delete a member": {"doc_deletes": [member]},
        "move a doc into it": {"doc_changes": [outside.as_change(key="locked")]},
        "move a member out": {"doc_changes": [member.as_change(key="free")]},
    }
    for name, attempt in attempts.items():
        with pytest.raises(DependencyError) as caught:
            await docs_eq.modify(**attempt)  # type: ignore[arg-type]
        assert failures(caught.value) == [set_failure], name
    # Several items touching the held set: the set is reported once.
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(
            doc_inserts=[DocData("ns", id="n1", key="locked"), DocData("ns", id="n2", key="locked")],
            doc_deletes=[member],
        )
    assert failures(caught.value) == [set_failure]
    # Depends are not claim-checked; docs of other keys are free; the holder may change members.
    await docs_eq.modify(doc_depends=[member], doc_changes=[outside.as_change(content=b"2")])
    (changed,) = (await docs_other.modify(doc_changes=[member.as_change(content=b"3")])).changed_docs
    assert changed.version == lock.version + 1  # above the lock of its set (lua/README.md section 6)
    assert await read(docs_eq, "ns", "n", "n1", "n2") == []


async def test_a_set_lease_change_renews_and_releases_the_lock(docs_eq: EntroQ, docs_other: EntroQ) -> None:
    await docs_eq.modify(doc_inserts=[DocData("ns", id="m", key="k")])
    claimed = await docs_eq.claim_doc_sets([DocSet("ns", "k")], 60_000)
    (lock,) = claimed.sets
    now = await docs_eq.time()
    (renewed,) = await docs_eq.renew_docs_for([lock], HOUR_MS)
    assert renewed.is_set_ref() and renewed.key == "k" and renewed.namespace == "ns"
    assert (renewed.version, renewed.claimant) == (lock.version + 1, docs_eq.claimant_id)
    assert renewed.at_ms >= now + HOUR_MS
    assert (renewed.id, renewed.secondary_key, renewed.content, renewed.created_ms) == ("", "", b"", 0)
    # The stale version of the lock no longer matches; the other claimant cannot touch it.
    with pytest.raises(DependencyError) as caught:
        await docs_eq.renew_docs_for([lock], HOUR_MS)
    assert failures(caught.value) == [("CHANGE", "mismatch", "ns", "", lock.version, renewed.version, "k")]
    with pytest.raises(DependencyError) as caught:
        await docs_other.modify(doc_changes=[renewed.as_change(at=None, mode="lease")])
    assert failures(caught.value) == [("CLAIM", "claimed", "ns", "", renewed.version, renewed.version, "k")]
    # Released: the members are free again.
    (released,) = (await docs_eq.modify(doc_changes=[renewed.as_change(at=None, mode="lease")])).changed_docs
    assert (released.version, released.claimant) == (renewed.version + 1, "")
    await docs_other.modify(doc_inserts=[DocData("ns", id="n", key="k")])


async def test_a_set_that_was_never_claimed_cannot_be_renewed(docs_eq: EntroQ) -> None:
    with pytest.raises(DependencyError) as caught:
        await docs_eq.modify(doc_changes=[DocChange("ns", "", 0, key="never", delay_ms=1000, mode="lease")])
    assert failures(caught.value) == [("CHANGE", "missing", "ns", "", 0, -1, "never")]


async def test_a_set_and_its_members_renewed_in_one_modify(docs_eq: EntroQ) -> None:
    await docs_eq.modify(doc_inserts=[DocData("ns", id="m", key="k")])
    claimed = await docs_eq.claim_doc_sets([DocSet("ns", "k")], 60_000)
    (member,) = claimed.docs
    (lock,) = claimed.sets
    changed = await docs_eq.renew_docs_for([lock, member], HOUR_MS)
    # The member is written first, above the lock (version 1 over its 0); the lock then goes
    # above the member (lua/README.md section 6).
    assert (member.version, lock.version) == (0, 1)
    assert [(d.id, d.version) for d in changed] == [("", 3), ("m", 2)]


# --- input the library refuses before sending --------------------------------------------------


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"doc_inserts": [DocData("")]}, "namespace must not be empty"),
        ({"doc_inserts": [DocData("n" * 1025)]}, "longer than 1024"),
        ({"doc_inserts": [DocData("ns", id="i" * 257)]}, "longer than 256"),
        ({"doc_inserts": [DocData("ns", key="k" * 1025)]}, "key is 1025 bytes"),
        ({"doc_inserts": [DocData("ns", secondary_key="é" * 513)]}, "secondary key is 1026 bytes"),
        ({"doc_changes": [DocChange("ns", "", 0, key="k")]}, "only have its lease changed"),
        ({"doc_changes": [DocChange("ns", "", 0, mode="lease")]}, "needs an id, or a key"),
        ({"doc_changes": [DocChange("ns", "d", -1)]}, "version must be an integer"),
        ({"doc_changes": [DocChange("ns", "d", 0, mode="sideways")]}, "mode must be"),  # type: ignore[arg-type]
        ({"doc_deletes": [DocID("ns", "", 0, key="k")]}, "needs a doc id"),
        ({"doc_depends": [DocID("ns", "", 0)]}, "needs a doc id"),
        (
            {"doc_changes": [DocChange("ns", "d", 0)], "doc_deletes": [DocID("ns", "d", 0)]},
            "more than once",
        ),
        ({"doc_inserts": [DocData("ns", id="d"), DocData("ns", id="d")]}, "more than once"),
        (
            {"doc_changes": [DocChange("ns", "", 0, key="k", mode="lease")] * 2},
            "doc set 'k' in doc namespace 'ns' is inserted, changed or deleted more than once",
        ),
    ],
)
async def test_malformed_doc_items_are_refused_before_anything_is_sent(
    docs_eq: EntroQ, items: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        await docs_eq.modify(inserts=[TaskData("q", id="not-inserted")], **items)  # type: ignore[arg-type]
    assert await docs_eq.tasks("q") == []


async def test_the_limits_themselves_are_accepted(docs_eq: EntroQ) -> None:
    doc = DocData("n" * 1024, id="i" * 256, key="k" * 1024, secondary_key="s" * 1024, content=b"{}")
    (inserted,) = (await docs_eq.modify(doc_inserts=[doc])).inserted_docs
    assert (len(inserted.namespace), len(inserted.id), len(inserted.key)) == (1024, 256, 1024)
    # The same doc may be depended on twice, and depended on while it is changed.
    await docs_eq.modify(doc_changes=[inserted.as_change()], doc_depends=[inserted, inserted])


def test_a_failure_describes_a_set_by_its_key() -> None:
    failure = DocDependencyFailure("CLAIM", "claimed", "ns", "", 3, 3, "k")
    assert failure.describe() == "claimed: doc set 'k' v3 in doc namespace 'ns' is held by another claimant"
