"""The document store over gRPC, as EntroQ v1's clients call it: grpcio stubs generated from
tests/protos (v1: contents are google.protobuf.Value; ``--grpc-values bytes``: bytes), against
real service processes. Dependency failures are NOT_FOUND with ``api.ModifyDep`` details naming
the docs in ``doc_id`` (ClaimDocs: "claim docs dependency error"); bad input INVALID_ARGUMENT
with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import grpc_support
import pytest
from conftest import ServiceProcess, start_service
from google.protobuf import json_format

V1 = grpc_support.v1()
pb2: Any = V1.pb2
LEASE = pb2.ChangeMode.values_by_name["CHANGE_LEASE"].number


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace")
    yield process
    process.stop()


@pytest.fixture
def stub(service: ServiceProcess) -> Iterator[Any]:
    assert service.grpc_url is not None
    with grpc_support.channel(service.grpc_url) as channel:
        yield V1.stub(channel)


def md(namespace: str) -> list[tuple[str, str]]:
    return [("entroq-namespace", namespace)]


def value(data: Any) -> Any:
    return json_format.ParseDict(data, pb2.Value())


def content(doc: Any) -> Any:
    return json_format.MessageToDict(doc.content)


def failure(call: Any, request: Any, namespace: str) -> tuple[grpc.RpcError, list[Any]]:
    """The error of a refused call and its ModifyDep details (the DETAIL entry first)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=md(namespace))
    error = caught.value
    status = grpc_support.status_details(error)
    deps = [pb2.ModifyDep.FromString(d.value) for d in status.details] if status is not None else []
    return error, deps


def test_modify_docs_with_a_task_and_list_them(stub: Any, namespace: str) -> None:
    request = pb2.ModifyRequest(
        claimant_id="w",
        inserts=[pb2.TaskData(queue="/g", value=value({"job": 1}))],
        doc_inserts=[
            pb2.DocData(namespace="n", id="a", key="k", secondary_key="2", content=value({"x": [1, "y"]})),
            pb2.DocData(namespace="n", id="b", key="k", secondary_key="1", content=value(3.5)),
            pb2.DocData(namespace="n", key="z"),
        ],
    )
    response = stub.Modify(request, metadata=md(namespace))
    assert [t.queue for t in response.inserted] == ["/g"]
    a, b, generated = response.inserted_docs
    assert (a.id, a.version, a.claimant, content(a)) == ("a", 0, "", {"x": [1, "y"]})
    assert content(b) == 3.5 and len(generated.id) == 36 and not generated.HasField("content")
    listed = stub.Docs(
        pb2.DocsRequest(query=pb2.DocQuery(namespace="n", key_end="l")), metadata=md(namespace)
    )
    assert [d.id for d in listed.docs] == ["b", "a"]  # by (key, secondary key)
    by_ids = stub.Docs(
        pb2.DocsRequest(query=pb2.DocQuery(namespace="n", ids=["a", "gone"])), metadata=md(namespace)
    )
    assert [d.id for d in by_ids.docs] == ["a"]
    exact = stub.Docs(
        pb2.DocsRequest(query=pb2.DocQuery(namespace="n", key_exact="z", omit_values=True)),
        metadata=md(namespace),
    )
    assert [d.id for d in exact.docs] == [generated.id]


def test_a_stale_doc_change_is_not_found_with_doc_id_details(stub: Any, namespace: str) -> None:
    stub.Modify(
        pb2.ModifyRequest(doc_inserts=[pb2.DocData(namespace="n", id="d", key="k")]), metadata=md(namespace)
    )
    change = pb2.DocChange(
        old_id=pb2.DocID(namespace="n", id="d", version=0),
        new_data=pb2.DocData(namespace="n", key="k", content=value("new")),
    )
    changed = stub.Modify(pb2.ModifyRequest(doc_changes=[change]), metadata=md(namespace)).changed_docs
    assert [(d.version, content(d)) for d in changed] == [(1, "new")]
    stale = pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/stale")], doc_changes=[change])
    error, deps = failure(stub.Modify, stale, namespace)
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert error.details().startswith("modification dependency error")  # type: ignore[attr-defined]
    detail, dep = deps
    assert detail.type == pb2.ActionType.values_by_name["DETAIL"].number
    assert dep.type == pb2.ActionType.values_by_name["CHANGE"].number and dep.reason == "mismatch"
    assert (dep.doc_id.namespace, dep.doc_id.id, dep.doc_id.version, dep.current_version) == ("n", "d", 0, 1)
    assert stub.Tasks(pb2.TasksRequest(queue="/stale"), metadata=md(namespace)).tasks == []


