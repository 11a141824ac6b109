"""Authorization of the document store: on the doc namespace, with the actions of queues.

A real service with ``--authz rego`` and the example policy (deploy/authz): alice may do
anything under the doc namespaces ``alice/`` and read ``shared``; bob may do anything under
``bob/`` and in ``shared``; ops has no doc grant. EntroQ leaves doc calls unauthorized; here
every one is authorized, a denial writes nothing, and namespace stats list only the doc
namespaces the caller may read. The policy's decisions are also checked directly (rego-cpp),
including that a policy which does not judge doc namespaces refuses every doc call.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_support
import httpx
import pytest
from authz_support import ALICE, BOB, DATA, OPS, POLICY, REGO_FLAGS, client
from conftest import ServiceProcess, start_service
from entroq_redis_server.authz.decision import parse_result
from entroq_redis_server.authz.rego import load_rego_engine

import entroq_redis

JSON = {"EntroQ-Value-Encoding": "json"}
# A queue each example user may insert into (EntroQ's per-user space).
OWN_QUEUE = {ALICE: "/ns=user/alice/q", BOB: "/ns=user/bob/q", OPS: "/ns=user/ops/q"}


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


@pytest.fixture
async def store(store_url: str, namespace: str) -> Any:
    """The namespace straight on the store: to set up docs and to see what really changed."""
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        yield eq


async def _put(store: entroq_redis.EntroQ, doc_namespace: str, doc_id: str, key: str = "k") -> None:
    await store.modify(doc_inserts=[entroq_redis.DocData(doc_namespace, id=doc_id, key=key, content=b'"v"')])


async def _snapshot(store: entroq_redis.EntroQ, *doc_namespaces: str) -> list[entroq_redis.Doc]:
    return [d for ns in doc_namespaces for d in await store.docs(ns)]


def _modify(**lists: Any) -> dict[str, Any]:
    return {"claimantId": "w", **lists}


async def test_doc_calls_are_allowed_on_granted_doc_namespaces(
    service: ServiceProcess, namespace: str, store: entroq_redis.EntroQ
) -> None:
    await _put(store, "shared", "s1")
    async with client(service.url, namespace, ALICE) as alice, client(service.url, namespace, BOB) as bob:
        inserted = await alice.post(
            "/api/v0/modify",
            json=_modify(docInserts=[{"namespace": "alice/notes", "id": "n1", "key": "k", "content": 1}]),
            headers=JSON,
        )
        assert inserted.status_code == 200, inserted.text
        listed = await alice.get("/api/v0/docs", params={"query.namespace": "shared"}, headers=JSON)
        assert [d["id"] for d in listed.json()["docs"]] == ["s1"]
        claimed = await bob.post(
            "/api/v0/docs/claim",
            json={"claimQuery": {"namespace": "shared", "claimant": "bob#1", "key": "k", "durationMs": 5000}},
        )
        assert claimed.status_code == 200 and claimed.json()["docs"][0]["claimant"] == "bob#1"
        sets = await alice.post(
            "/api/v0/docs/claim",
            json={
                "claimQuery": {
                    "claimant": "alice#1",
                    "sets": [{"set": {"namespace": "alice/notes", "key": "k"}}],
                }
            },
        )
        assert sets.status_code == 200, sets.text
    assert [d.id for d in await store.docs("alice/notes")] == ["n1"]


@pytest.mark.parametrize(
    ("token", "method", "path", "body", "denied"),
    [
        # alice may read "shared" but not write it; nobody but bob writes "bob/...".
        (
            ALICE,
            "POST",
            "/api/v0/modify",
            _modify(docInserts=[{"namespace": "shared", "key": "k"}]),
            "INSERT",
        ),
        (
            ALICE,
            "POST",
            "/api/v0/modify",
            _modify(docChanges=[{"oldId": {"namespace": "shared", "id": "s1"}, "newData": {"key": "k"}}]),
            "CHANGE",
        ),
        (
            ALICE,
            "POST",
            "/api/v0/modify",
            _modify(docDeletes=[{"namespace": "shared", "id": "s1"}]),
            "DELETE",
        ),
        (BOB, "POST", "/api/v0/modify", _modify(docDepends=[{"namespace": "alice/x", "id": "a1"}]), "READ"),
        (
            ALICE,
            "POST",
            "/api/v0/docs/claim",
            {"claimQuery": {"namespace": "shared", "claimant": "alice#1", "key": "k", "durationMs": 5000}},
            "CLAIM",
        ),
        (
            BOB,
            "POST",
            "/api/v0/docs/claim",
            {"claimQuery": {"claimant": "bob#1", "sets": [{"set": {"namespace": "alice/x", "key": "k"}}]}},
            "CLAIM",
        ),
        (OPS, "GET", "/api/v0/docs?query.namespace=shared", None, "READ"),
        (BOB, "POST", "/api.EntroQ/Docs", {"query": {"namespace": "alice/x"}}, "READ"),
    ],
)
async def test_doc_calls_outside_the_grants_are_denied_and_write_nothing(
    service: ServiceProcess,
    namespace: str,
    store: entroq_redis.EntroQ,
    token: str,
    method: str,
    path: str,
    body: Any,
    denied: str,
) -> None:
    await _put(store, "shared", "s1")
    await _put(store, "alice/x", "a1")
    before = await _snapshot(store, "shared", "alice/x")
    async with client(service.url, namespace, token) as http:
        # A modify that also inserts a task the caller may insert: denied whole all the same.
        if path == "/api/v0/modify":
            body = {**body, "inserts": [{"queue": OWN_QUEUE[token]}]}
        response = await http.request(method, path, json=body, headers={"Connect-Protocol-Version": "1"})
    assert response.status_code == 403, response.text
    payload = response.json()
    assert "doc namespace" in payload["message"] and denied in payload["message"]
    assert await _snapshot(store, "shared", "alice/x") == before
    assert await store.tasks(OWN_QUEUE[token]) == []


async def test_a_mixed_modify_needs_both_grants(
    service: ServiceProcess, namespace: str, store: entroq_redis.EntroQ
) -> None:
    async with client(service.url, namespace, ALICE) as alice:
        # The doc part is allowed, the task part is not: nothing is written.
        body = _modify(
            inserts=[{"queue": "/bob/jobs"}], docInserts=[{"namespace": "alice/n", "id": "x", "key": "k"}]
        )
        denied = await alice.post("/api/v0/modify", json=body)
        assert denied.status_code == 403 and '"/bob/jobs"' in denied.json()["message"]
        body["inserts"] = [{"queue": "/alice/jobs"}]
        allowed = await alice.post("/api/v0/modify", json=body)
        assert allowed.status_code == 200, allowed.text
    assert [d.id for d in await store.docs("alice/n")] == ["x"]
    assert len(await store.tasks("/alice/jobs")) == 1


async def test_doc_calls_need_credentials(service: ServiceProcess, namespace: str) -> None:
    async with (
        client(service.url, namespace) as anonymous,
        client(service.url, namespace, "nobody") as nobody,
    ):
        for http in (anonymous, nobody):
            response = await http.get("/api/v0/docs", params={"query.namespace": "shared"})
            assert response.status_code == 401
            stats = await http.get("/api/v0/namespaces/stats")
            assert stats.status_code == 401


async def test_namespace_stats_list_only_readable_doc_namespaces(
    service: ServiceProcess, namespace: str, store: entroq_redis.EntroQ
) -> None:
    for doc_namespace in ("alice/a", "alice/b", "bob/a", "shared", "zeta"):
        await _put(store, doc_namespace, "d")
    async with client(service.url, namespace, ALICE) as alice, client(service.url, namespace, OPS) as ops:
        seen = await alice.get("/api/v0/namespaces/stats")
        assert [n["name"] for n in seen.json()["namespaces"]] == ["alice/a", "alice/b", "shared"]
        limited = await alice.get("/api/v0/namespaces/stats", params={"limit": "2", "matchPrefix": ""})
        assert [n["name"] for n in limited.json()["namespaces"]] == ["alice/a", "alice/b"]
        assert (await ops.get("/api/v0/namespaces/stats")).json().get("namespaces", []) == []
    async with client(service.url, namespace, BOB) as bob:
        connect = await bob.post(
            "/api.EntroQ/NamespaceStats", json={}, headers={"Connect-Protocol-Version": "1"}
        )
        assert [n["name"] for n in connect.json()["namespaces"]] == ["bob/a", "shared"]


def test_the_example_policy_judges_doc_namespaces() -> None:
    engine = load_rego_engine([POLICY], DATA, ("entroq", "authz"))
    try:

        def ask(token: str, *entries: tuple[str, str]) -> Any:
            namespaces = [{"exact": ns, "actions": [action]} for ns, action in entries]
            authz = {"type": "Bearer", "credentials": token}
            return parse_result(
                engine.evaluate_sync({"authz": authz, "queues": [], "namespaces": namespaces})
            )

        assert ask(ALICE, ("alice/x", "CLAIM"), ("shared", "READ")).permits_namespaces()
        bob = ask(BOB, ("alice/x", "READ"), ("shared", "DELETE"))
        assert not bob.permits and [(f.exact, f.actions) for f in bob.failed_namespaces or ()] == [
            ("alice/x", ("READ",))
        ]
        readable = parse_result(
            engine.evaluate_sync({"authz": {"type": "Bearer", "credentials": ALICE}, "queues": []})
        )
        assert sorted(map(str, readable.readable_namespaces)) == sorted(
            map(str, [{"prefix": "alice/"}, {"exact": "shared"}])
        )
        # Task calls (no "namespaces" in the input) are decided as before.
        assert readable.failed_namespaces == ()
    finally:
        engine.close()


async def test_a_policy_that_does_not_judge_doc_namespaces_refuses_doc_calls(
    store_url: str, namespace: str, tmp_path: pathlib.Path
) -> None:
    # EntroQ's own kind of policy: it knows queues only.
    policy = tmp_path / "queues_only.rego"
    policy.write_text(
        "package entroq.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
        'allow if input.authz.credentials == "t"\n\nfailed := []\n'
    )
    process = start_service(store_url, "--test-any-namespace", "--authz", "rego", "--policy", str(policy))
    try:
        async with client(process.url, namespace, "t") as http:
            assert (await http.get("/api/v0/queues")).status_code == 200  # task calls still work
            docs = await http.get("/api/v0/docs", params={"query.namespace": "n"})
            assert docs.status_code == 403 and "does not judge doc namespaces" in docs.json()["message"]
            body = {"docInserts": [{"namespace": "n", "key": "k"}]}
            assert (await http.post("/api/v0/modify", json=body)).status_code == 403
            stats = await http.get("/api/v0/namespaces/stats")
            assert stats.status_code == 200 and stats.json().get("namespaces", []) == []
    finally:
        assert process.stop() == 0
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        assert await eq.docs("n") == []


async def test_httpx_denial_details_name_the_doc_namespace(service: ServiceProcess, namespace: str) -> None:
    async with httpx.AsyncClient(
        base_url=service.url, headers={"EntroQ-Namespace": namespace, "Authorization": f"Bearer {OPS}"}
    ) as ops:
        response = await ops.get("/api/v0/docs", params={"query.namespace": "shared"})
    details = response.json()["details"]
    assert {
        "@type": "type.googleapis.com/api.AuthzDep",
        "actions": ["READ"],
        "exact": "shared",
        "msg": "doc namespace",
    } in details


def test_doc_rpcs_over_grpc_are_authorized_the_same(service: ServiceProcess, namespace: str) -> None:
    pb2: Any = grpc_support.v1().pb2
    assert service.grpc_url is not None
    with grpc_support.channel(service.grpc_url) as channel:
        stub = grpc_support.v1().stub(channel)

        def md(token: str) -> list[tuple[str, str]]:
            return [("entroq-namespace", namespace), ("authorization", f"Bearer {token}")]

        insert = pb2.ModifyRequest(doc_inserts=[pb2.DocData(namespace="alice/g", id="g", key="k")])
        assert [d.id for d in stub.Modify(insert, metadata=md(ALICE)).inserted_docs] == ["g"]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Docs(pb2.DocsRequest(query=pb2.DocQuery(namespace="alice/g")), metadata=md(BOB))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert "doc namespace" in caught.value.details()  # type: ignore[attr-defined]
        listed = stub.Docs(pb2.DocsRequest(query=pb2.DocQuery(namespace="alice/g")), metadata=md(ALICE))
        assert [d.id for d in listed.docs] == ["g"]
