"""The document store through the library, the same on every backend (``eq``/``other``: the
Redis store directly, the HTTP service, the cluster when enabled, and the service's gRPC port):
modify with docs and tasks, listings, doc claims, doc set claims, namespace stats, and
dependency errors naming the failing docs.

Contents are UTF-8 here: the gRPC backend carries library bytes as v1 string Values (see
tests/grpc_backend.py), so only text round-trips exactly on every backend.
"""

from __future__ import annotations

import pytest

import entroq_redis
from entroq_redis import DocChange, DocData, DocID, DocSet, TaskData


async def test_modify_with_docs_and_tasks(eq: entroq_redis.EntroQ) -> None:
    result = await eq.modify(
        [TaskData("/q", value=b"task")],
        doc_inserts=[
            DocData("ns", id="d1", key="k", secondary_key="b", content=b"one"),
            DocData("ns", key="k", secondary_key="a", content=b"two"),
        ],
    )
    inserted, changed = result
    assert [t.value for t in inserted] == [b"task"] and changed == []
    first, second = result.inserted_docs
    assert (first.namespace, first.id, first.version, first.key, first.content) == (
        "ns",
        "d1",
        0,
        "k",
        b"one",
    )
    assert first.claimant == "" and len(second.id) == 36
    # A full change, then the listing sees it.
    changed_result = await eq.modify(doc_changes=[first.as_change(content=b"uno", at=None)])
    (new,) = changed_result.changed_docs
    assert (new.id, new.version, new.content, new.claimant) == ("d1", 1, b"uno", "")
    docs = await eq.docs("ns")
    assert [(d.id, d.content) for d in docs] == [(second.id, b"two"), ("d1", b"uno")]  # by secondary key
    # Delete and depend.
    await eq.modify(doc_deletes=[new], doc_depends=[second])
    assert [d.id for d in await eq.docs("ns")] == [second.id]


async def test_listing_by_range_ids_and_limit(eq: entroq_redis.EntroQ) -> None:
    await eq.modify(
        doc_inserts=[
            DocData("ns", id=f"{k}{s}", key=k, secondary_key=s, content=b"c") for k in "abc" for s in "21"
        ]
    )
    assert [d.id for d in await eq.docs("ns", key_start="b")] == ["b1", "b2", "c1", "c2"]
    assert [d.id for d in await eq.docs("ns", key_start="a", key_end="b")] == ["a1", "a2"]
    assert [d.id for d in await eq.docs("ns", limit=3)] == ["a1", "a2", "b1"]
    assert [d.id for d in await eq.docs("ns", ids=["c2", "nope", "a1"])] == ["c2", "a1"]
    # More IDs than one page of the store (and one listing of the service) holds.
    many = [f"missing-{i}" for i in range(1200)] + ["b2"] + [f"gone-{i}" for i in range(900)] + ["a1"]
    assert [d.id for d in await eq.docs("ns", ids=many)] == ["b2", "a1"]
    assert all(d.content == b"" for d in await eq.docs("ns", omit_values=True))
    assert await eq.docs("other-ns") == []
    with pytest.raises(entroq_redis.InvalidArgumentError):
        await eq.docs("")


async def test_claim_docs_all_or_nothing(eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ) -> None:
    await eq.modify(doc_inserts=[DocData("ns", id=i, key="k", secondary_key=i) for i in ("y", "x")])
    claimed = await eq.claim_docs("ns", "k", 60_000)
    assert [(d.id, d.version, d.claimant) for d in claimed] == [
        ("x", 1, eq.claimant_id),
        ("y", 1, eq.claimant_id),
    ]
    with pytest.raises(entroq_redis.DependencyError) as caught:
        await other.claim_docs("ns", "k", 60_000)
    assert {(f.kind, f.id) for f in caught.value.doc_failures} == {("CLAIM", "x"), ("CLAIM", "y")}
    assert caught.value.failures == ()
    # The holder renews its docs; nothing else changed them.
    renewed = await eq.renew_docs_for(claimed, 90_000)
    assert [d.version for d in renewed] == [2, 2]
    assert await other.claim_docs("ns", "no-such-key") == []


