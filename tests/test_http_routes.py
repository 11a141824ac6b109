"""The service's routes over real HTTP (a Hypercorn process): answers, JSON rules, errors."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import httpx
import pytest
import trio
from conftest import ServiceProcess
from entroq_redis_server.core import schema as _schema


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def insert(http: httpx.AsyncClient, queue: str, value: bytes = b"v", **extra: Any) -> dict[str, Any]:
    response = await http.post(
        "/api/v0/modify",
        json={"claimantId": "c1", "inserts": [{"queue": queue, "value": b64(value), **extra}]},
    )
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()["inserted"][0]
    return task


def assert_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """A REST error: the status, a google.rpc.Status JSON body, never a stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and isinstance(body["message"], str) and isinstance(body["details"], list)
    assert "Traceback" not in response.text
    return body


async def test_insert_claim_change_delete_roundtrip(http: httpx.AsyncClient) -> None:
    task = await insert(http, "jobs", b"hello\x00\xff")
    assert task["value"] == b64(b"hello\x00\xff") and task["queue"] == "jobs"
    claimed = (
        await http.post("/api/v0/claim", json={"claimantId": "w1", "queues": ["jobs"], "durationMs": "30000"})
    ).json()["task"]
    assert claimed["id"] == task["id"] and claimed["version"] == 1 and claimed["claims"] == 1
    assert claimed["claimantId"] == "w1"
    change = {
        "oldId": {"id": claimed["id"], "version": 1, "queue": "jobs"},
        "newData": {"queue": "done", "value": b64(b"result"), "attempt": 2, "err": "e"},
    }
    response = await http.post("/api/v0/modify", json={"claimantId": "w1", "changes": [change]})
    changed = response.json()["changed"][0]
    assert changed["queue"] == "done" and changed["version"] == 2 and changed["attempt"] == 2
    assert changed["err"] == "e" and changed["value"] == b64(b"result")
    listed = (await http.get("/api/v0/queues/done/tasks")).json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
    response = await http.post(
        "/api/v0/modify", json={"claimantId": "w1", "deletes": [{"id": task["id"], "version": 2}]}
    )
    assert response.status_code == 200 and response.json() == {}
    assert (await http.get("/api/v0/queues")).json() == {}


async def test_json_output_is_canonical_proto3(http: httpx.AsyncClient) -> None:
    task = await insert(http, "q")
    # int64 as strings, int32 as numbers, zero values (version 0, claims 0, empty err) omitted.
    assert isinstance(task["createdMs"], str) and isinstance(task["atMs"], str)
    assert "version" not in task and "claims" not in task and "err" not in task and "attempt" not in task
    empty = await http.post("/api/v0/claim", json={"claimantId": "w", "queues": ["nothing"]})
    assert empty.status_code == 200 and empty.text == "{}"
    assert empty.headers["content-type"] == "application/json"
    time = (await http.get("/api/v0/time")).json()
    assert isinstance(time["timeMs"], str) and int(time["timeMs"]) > 1_700_000_000_000
    stats = (await http.get("/api/v0/queues/stats")).json()["queues"][0]
    assert stats == {"name": "q", "numTasks": 1, "numAvailable": 1}


async def test_lenient_input(http: httpx.AsyncClient) -> None:
    # snake_case names, numbers for int64, strings for int32, null, unknown fields,
    # URL-safe base64 without padding.
    body = {
        "claimant_id": "c",
        "inserts": [
            {"queue": "q", "at_ms": 0, "value": "-_8", "id": None, "attempt": "3", "err": None, "extra": 1}
        ],
        "unknownTopLevel": {"x": [1]},
        "changes": None,
    }
    response = await http.post("/api/v0/modify", json=body)
    assert response.status_code == 200, response.text
    task = response.json()["inserted"][0]
    assert base64.b64decode(task["value"]) == b"\xfb\xff" and task["attempt"] == 3
    claimed = await http.post(
        "/api/v0/claim", json={"claimant_id": "w", "queues": ["q"], "duration_ms": 5000}
    )
    assert claimed.json()["task"]["version"] == 1


