"""The document store over REST and Connect, as EntroQ's JSON clients send it.

Requests are shaped as the PyPI clients send them (docs/reference/entroq-client-generations.md A.2,
C.2, 5.1): JSON contents, ``query.``-prefixed and unprefixed listing parameters, protocol 2's
doc sets, lease changes and ``taskToMatch``. Answers are read as those clients read them. Bad
input is a 400 naming what is wrong, with nothing written; refused modifies and claims are 404
with ``docId`` details.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import ServiceProcess

HTTPX_UA = "python-httpx/0.28.1"
CONNECT = {"Connect-Protocol-Version": "1", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def json_client(url: str, namespace: str, protocol: int = 2) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP as PyPI entroq sends it (0.15: protocol 2; 0.12-0.14: protocol 1)."""
    headers = {"EntroQ-Namespace": namespace, "User-Agent": HTTPX_UA}
    if protocol == 2:
        headers["entroq-protocol"] = "2"
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def c(http_service: ServiceProcess, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    async with json_client(http_service.url, namespace) as http:
        yield http


@pytest.fixture
async def b(http_service: ServiceProcess, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    async with json_client(http_service.url, namespace, protocol=1) as http:
        yield http


def modify_body(claimant: str = "w", **lists: list[dict[str, Any]]) -> dict[str, Any]:
    """A modify body as the 0.12+ clients send it: all nine keys, empty lists when unused."""
    body: dict[str, Any] = {"claimantId": claimant}
    for name in (
        "inserts",
        "changes",
        "deletes",
        "depends",
        "docInserts",
        "docChanges",
        "docDeletes",
        "docDepends",
    ):
        body[name] = lists.get(name, [])
    return body


async def modify(
    http: httpx.AsyncClient, claimant: str = "w", **lists: list[dict[str, Any]]
) -> httpx.Response:
    return await http.post("/api/v0/modify", json=modify_body(claimant, **lists))


async def insert_docs(http: httpx.AsyncClient, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    response = await modify(http, docInserts=list(docs))
    assert response.status_code == 200, response.text
    inserted: list[dict[str, Any]] = response.json()["insertedDocs"]
    return inserted


async def listed(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/api/v0/docs", params=params)
    assert response.status_code == 200, response.text
    return list(response.json().get("docs", []))


async def tasks_in(http: httpx.AsyncClient, queue: str) -> list[dict[str, Any]]:
    response = await http.get("/api/v0/tasks", params={"queue": queue})
    assert response.status_code == 200, response.text
    return list(response.json().get("tasks", []))


def dependency_details(response: httpx.Response) -> list[dict[str, Any]]:
    """The typed details of a refused modify or claim, as 0.14/0.15 read them (404 or 409)."""
    assert response.status_code == 404, response.text
    details: list[dict[str, Any]] = response.json()["details"]
    assert details[0]["type"] == "DETAIL"
    return details[1:]


async def test_a_modify_inserts_docs_and_a_task_together(c: httpx.AsyncClient) -> None:
    content = {"balance": 10, "tags": ["a", "b"], "owner": None}
    response = await modify(
        c,
        inserts=[{"queue": "/docs/jobs", "value": {"job": 1}}],
        docInserts=[
            {
                "namespace": "accounts",
                "id": "acct-1",
                "key": "cust-1",
                "secondaryKey": "s1",
                "content": content,
            },
            {"namespace": "accounts", "key": "cust-1", "secondaryKey": "s2", "content": "text"},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [t["value"] for t in body["inserted"]] == [{"job": 1}]
    first, second = body["insertedDocs"]
    assert (first["namespace"], first["id"], first["key"], first["secondaryKey"]) == (
        "accounts",
        "acct-1",
        "cust-1",
        "s1",
    )
    assert first["content"] == content
    assert first.get("version", 0) == 0 and "claimant" not in first
    assert int(first["createdMs"]) > 0 and int(first["modifiedMs"]) > 0
    assert second["content"] == "text" and len(second["id"]) == 36  # a generated UUID
    # Listed as the clients list them (0.12.4+: query.* parameters).
    docs = await listed(c, **{"query.namespace": "accounts"})
    assert [(d["id"], d["content"]) for d in docs] == [("acct-1", content), (second["id"], "text")]


async def test_a_stale_doc_change_is_refused_with_its_details_and_nothing_is_written(
    c: httpx.AsyncClient,
) -> None:
    (doc,) = await insert_docs(c, {"namespace": "n", "id": "d1", "key": "k", "content": 1})
    change = {
        "oldId": {"namespace": "n", "id": "d1", "version": 0},
        "newData": {"namespace": "n", "key": "k", "content": 2, "byMs": 0},
    }
    first = await modify(c, docChanges=[change])
    assert first.status_code == 200, first.text
    (changed,) = first.json()["changedDocs"]
    assert changed["version"] == 1 and changed["content"] == 2
    # The same change again names version 0: refused, and its task insert is not written.
    stale = await modify(c, inserts=[{"queue": "/stale/q", "value": 1}], docChanges=[change])
    assert "modification dependency error" in stale.json()["message"]
    (detail,) = dependency_details(stale)
    assert detail["type"] == "CHANGE" and detail["reason"] == "mismatch" and detail["currentVersion"] == 1
    assert {k: detail["docId"][k] for k in ("namespace", "id", "version")} == {
        "namespace": "n",
        "id": "d1",
        "version": 0,
    }
    assert await tasks_in(c, "/stale/q") == []
    assert [d["content"] for d in await listed(c, **{"query.namespace": "n"})] == [2]
    assert doc.get("version", 0) == 0


async def test_every_failing_doc_item_is_reported(c: httpx.AsyncClient) -> None:
    await insert_docs(c, {"namespace": "n", "id": "d1", "key": "k"})
    response = await modify(
        c,
        docInserts=[{"namespace": "n", "id": "d1", "key": "k"}],
        docDeletes=[{"namespace": "n", "id": "gone", "version": 0}],
        docDepends=[{"namespace": "n", "id": "d1", "version": 3}],
    )
    details = dependency_details(response)
    seen = {(d["type"], d["reason"], d["docId"]["id"]) for d in details}
    assert seen == {
        ("INSERT", "collision", "d1"),
        ("DELETE", "missing", "gone"),
        ("DEPEND", "mismatch", "d1"),
    }
    # 0.14.0 reads docId["id"] and docId["version"]: both are always there.
    assert all("id" in d["docId"] and "version" in d["docId"] for d in details)


@pytest.mark.parametrize(
    ("doc_change", "wanted"),
    [
        (
            {
                "oldId": {"namespace": "n", "id": "d1", "version": 0},
                "newData": {},
                "mode": "CHANGE_RESET_CLAIMS",
            },
            "CHANGE_RESET_CLAIMS is for tasks",
        ),
        (
            {
                "oldId": {"namespace": "n", "id": "d1", "version": 0},
                "newData": {"namespace": "other", "key": "k"},
            },
            "a doc never changes namespace",
        ),
        (
            {"oldId": {"namespace": "n", "key": "k", "version": 0}, "newData": {"key": "k"}},
            "only by a CHANGE_LEASE change",
        ),
        (
            {
                "oldId": {"namespace": "n", "id": "d1", "version": 0},
                "newData": {"content": {"x": 1}, "byMs": 1000},
                "mode": "CHANGE_LEASE",
            },
            "moves only the arrival",
        ),
        (
            {"oldId": {"namespace": "n", "version": 0}, "newData": {}, "mode": "CHANGE_LEASE"},
            "names neither a doc",
        ),
        (
            {"oldId": {"namespace": "n", "id": "d1", "version": 0}, "newData": {"atMs": 5, "byMs": 5}},
            "not both",
        ),
        (
            {
                "oldId": {"namespace": "n", "id": "d1", "version": 0},
                "newData": {},
                "mode": "CHANGE_SOMETIMES",
            },
            "has no value",
        ),
    ],
)
async def test_bad_doc_changes_are_400_and_nothing_is_written(
    c: httpx.AsyncClient, doc_change: dict[str, Any], wanted: str
) -> None:
    await insert_docs(c, {"namespace": "n", "id": "d1", "key": "k", "content": "v0"})
    response = await modify(c, inserts=[{"queue": "/bad/q", "value": 1}], docChanges=[doc_change])
    assert response.status_code == 400, response.text
    assert wanted in response.json()["message"]
    assert await tasks_in(c, "/bad/q") == []
    (doc,) = await listed(c, **{"query.namespace": "n"})
    assert doc["content"] == "v0" and doc.get("version", 0) == 0


async def test_doc_content_that_is_not_json_or_base64_is_400(
    c: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    # A JSON caller's NaN is not JSON; a base64 caller's content must be base64.
    raw = b'{"claimantId":"w","docInserts":[{"namespace":"n","key":"k","content":NaN}]}'
    response = await c.post("/api/v0/modify", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "content" in response.json()["message"]
    declared = {"EntroQ-Value-Encoding": "base64"}
    response = await http.post(
        "/api/v0/modify",
        json={"docInserts": [{"namespace": "n", "key": "k", "content": "no!"}]},
        headers=declared,
    )
    assert response.status_code == 400 and "not base64" in response.json()["message"]
    assert await listed(c, **{"query.namespace": "n"}) == []


async def test_base64_callers_keep_contents_byte_exact(http: httpx.AsyncClient) -> None:
    declared = {"EntroQ-Value-Encoding": "base64"}
    raw = bytes(range(256))
    body = {
        "docInserts": [{"namespace": "bin", "id": "b", "key": "k", "content": base64.b64encode(raw).decode()}]
    }
    response = await http.post("/api/v0/modify", json=body, headers=declared)
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["insertedDocs"][0]["content"]) == raw
    listing = await http.get("/api/v0/docs", params={"query.namespace": "bin"}, headers=declared)
    assert base64.b64decode(listing.json()["docs"][0]["content"]) == raw


async def test_listing_takes_every_parameter_form(c: httpx.AsyncClient) -> None:
    await insert_docs(
        c,
        *[
            {"namespace": "ns", "id": f"{key}{skey}", "key": key, "secondaryKey": skey, "content": key + skey}
            for key in ("a", "b", "c")
            for skey in ("2", "1")
        ],
    )
    prefixed = await listed(c, **{"query.namespace": "ns", "query.keyStart": "a", "query.keyEnd": "c"})
    assert [d["id"] for d in prefixed] == ["a1", "a2", "b1", "b2"]  # (key, secondary key) order
    # 0.12.2, 0.12.3 and 0.13.0 send the parameters unprefixed (namespace always, even "").
    unprefixed = await listed(c, namespace="ns", keyStart="a", keyEnd="c", limit=0)
    assert [d["id"] for d in unprefixed] == ["a1", "a2", "b1", "b2"]
    assert [d["id"] for d in await listed(c, **{"query.namespace": "ns", "query.keyExact": "b"})] == [
        "b1",
        "b2",
    ]
    assert [d["id"] for d in await listed(c, **{"query.namespace": "ns", "query.limit": 3})] == [
        "a1",
        "a2",
        "b1",
    ]
    by_ids = await c.get(
        "/api/v0/docs",
        params=[("query.namespace", "ns"), ("query.ids", "c2"), ("query.ids", "x"), ("query.ids", "a1")],
    )
    assert [d["id"] for d in by_ids.json()["docs"]] == ["c2", "a1"]  # the order asked, missing skipped
    omitted = await listed(c, **{"query.namespace": "ns", "query.omitValues": "true", "query.keyExact": "a"})
    assert [d["id"] for d in omitted] == ["a1", "a2"] and all("content" not in d for d in omitted)


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({"query.keyStart": "a"}, "doc namespace is required"),
        ({"query.namespace": "ns", "namespace": "ns"}, "given more than once"),
        ({"query.namespace": "ns", "query.colour": "red"}, "unknown query parameter"),
        ({"query.namespace": "ns", "query.limit": "-1"}, "must not be negative"),
        ({"query.namespace": "ns", "query.limit": "many"}, "invalid DocsRequest"),
        ({"query.namespace": "ns", "query.omitValues": "perhaps"}, "must be true or false"),
        ({"query.namespace": "ns", "query.keyExact": "a", "query.keyStart": "a"}, "not both"),
    ],
)
async def test_bad_listing_parameters_are_400(
    c: httpx.AsyncClient, params: dict[str, str], wanted: str
) -> None:
    response = await c.get("/api/v0/docs", params=params)
    assert response.status_code == 400, response.text
    assert wanted in response.json()["message"]


async def test_claiming_the_docs_of_a_key(c: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    await insert_docs(
        c,
        {"namespace": "n", "id": "x2", "key": "k", "secondaryKey": "2", "content": 2},
        {"namespace": "n", "id": "x1", "key": "k", "secondaryKey": "1", "content": 1},
        {"namespace": "n", "id": "y", "key": "other", "content": 3},
    )
    # 0.12-0.14 send durationMs as a JSON number and name the claimant in claimQuery.claimant.
    claim = {"claimQuery": {"namespace": "n", "claimant": "w1", "key": "k", "durationMs": 30000}}
    response = await b.post("/api/v0/docs/claim", json=claim)
    assert response.status_code == 200, response.text
    docs = response.json()["docs"]
    assert [(d["id"], d["version"], d["claimant"]) for d in docs] == [("x1", 1, "w1"), ("x2", 1, "w1")]
    assert all(int(d["atMs"]) > int(d["modifiedMs"]) for d in docs)
    # Another claimant is refused whole, naming every held doc.
    other = {"claimQuery": {"namespace": "n", "claimant": "w2", "key": "k", "durationMs": 30000}}
    refused = await b.post("/api/v0/docs/claim", json=other)
    assert refused.json()["message"].startswith("claim docs dependency error")
    details = dependency_details(refused)
    assert {(d["type"], d["docId"]["id"]) for d in details} == {("CLAIM", "x1"), ("CLAIM", "x2")}
    # No doc with the key: an empty list, not an error.
    empty = {"claimQuery": {"namespace": "n", "claimant": "w2", "key": "none", "durationMs": 1000}}
    assert (await b.post("/api/v0/docs/claim", json=empty)).json().get("docs", []) == []


async def test_doc_sets_claimed_renewed_and_released(c: httpx.AsyncClient) -> None:
    await insert_docs(
        c,
        {"namespace": "n", "id": "m1", "key": "cust", "secondaryKey": "a", "content": 1},
        {"namespace": "n", "id": "m2", "key": "cust", "secondaryKey": "b", "content": 2},
    )
    claim = {
        "claimQuery": {
            "claimant": "w1",
            "sets": [{"set": {"namespace": "n", "key": "cust"}, "omitMembers": False}],
            "durationMs": 60000,
        }
    }
    response = await c.post("/api/v0/docs/claim", json=claim)
    assert response.status_code == 200, response.text
    body = response.json()
    (lock,) = body["sets"]
    assert "id" not in lock and lock["key"] == "cust" and lock["claimant"] == "w1"
    assert [d["id"] for d in body["docs"]] == ["m1", "m2"]
    # Another claimant cannot change a member while the set is held.
    member_change = {
        "oldId": {"namespace": "n", "id": "m1", "version": 0},
        "newData": {"namespace": "n", "key": "cust", "secondaryKey": "a", "content": 9, "byMs": 0},
    }
    (held,) = dependency_details(await modify(c, "w2", docChanges=[member_change]))
    assert held["type"] == "CHANGE" or held["type"] == "CLAIM"
    # 0.15's renewal: a lease change naming the set; it comes back as a set reference.
    renewal = {
        "oldId": {"namespace": "n", "key": "cust", "version": lock["version"]},
        "newData": {"byMs": 90000},
        "mode": "CHANGE_LEASE",
    }
    renewed = await modify(c, "w1", docChanges=[renewal])
    assert renewed.status_code == 200, renewed.text
    (again,) = renewed.json()["changedDocs"]
    assert "id" not in again and again["key"] == "cust" and again["version"] == lock["version"] + 1
    # The stale lock version is refused, naming the set (no id, its key).
    (stale,) = dependency_details(await modify(c, "w1", docChanges=[renewal]))
    assert stale["docId"]["id"] == "" and stale["docId"]["key"] == "cust"
    release = {**renewal, "oldId": {**renewal["oldId"], "version": again["version"]}, "newData": {"byMs": 0}}
    released = await modify(c, "w1", docChanges=[release])
    assert released.status_code == 200 and "claimant" not in released.json()["changedDocs"][0]


async def test_doc_sets_follow_a_tasks_lease(c: httpx.AsyncClient) -> None:
    inserted = await modify(c, inserts=[{"queue": "/work", "value": 1}])
    assert inserted.status_code == 200
    claimed = await c.post(
        "/api/v0/claim", json={"claimantId": "w1", "queues": ["/work"], "durationMs": "45000", "pollMs": "0"}
    )
    task = claimed.json()["task"]
    claim = {
        "claimQuery": {
            "claimant": "w1",
            "sets": [{"set": {"namespace": "n", "key": "k"}, "omitMembers": True}],
            "taskToMatch": {"id": task["id"], "version": task["version"], "queue": "/work"},
        }
    }
    response = await c.post("/api/v0/docs/claim", json=claim)
    assert response.status_code == 200, response.text
    (lock,) = response.json()["sets"]
    assert lock["atMs"] == task["atMs"] and lock["claimant"] == "w1"
    # Someone who does not hold the task cannot tie a set to it.
    claim["claimQuery"]["claimant"] = "w2"
    claim["claimQuery"]["sets"][0]["set"]["key"] = "k2"
    (detail,) = dependency_details(await c.post("/api/v0/docs/claim", json=claim))
    assert detail["id"]["id"] == task["id"] and "docId" not in detail


@pytest.mark.parametrize(
    ("claim", "wanted"),
    [
        ({"claimant": "w", "namespace": "n", "sets": [{"set": {"namespace": "n", "key": "k"}}]}, "not both"),
        (
            {"claimant": "w", "namespace": "n", "key": "k", "taskToMatch": {"id": "t"}},
            "taskToMatch is for set",
        ),
        ({"claimant": "w", "sets": [{"set": {"namespace": "n"}}]}, "non-empty key"),
        (
            {
                "claimant": "w",
                "sets": [{"set": {"namespace": "n", "key": "k"}}],
                "durationMs": 5,
                "taskToMatch": {"id": "t"},
            },
            "not both",
        ),
        ({"claimant": "w", "namespace": "n", "key": "", "durationMs": 5}, "non-empty key"),
        ({"claimant": "w", "namespace": "n", "key": "k", "durationMs": "soon"}, "invalid ClaimDocsRequest"),
    ],
)
async def test_bad_doc_claims_are_400(c: httpx.AsyncClient, claim: dict[str, Any], wanted: str) -> None:
    await insert_docs(c, {"namespace": "n", "id": "d", "key": "k"})
    response = await c.post("/api/v0/docs/claim", json={"claimQuery": claim})
    assert response.status_code == 400, response.text
    assert wanted in response.json()["message"]
    (doc,) = await listed(c, **{"query.namespace": "n"})
    assert doc.get("version", 0) == 0 and "claimant" not in doc


async def test_namespace_stats(c: httpx.AsyncClient) -> None:
    await insert_docs(
        c,
        {"namespace": "app/a", "id": "1", "key": "k"},
        {"namespace": "app/a", "id": "2", "key": "j"},
        {"namespace": "app/b", "id": "3", "key": "k"},
        {"namespace": "zzz", "id": "4", "key": "k"},
    )
    claim = {"claimQuery": {"namespace": "app/a", "claimant": "w", "key": "k", "durationMs": 60000}}
    assert (await c.post("/api/v0/docs/claim", json=claim)).status_code == 200
    response = await c.get("/api/v0/namespaces/stats", params={"matchPrefix": "app/"})
    assert response.status_code == 200, response.text
    stats = {n["name"]: (n.get("numDocs", 0), n.get("numClaimed", 0)) for n in response.json()["namespaces"]}
    assert stats == {"app/a": (2, 1), "app/b": (1, 0)}
    exact = await c.get("/api/v0/namespaces/stats", params=[("matchExact", "zzz"), ("limit", "5")])
    assert [n["name"] for n in exact.json()["namespaces"]] == ["zzz"]
    assert (await c.get("/api/v0/namespaces/stats", params={"limit": "-2"})).status_code == 400


async def test_connect_routes(c: httpx.AsyncClient) -> None:
    await insert_docs(c, {"namespace": "n", "id": "d", "key": "k", "content": {"v": 1}})
    docs = await c.post("/api.EntroQ/Docs", json={"query": {"namespace": "n", "ids": ["d"]}}, headers=CONNECT)
    assert docs.status_code == 200 and docs.json()["docs"][0]["content"] == {"v": 1}
    claim = {"claimQuery": {"namespace": "n", "claimant": "w1", "key": "k", "durationMs": "60000"}}
    claimed = await c.post("/api.EntroQ/ClaimDocs", json=claim, headers=CONNECT)
    assert claimed.status_code == 200 and claimed.json()["docs"][0]["claimant"] == "w1"
    claim["claimQuery"]["claimant"] = "w2"
    refused = await c.post("/api.EntroQ/ClaimDocs", json=claim, headers=CONNECT)
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    assert refused.json()["message"].startswith("claim docs dependency error")
    detail, claimed_doc = [d["debug"] for d in refused.json()["details"]]
    assert detail["type"] == "DETAIL"
    assert claimed_doc["type"] == "CLAIM" and claimed_doc["docId"]["id"] == "d"
    stats = await c.post("/api.EntroQ/NamespaceStats", json={"matchExact": ["n"]}, headers=CONNECT)
    assert stats.json()["namespaces"] == [{"name": "n", "numDocs": 1, "numClaimed": 1}]
    bad = await c.post("/api.EntroQ/Docs", json={"query": {"namespace": ""}}, headers=CONNECT)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"


async def test_group_b_doc_arrivals_are_absolute(b: httpx.AsyncClient) -> None:
    # 0.13.0/0.14.0 doc inserts carry atMs (client clock); a change's atMs 0 releases.
    now = int((await b.get("/api/v0/time")).json()["timeMs"])
    (doc,) = await insert_docs(b, {"namespace": "n", "key": "k", "atMs": now + 3_600_000})
    assert int(doc["atMs"]) == now + 3_600_000 and "claimant" not in doc
    change = {
        "oldId": {"namespace": "n", "id": doc["id"], "version": 0},
        "newData": {"namespace": "n", "key": "k", "secondaryKey": "", "content": 5, "atMs": now + 60_000},
    }
    changed = await modify(b, "w9", docChanges=[change])
    assert changed.status_code == 200, changed.text
    assert changed.json()["changedDocs"][0]["claimant"] == "w9"  # a future arrival holds it


async def test_key_exact_at_the_key_length_limit(c: httpx.AsyncClient) -> None:
    # [k, k + NUL) would end past the 1024-byte limit: the service ends the range at k's
    # successor instead, which no other key of at most 1024 bytes sorts before.
    longest = "k" * 1024
    await insert_docs(
        c,
        {"namespace": "n", "id": "at-limit", "key": longest},
        {"namespace": "n", "id": "shorter", "key": "k" * 1023},
        {"namespace": "n", "id": "after", "key": "k" * 1023 + "l"},
        {"namespace": "n", "id": "ff", "key": "\u00ff" * 512},
    )
    assert [d["id"] for d in await listed(c, **{"query.namespace": "n", "query.keyExact": longest})] == [
        "at-limit"
    ]
    assert [d["id"] for d in await listed(c, **{"query.namespace": "n", "query.keyExact": "k" * 1023})] == [
        "shorter"
    ]
    assert [
        d["id"] for d in await listed(c, **{"query.namespace": "n", "query.keyExact": "\u00ff" * 512})
    ] == ["ff"]