async def test_doc_sets(eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ) -> None:
    await eq.modify(
        doc_inserts=[DocData("ns", id="m1", key="s", content=b"1"), DocData("ns", id="m2", key="s")]
    )
    claimed = await eq.claim_doc_sets([DocSet("ns", "s")], 60_000)
    (lock,) = claimed.sets
    assert lock.is_set_ref() and (lock.key, lock.claimant) == ("s", eq.claimant_id)
    assert [d.id for d in claimed.docs] == ["m1", "m2"]
    # The held set protects its members from another claimant.
    with pytest.raises(entroq_redis.DependencyError) as caught:
        await other.modify(doc_inserts=[DocData("ns", id="m3", key="s")])
    assert [(f.kind, f.reason) for f in caught.value.doc_failures] == [("CLAIM", "claimed")]
    with pytest.raises(entroq_redis.DependencyError):
        await other.claim_doc_sets([DocSet("ns", "s", omit_members=True)], 1_000)
    # Renewed and released by lease changes naming the set.
    (renewed,) = await eq.renew_docs_for([lock], 90_000)
    assert renewed.is_set_ref() and renewed.version == lock.version + 1
    released = await eq.modify(
        doc_changes=[DocChange("ns", "", renewed.version, key="s", mode="lease", delay_ms=0)]
    )
    assert released.changed_docs[0].claimant == ""
    again = await other.claim_doc_sets([DocSet("ns", "s", omit_members=True)], 1_000)
    assert again.docs == [] and again.sets[0].claimant == other.claimant_id


async def test_doc_sets_follow_a_tasks_lease(eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ) -> None:
    await eq.modify([TaskData("/work", value=b"w")])
    task = await eq.try_claim("/work", 45_000)
    assert task is not None
    claimed = await eq.claim_doc_sets([DocSet("ns", "k")], task_to_match=task)
    assert claimed.sets[0].at_ms == task.at_ms
    with pytest.raises(entroq_redis.DependencyError) as caught:
        await other.claim_doc_sets([DocSet("ns", "k2")], task_to_match=task)
    assert [(f.kind, f.id) for f in caught.value.failures] == [("DEPEND", task.id)]


async def test_namespace_stats(eq: entroq_redis.EntroQ) -> None:
    await eq.modify(
        doc_inserts=[
            DocData("app/a", key="k"),
            DocData("app/a", key="j"),
            DocData("app/b", key="k"),
            DocData("x", key="k"),
        ]
    )
    await eq.claim_docs("app/a", "k", 60_000)
    stats = await eq.namespace_stats(["app/"])
    assert [(s.name, s.num_docs, s.num_claimed) for s in stats] == [("app/a", 2, 1), ("app/b", 1, 0)]
    assert [s.name for s in await eq.namespace_stats(exact=["x"])] == ["x"]
    assert [s.name for s in await eq.namespace_stats(limit=1)] == ["app/a"]


async def test_dependency_errors_name_every_failing_doc(eq: entroq_redis.EntroQ) -> None:
    result = await eq.modify(doc_inserts=[DocData("ns", id="d", key="k"), DocData("ns", id="e", key="k")])
    _, doc = result.inserted_docs
    with pytest.raises(entroq_redis.DependencyError) as caught:
        await eq.modify(
            [TaskData("/never", value=b"x")],
            doc_inserts=[DocData("ns", id="d", key="k")],
            doc_changes=[DocChange("ns", "gone", 0, key="k")],
            doc_deletes=[DocID("ns", "e", 5)],
            doc_depends=[DocID("other", "d", 0)],
        )
    found = {(f.kind, f.reason, f.namespace, f.id) for f in caught.value.doc_failures}
    assert found == {
        ("INSERT", "collision", "ns", "d"),
        ("CHANGE", "missing", "ns", "gone"),
        ("DELETE", "mismatch", "ns", "e"),
        ("DEPEND", "missing", "other", "d"),
    }
    mismatch = next(f for f in caught.value.doc_failures if f.kind == "DELETE")
    assert (mismatch.version, mismatch.current_version) == (5, doc.version)
    assert await eq.tasks("/never") == []
    assert [d.version for d in await eq.docs("ns")] == [0, 0]