@pytest.mark.parametrize("queue", ["/a/b", "a b", "ünï/cödé ✓", "x/tasks", "stats", "a//b/"])
async def test_queue_names_on_both_task_routes(http: httpx.AsyncClient, queue: str) -> None:
    task = await insert(http, queue)
    paths = [
        # EntroQ's seed Python client: requests.utils.quote keeps "/", so "/a/b" gives "//a/b".
        "/api/v0/queues/" + urllib.parse.quote(queue) + "/tasks",
        # The TypeScript client: encodeURIComponent.
        "/api/v0/queues/" + urllib.parse.quote(queue, safe="") + "/tasks",
    ]
    for path in paths:
        response = await http.get(path, follow_redirects=False)
        assert response.status_code == 200, (path, response.text)
        assert [t["id"] for t in response.json()["tasks"]] == [task["id"]], path
    response = await http.get("/api/v0/tasks", params={"queue": queue}, follow_redirects=False)
    assert [t["id"] for t in response.json()["tasks"]] == [task["id"]]


async def test_task_query_parameters(http: httpx.AsyncClient) -> None:
    ids = [(await insert(http, "q", b"x"))["id"] for _ in range(3)]
    await insert(http, "other")
    limited = (
        await http.get("/api/v0/tasks", params={"queue": "q", "limit": 2, "omitValues": "true"})
    ).json()
    assert len(limited["tasks"]) == 2 and all("value" not in t for t in limited["tasks"])
    by_id = await http.get("/api/v0/tasks", params=[("task_id", ids[0]), ("taskId", ids[2])])
    assert sorted(t["id"] for t in by_id.json()["tasks"]) == sorted([ids[0], ids[2]])
    snake = await http.get("/api/v0/queues/q/tasks", params={"omit_values": "1", "claimant_id": "nobody"})
    assert len(snake.json()["tasks"]) == 3
    assert_error(await http.get("/api/v0/tasks", params={"queue": "q", "bogus": "1"}), 400, 3)
    assert_error(
        await http.get("/api/v0/tasks", params=[("queue", "q"), ("limit", "1"), ("limit", "2")]), 400, 3
    )
    assert_error(await http.get("/api/v0/tasks", params={"queue": "q", "limit": "many"}), 400, 3)
    assert_error(await http.get("/api/v0/tasks", params={"queue": "q", "limit": "-1"}), 400, 3)
    assert_error(await http.get("/api/v0/tasks", params={"queue": "q", "omitValues": "maybe"}), 400, 3)
    assert_error(await http.get("/api/v0/queues/q/tasks", params={"queue": "q"}), 400, 3)


async def test_queue_listing_parameters(http: httpx.AsyncClient) -> None:
    for queue in ["a/1", "a/2", "b"]:
        await insert(http, queue)
    listed = await http.get("/api/v0/queues", params=[("matchPrefix", "a/"), ("matchExact", "b")])
    # Full stats on the Queues route (docs/reference/entroq-client-generations.md 5.2: the 0.12+
    # clients read them there).
    assert listed.json() == {
        "queues": [
            {"name": "a/1", "numTasks": 1, "numAvailable": 1},
            {"name": "a/2", "numTasks": 1, "numAvailable": 1},
            {"name": "b", "numTasks": 1, "numAvailable": 1},
        ]
    }
    limited = await http.get("/api/v0/queues/stats", params={"match_prefix": "a/", "limit": "1"})
    assert [q["name"] for q in limited.json()["queues"]] == ["a/1"]
    assert_error(await http.get("/api/v0/queues", params={"prefix": "a"}), 400, 3)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"inserts": {"queue": "q"}}', "inserts"),
        (b'{"inserts": [{"queue": 5}]}', "queue"),
        (b'{"inserts": [{"queue": "q", "attempt": "three"}]}', "attempt"),
        (b'{"inserts": [{"queue": "q", "attempt": 3000000000}]}', "attempt"),
        # A base64 value must be base64 (a value that is not a string is a JSON-era client's).
        (b'{"inserts": [{"queue": "q", "value": "not base64!"}]}', "value"),
        (b'{"deletes": [{"id": "x", "version": true}]}', "version"),
        (b'{"inserts": [{"queue": ""}]}', "queue"),
        (b'{"inserts": [{"queue": "q", "atMs": "5", "byMs": "5"}]}', "byMs"),
        (b'{"changes": [{"oldId": {"id": "x"}, "newData": {"queue": "q"}, "mode": "SIDEWAYS"}]}', "mode"),
    ],
)
async def test_bad_modify_bodies_are_400(http: httpx.AsyncClient, body: bytes, fragment: str) -> None:
    response = await http.post("/api/v0/modify", content=body, headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, 3)
    assert fragment.lower() in error["message"].lower()
    assert (await http.get("/healthz")).status_code == 200  # still serving