def test_claim_docs_conflict_is_a_claim_docs_dependency_error(stub: Any, namespace: str) -> None:
    stub.Modify(
        pb2.ModifyRequest(
            doc_inserts=[pb2.DocData(namespace="n", id=i, key="k", secondary_key=i) for i in ("2", "1")]
        ),
        metadata=md(namespace),
    )
    claim = pb2.DocClaim(namespace="n", claimant="w1", key="k", duration_ms=60_000)
    claimed = stub.ClaimDocs(pb2.ClaimDocsRequest(claim_query=claim), metadata=md(namespace)).docs
    assert [(d.id, d.version, d.claimant) for d in claimed] == [("1", 1, "w1"), ("2", 1, "w1")]
    claim.claimant = "w2"
    error, deps = failure(stub.ClaimDocs, pb2.ClaimDocsRequest(claim_query=claim), namespace)
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert error.details().startswith("claim docs dependency error")  # type: ignore[attr-defined]
    claim_type = pb2.ActionType.values_by_name["CLAIM"].number
    assert sorted((d.type, d.doc_id.id) for d in deps[1:]) == [(claim_type, "1"), (claim_type, "2")]


def test_doc_sets_over_grpc(stub: Any, namespace: str) -> None:
    stub.Modify(
        pb2.ModifyRequest(doc_inserts=[pb2.DocData(namespace="n", id="m", key="s")]), metadata=md(namespace)
    )
    claim = pb2.DocClaim(claimant="w1", duration_ms=60_000)
    claim.sets.add(set=pb2.DocSet(namespace="n", key="s"))
    response = stub.ClaimDocs(pb2.ClaimDocsRequest(claim_query=claim), metadata=md(namespace))
    (lock,) = response.sets
    assert (lock.id, lock.key, lock.claimant) == ("", "s", "w1") and [d.id for d in response.docs] == ["m"]
    renewal = pb2.DocChange(
        old_id=pb2.DocID(namespace="n", key="s", version=lock.version),
        new_data=pb2.DocData(by_ms=90_000),
        mode=LEASE,
    )
    (renewed,) = stub.Modify(
        pb2.ModifyRequest(claimant_id="w1", doc_changes=[renewal]), metadata=md(namespace)
    ).changed_docs
    assert (renewed.id, renewed.key, renewed.version) == ("", "s", lock.version + 1)
    stats = stub.NamespaceStats(pb2.NamespacesRequest(match_exact=["n"]), metadata=md(namespace))
    assert [(n.name, n.num_docs, n.num_claimed) for n in stats.namespaces] == [("n", 1, 0)]


def test_bad_doc_requests_are_invalid_and_write_nothing(stub: Any, namespace: str) -> None:
    lease_with_content = pb2.DocChange(
        old_id=pb2.DocID(namespace="n", id="d", version=0), new_data=pb2.DocData(content=value(1)), mode=LEASE
    )
    for request in (
        pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/bad")], doc_changes=[lease_with_content]),
        pb2.ModifyRequest(
            inserts=[pb2.TaskData(queue="/bad")], doc_inserts=[pb2.DocData(key="no namespace")]
        ),
        pb2.ModifyRequest(
            inserts=[pb2.TaskData(queue="/bad")], doc_inserts=[pb2.DocData(namespace="n", id="x" * 257)]
        ),
    ):
        error, _ = failure(stub.Modify, request, namespace)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()  # type: ignore[attr-defined]
    assert stub.Tasks(pb2.TasksRequest(queue="/bad"), metadata=md(namespace)).tasks == []
    assert stub.Docs(pb2.DocsRequest(query=pb2.DocQuery(namespace="n")), metadata=md(namespace)).docs == []
    too_many = pb2.ModifyRequest(doc_depends=[pb2.DocID(namespace="n", id=str(i)) for i in range(1001)])
    error, _ = failure(stub.Modify, too_many, namespace)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 1000" in error.details()  # type: ignore[attr-defined]


def test_the_bytes_schema_carries_contents_as_bytes(store_url: str, namespace: str) -> None:
    process = start_service(store_url, "--test-any-namespace", "--grpc-values", "bytes")
    try:
        assert process.grpc_url is not None
        old: Any = grpc_support.bytes_schema().pb2
        with grpc_support.channel(process.grpc_url) as channel:
            stub = grpc_support.bytes_schema().stub(channel)
            raw = bytes(range(256))
            request = old.ModifyRequest(
                doc_inserts=[old.DocData(namespace="n", id="b", key="k", content=raw)]
            )
            assert stub.Modify(request, metadata=md(namespace)).inserted_docs[0].content == raw
            listed = stub.Docs(old.DocsRequest(query=old.DocQuery(namespace="n")), metadata=md(namespace))
            assert [d.content for d in listed.docs] == [raw]
    finally:
        process.stop()