@pytest.mark.parametrize(
    "body",
    [
        {"claimantId": "w", "queues": []},
        {"claimantId": "w", "queues": [""]},
        {"claimantId": "w", "queues": "q"},
        {"claimantId": "w", "queues": ["q"], "durationMs": "soon"},
        {"claimantId": "", "queues": ["q"]},
    ],
)
async def test_bad_claims_are_400(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_error(await http.post("/api/v0/claim", json=body), 400, 3)


@pytest.mark.parametrize("declared", [True, False])
async def test_huge_body_is_413(
    http: httpx.AsyncClient, http_service: Any, namespace: str, declared: bool
) -> None:
    # Raw HTTP/1.1, so the body can be larger than the limit (10 MiB by default) and the answer
    # can come before all of it is sent: with Content-Length, or chunked without one.
    host, port = http_service.url.removeprefix("http://").rsplit(":", 1)
    size = 11 * 1024 * 1024
    framing = f"Content-Length: {size}" if declared else "Transfer-Encoding: chunked"
    head = (
        f"POST /api/v0/modify HTTP/1.1\r\nHost: {host}\r\nEntroQ-Namespace: {namespace}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    chunk = b'{"inserts":[{"queue":"q","value":"' + b"A" * (1024 * 1024)
    stream = await trio.open_tcp_stream(host, int(port))
    reply = b""
    async with stream:
        await stream.send_all(head)
        with trio.move_on_after(10):
            for _ in range(12):  # 12 MiB of body, or until the server stops reading
                piece = chunk if declared else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                try:
                    await stream.send_all(piece)
                except trio.BrokenResourceError:
                    break
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                data = await stream.receive_some()
                if not data:
                    break
                reply += data
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), reply[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["code"] == 8 and "larger than the limit" in body["message"]
    assert (await http.get("/api/v0/queues")).json() == {}


async def test_unknown_routes_and_wrong_methods(http: httpx.AsyncClient) -> None:
    for path in ["/", "/api/v0", "/api/v0/nothing", "/api/v1/claim", "/api/v0/queues//", "/api.EntroQ/Nope"]:
        response = await http.get(path, follow_redirects=False)
        assert response.status_code in (404, 405), path
        assert response.headers["content-type"] == "application/json"
    assert_error(await http.get("/api/v0/nothing"), 404, 5)
    response = await http.get("/api/v0/claim")
    assert_error(response, 405, 12)
    assert "POST" in response.headers["allow"]
    assert_error(await http.post("/api/v0/time"), 405, 12)
    assert_error(await http.delete("/api/v0/queues/q/tasks"), 405, 12)
    connect = await http.post("/api.EntroQ/Nope", json={})
    assert connect.status_code == 404 and connect.json()["code"] == "not_found"
    assert (await http.get("/api.EntroQ/Time")).status_code == 405


async def test_dependency_error_is_404_with_typed_details(
    http: httpx.AsyncClient, other_claimant: str = "thief"
) -> None:
    held = await insert(http, "q")
    await http.post(
        "/api/v0/claim", json={"claimantId": other_claimant, "queues": ["q"], "durationMs": "60000"}
    )
    body = {
        "claimantId": "me",
        "inserts": [{"queue": "q", "id": held["id"]}],
        "changes": [{"oldId": {"id": "gone", "version": 4}, "newData": {"queue": "q"}}],
        "deletes": [{"id": held["id"], "version": 1, "queue": "q"}, {"id": "nope", "version": 1}],
        "depends": [{"id": held["id"], "version": 0, "queue": "q"}],
    }
    error = assert_error(await http.post("/api/v0/modify", json=body), 404, 5)
    assert error["message"].startswith("modification dependency error")
    for word in ("missing", "mismatched", "collision", "claimed"):
        assert word in error["message"]
    details = error["details"]
    assert all(d["@type"] == "type.googleapis.com/api.ModifyDep" for d in details)
    assert details[0]["type"] == "DETAIL"
    by_type = {d["type"]: d for d in details[1:]}
    assert set(by_type) == {"INSERT", "CHANGE", "DELETE", "DEPEND", "CLAIM"}  # CLAIM stated explicitly
    assert by_type["CHANGE"]["id"] == {"id": "gone", "version": 4}
    assert by_type["CHANGE"]["reason"] == "missing" and by_type["CHANGE"]["currentVersion"] == -1
    assert by_type["DEPEND"]["reason"] == "mismatch" and by_type["DEPEND"]["currentVersion"] == 1
    assert by_type["CLAIM"]["id"]["id"] == held["id"] and by_type["CLAIM"]["reason"] == "claimed"
    assert by_type["INSERT"]["id"]["queue"] == "q"
    # Nothing was written.
    assert len((await http.get("/api/v0/tasks", params={"queue": "q"})).json()["tasks"]) == 1


@pytest.mark.parametrize("protocol_header", [True, False])
async def test_connect_unary(http: httpx.AsyncClient, protocol_header: bool) -> None:
    headers = {"Connect-Protocol-Version": "1"} if protocol_header else {}
    inserted = await http.post(
        "/api.EntroQ/Modify", json={"claimantId": "c", "inserts": [{"queue": "q"}]}, headers=headers
    )
    assert inserted.status_code == 200 and inserted.json()["inserted"][0]["queue"] == "q"
    claim = await http.post(
        "/api.EntroQ/TryClaim",
        json={"claimantId": "w", "queues": ["q"], "durationMs": 30000},
        headers=headers,
    )
    assert claim.json()["task"]["version"] == 1
    tasks = await http.post("/api.EntroQ/Tasks", json={"queue": "q", "omitValues": True}, headers=headers)
    assert len(tasks.json()["tasks"]) == 1
    queues = await http.post("/api.EntroQ/Queues", json={}, headers=headers)
    assert queues.json() == {"queues": [{"name": "q", "numTasks": 1}]}
    stats = await http.post("/api.EntroQ/QueueStats", json={"matchExact": ["q"]}, headers=headers)
    assert stats.json()["queues"][0]["numClaimed"] == 1
    assert int((await http.post("/api.EntroQ/Time", json={}, headers=headers)).json()["timeMs"]) > 0
    empty = await http.post(
        "/api.EntroQ/TryClaim", json={"claimantId": "w", "queues": ["q"]}, headers=headers
    )
    assert empty.json() == {}


async def test_connect_errors(http: httpx.AsyncClient) -> None:
    response = await http.post("/api.EntroQ/Modify", json={"deletes": [{"id": "x", "version": 1}]})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found" and body["message"].startswith("modification dependency error")
    detail = body["details"][1]
    assert detail["type"] == "api.ModifyDep" and detail["debug"]["type"] == "DELETE"
    raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    decoded = _schema.ModifyDep.FromString(raw)
    assert decoded.id.id == "x" and decoded.id.version == 1
    bad = await http.post("/api.EntroQ/TryClaim", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"
    proto = await http.post("/api.EntroQ/Time", content=b"", headers={"Content-Type": "application/proto"})
    assert proto.status_code == 415 and proto.json()["code"] == "invalid_argument"
    version = await http.post("/api.EntroQ/Time", json={}, headers={"Connect-Protocol-Version": "2"})
    assert version.status_code == 400
    timeout = await http.post(
        "/api.EntroQ/Claim",
        json={"claimantId": "w", "queues": ["empty"]},
        headers={"Connect-Timeout-Ms": "50"},
    )
    assert timeout.status_code == 504 and timeout.json()["code"] == "deadline_exceeded"
    assert (
        await http.post("/api.EntroQ/Time", json={}, headers={"Connect-Timeout-Ms": "x"})
    ).status_code == 400


def _envelopes(data: bytes) -> list[tuple[int, Any]]:
    messages = []
    while data:
        flags, length = data[0], int.from_bytes(data[1:5], "big")
        messages.append((flags, json.loads(data[5 : 5 + length])))
        data = data[5 + length :]
    return messages


async def test_connect_stream_tasks(http: httpx.AsyncClient) -> None:
    ids = sorted([(await insert(http, "s/q"))["id"] for _ in range(3)])
    request = json.dumps({"queue": "s/q"}).encode()
    response = await http.post(
        "/api.EntroQ/StreamTasks",
        content=bytes([0]) + len(request).to_bytes(4, "big") + request,
        headers={"Content-Type": "application/connect+json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/connect+json"
    messages = _envelopes(response.content)
    assert [flags for flags, _ in messages] == [0, 0, 0, 2] and messages[-1][1] == {}
    assert sorted(m["tasks"][0]["id"] for _, m in messages[:-1]) == ids
    bad = await http.post(
        "/api.EntroQ/StreamTasks", content=b"\x00\x00", headers={"Content-Type": "application/connect+json"}
    )
    [(flags, end)] = _envelopes(bad.content)
    assert bad.status_code == 200 and flags == 2 and end["error"]["code"] == "invalid_argument"


async def test_rest_stream_tasks_is_ndjson(http: httpx.AsyncClient) -> None:
    ids = sorted([(await insert(http, "/s q"))["id"] for _ in range(2)])
    for path in ["/api/v0/queues//s%20q/tasks/stream", "/api/v0/tasks/stream?queue=%2Fs%20q"]:
        response = await http.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert sorted(line["tasks"][0]["id"] for line in lines) == ids


async def test_health_ready_openapi(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/api/v0/claim/wait" in doc["paths"]


async def test_namespaces_are_separate(http: httpx.AsyncClient, http_service: Any) -> None:
    await insert(http, "mine")
    async with httpx.AsyncClient(
        base_url=http_service.url, headers={"EntroQ-Namespace": "t-other-ns"}
    ) as other:
        assert (await other.get("/api/v0/queues")).json() == {}
        bad = await other.get("/api/v0/queues", headers={"EntroQ-Namespace": "no spaces allowed"})
        assert_error(bad, 400, 3)


async def test_claim_with_finish_deletes_and_claims_in_one_request(http: httpx.AsyncClient) -> None:
    for _ in range(2):
        await insert(http, "f")
    first = (
        await http.post("/api/v0/claim", json={"claimantId": "w", "queues": ["f"], "durationMs": 60000})
    ).json()
    done = {"id": first["task"]["id"], "version": first["task"]["version"], "queue": "f"}
    stale = {**done, "version": 0}
    refused = await http.post("/api/v0/claim", json={"claimantId": "w", "queues": ["f"], "finish": [stale]})
    assert assert_error(refused, 404, 5)["details"][1]["type"] == "DELETE"
    assert (await http.get("/api/v0/queues/stats")).json()["queues"][0]["numClaimed"] == 1  # nothing claimed
    body = {"claimantId": "w", "queues": ["f"], "durationMs": 60000, "finish": [done]}
    second = (await http.post("/api/v0/claim/wait", json=body)).json()["task"]
    assert second["id"] != done["id"]
    assert [t["id"] for t in (await http.get("/api/v0/tasks", params={"queue": "f"})).json()["tasks"]] == [
        second["id"]
    ]


async def test_a_request_naming_two_namespaces_is_400_and_writes_nothing(
    http_service: ServiceProcess, namespace: str, http: httpx.AsyncClient
) -> None:
    other = namespace + "-b"
    body = {"inserts": [{"queue": "q", "value": "aGk="}]}
    async with httpx.AsyncClient(base_url=http_service.url, timeout=30) as raw:
        listed = await raw.post(
            "/api/v0/modify", json=body, headers={"EntroQ-Namespace": f"{namespace}, {other}"}
        )
        repeated = await raw.post(
            "/api/v0/modify",
            json=body,
            headers=[("EntroQ-Namespace", namespace), ("EntroQ-Namespace", other)],
        )
        same_twice = await raw.post(
            "/api/v0/modify",
            json=body,
            headers=[("EntroQ-Namespace", namespace), ("EntroQ-Namespace", namespace)],
        )
    for response in (listed, repeated):
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert "exactly one namespace" in message and repr(namespace) in message and repr(other) in message
    assert same_twice.status_code == 200, same_twice.text  # one namespace, said twice
    assert len((await http.get("/api/v0/tasks", params={"queue": "q"})).json()["tasks"]) == 1


async def test_num_future_on_every_stats_route(http: httpx.AsyncClient) -> None:
    """QueueStats.num_future (field 6) over REST and Connect: a task inserted with a future
    arrival is future, not claimed; a leased task is claimed, not future."""
    now = int((await http.get("/api/v0/time")).json()["timeMs"])
    await insert(http, "f", atMs=str(now + 3_600_000))
    await insert(http, "f")
    claimed = await http.post(
        "/api/v0/claim", json={"claimantId": "w", "queues": ["f"], "durationMs": "60000"}
    )
    assert claimed.json()["task"]["claims"] == 1
    expected = {"name": "f", "numTasks": 2, "numClaimed": 1, "numFuture": 1, "maxClaims": 1}
    assert (await http.get("/api/v0/queues")).json() == {"queues": [expected]}
    assert (await http.get("/api/v0/queues/stats")).json() == {"queues": [expected]}
    connect = await http.post(
        "/api.EntroQ/QueueStats", json={"matchExact": ["f"]}, headers={"Connect-Protocol-Version": "1"}
    )
    assert connect.json() == {"queues": [expected]}
    # Connect Queues answers name and size only, as EntroQ's own server does (eqsvcgrpc Queues).
    sizes = await http.post("/api.EntroQ/Queues", json={}, headers={"Connect-Protocol-Version": "1"})
    assert sizes.json() == {"queues": [{"name": "f", "numTasks": 2}]}


async def test_a_claim_by_task_id_reaches_only_the_queue_it_names(http: httpx.AsyncClient) -> None:
    # taskId (this service's addition): the authorizer checks CLAIM on the named queue, so the
    # store must claim the task only when it is in that queue.
    response = await http.post("/api/v0/modify", json={"inserts": [{"queue": "mine"}]})
    inserted = response.json()["inserted"][0]

    def by_id(*queues: str) -> dict[str, Any]:
        return {"claimantId": "c", "queues": list(queues), "taskId": inserted["id"]}

    elsewhere = await http.post("/api/v0/claim", json=by_id("other"))
    assert elsewhere.status_code == 200 and elsewhere.json() == {}
    for queues in ((), ("mine", "other")):
        refused = await http.post("/api/v0/claim", json=by_id(*queues))
        assert refused.status_code == 400
        assert "names exactly one queue" in refused.json()["message"]
    waiting = await http.post("/api/v0/claim/wait", json=by_id("mine"))
    assert waiting.status_code == 400 and "never waits" in waiting.json()["message"]
    (unchanged,) = (await http.get("/api/v0/tasks", params={"taskId": inserted["id"]})).json()["tasks"]
    assert unchanged.get("version", 0) == 0 and unchanged.get("claims", 0) == 0
    task = (await http.post("/api/v0/claim", json=by_id("mine"))).json()["task"]
    assert (task["id"], task["version"], task["claims"], task["claimantId"]) == (inserted["id"], 1, 1, "c")
