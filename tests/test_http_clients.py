"""EntroQ's own HTTP clients at the seed (0.10.0): their exact request shapes, against the service.

The Python client (clients/py, ``EntroQJSON``, on ``requests``) and the TypeScript client
(clients/js, ``EntroQClient``, on ``fetch``) are not installable here (0.10.0 is not on PyPI),
so these tests send what they send, byte for byte where it matters
(docs/reference/entroq-protocol.md 5.1 and 5.2):
paths built with ``requests.utils.quote`` (= ``urllib.parse.quote``, keeps ``/``) or
``encodeURIComponent``, int64 as strings, ``"id": null``, all four modify lists always
present, ``pollMs`` strings, JSON content type on GETs; and they read the answers as those
clients do (``.get`` with defaults, ``int()`` of strings, ``b64decode``, 404 + "missing" or
"mismatched" for a DependencyError).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import uuid
from typing import Any

import httpx


def seed_task(obj: dict[str, Any]) -> dict[str, Any]:
    """What the seed Python client's ``_json_to_task`` reads from a task."""
    return {
        "id": obj.get("id", ""),
        "version": int(obj.get("version", 0)),
        "queue": obj.get("queue", ""),
        "at": int(obj.get("atMs", "0")),
        "claimant": obj.get("claimantId", ""),
        "value": base64.b64decode(obj.get("value", "")),
        "created": int(obj.get("createdMs", "0")),
        "modified": int(obj.get("modifiedMs", "0")),
        "claims": int(obj.get("claims", 0)),
        "attempt": int(obj.get("attempt", 0)),
        "err": obj.get("err", ""),
    }


def seed_is_dependency_error(response: httpx.Response) -> bool:
    """The seed Python client's DependencyError test."""
    return response.status_code == 404 and (
        "missing" in str(response.json()) or "mismatched" in str(response.json())
    )


async def test_seed_python_client_session(http: httpx.AsyncClient) -> None:
    claimant = str(uuid.uuid4())
    queue = "/jobs/a b"  # a path-like name: the seed client sends //jobs/a%20b in the URL

    def modify_body(inserts=(), changes=(), deletes=(), depends=()) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        return {
            "claimantId": claimant,
            "inserts": list(inserts),
            "changes": list(changes),
            "deletes": list(deletes),
            "depends": list(depends),
        }

    insert = {
        "queue": queue,
        "atMs": "0",
        "value": base64.b64encode(b"work").decode(),
        "id": None,
        "attempt": 0,
        "err": "",
    }
    response = await http.post("/api/v0/modify", json=modify_body(inserts=[insert]))
    inserted = [seed_task(t) for t in response.json().get("inserted", [])]
    assert response.status_code == 200 and inserted[0]["value"] == b"work" and inserted[0]["version"] == 0

    path = f"/api/v0/queues/{urllib.parse.quote(queue)}/tasks"
    assert path == "/api/v0/queues//jobs/a%20b/tasks"
    listed = await http.get(path, params={"limit": 10, "omitValues": "true"})
    assert [seed_task(t)["id"] for t in listed.json().get("tasks", [])] == [inserted[0]["id"]]

    claim = {"claimantId": claimant, "queues": [queue], "durationMs": str(30000), "pollMs": "0"}
    task = seed_task((await http.post("/api/v0/claim", json=claim)).json()["task"])
    assert task["version"] == 1 and task["claimant"] == claimant and task["claims"] == 1

    # A change as the seed client sends it: oldId.queue is the *new* queue.
    change = {
        "oldId": {"id": task["id"], "version": task["version"], "queue": queue + "/done"},
        "newData": {
            "queue": queue + "/done",
            "atMs": "0",
            "value": base64.b64encode(b"result").decode(),
            "attempt": 1,
            "err": "",
        },
    }
    response = await http.post("/api/v0/modify", json=modify_body(changes=[change]))
    changed = seed_task(response.json()["changed"][0])
    assert changed["queue"] == queue + "/done" and changed["version"] == 2 and changed["attempt"] == 1

    # The stale version again: the seed client must recognise a DependencyError.
    stale = await http.post("/api/v0/modify", json=modify_body(changes=[change]))
    assert seed_is_dependency_error(stale)
    stale_delete = {"id": task["id"], "version": 1, "queue": queue}
    assert seed_is_dependency_error(
        await http.post("/api/v0/modify", json=modify_body(deletes=[stale_delete]))
    )

    wait = {**claim, "queues": [queue + "/done"], "pollMs": str(5000)}
    claimed = seed_task((await http.post("/api/v0/claim/wait", json=wait)).json()["task"])
    assert claimed["id"] == task["id"] and claimed["version"] == 3

    queues = await http.get(
        "/api/v0/queues", params={"matchPrefix": "/jobs", "matchExact": ["other"], "limit": 5}
    )
    # Full stats on this route (docs/reference/entroq-client-generations.md 5.2: the 0.12+ clients
    # read them here); the seed passes them on.
    assert queues.json()["queues"] == [
        {"name": queue + "/done", "numTasks": 1, "numClaimed": 1, "maxClaims": 2}
    ]
    assert int((await http.get("/api/v0/time")).json().get("timeMs", "0")) > 0

    done = {"id": claimed["id"], "version": claimed["version"], "queue": claimed["queue"]}
    response = await http.post("/api/v0/modify", json=modify_body(deletes=[done]))
    assert response.status_code == 200 and response.json().get("inserted", []) == []
    assert "task" not in (await http.post("/api/v0/claim", json=claim)).json()


async def test_typescript_client_request_shapes(http: httpx.AsyncClient) -> None:
    # Every fetch sends Content-Type: application/json, GETs included, and merges caller headers.
    ts = {"Content-Type": "application/json", "Authorization": "Bearer ignored-without-authz"}
    claimant = "ts-" + uuid.uuid4().hex
    queue = "ts/q ü"
    modify = {
        "claimantId": claimant,
        "inserts": [
            {"queue": queue, "atMs": "0", "value": base64.b64encode(b"{}").decode()} for _ in range(2)
        ],
    }
    response = await http.post("/api/v0/modify", content=json.dumps(modify), headers=ts)
    ids = sorted(t["id"] for t in response.json()["inserted"])

    # tasks(): encodeURIComponent(queue) + URLSearchParams of the rest (an array taskId becomes "a,b").
    path = "/api/v0/queues/" + urllib.parse.quote(queue, safe="") + "/tasks"
    listed = await http.get(
        path + "?" + urllib.parse.urlencode({"limit": "10", "omitValues": "true"}), headers=ts
    )
    assert sorted(t["id"] for t in listed.json()["tasks"]) == ids
    joined = await http.get(path + "?" + urllib.parse.urlencode({"taskId": ",".join(ids)}), headers=ts)
    assert joined.status_code == 200 and joined.json() == {}  # one (nonexistent) ID "a,b", as on EntroQ

    # queues() / queueStats(): repeated keys.
    query = urllib.parse.urlencode([("matchPrefix", "ts/"), ("matchPrefix", "zz"), ("limit", "3")])
    assert (await http.get("/api/v0/queues?" + query, headers=ts)).json()["queues"][0]["numTasks"] == 2
    stats = (await http.get("/api/v0/queues/stats?" + query, headers=ts)).json()["queues"][0]
    assert stats["numAvailable"] == 2

    body = {"claimantId": claimant, "queues": [queue], "durationMs": "30000", "pollMs": "0"}
    task = (await http.post("/api/v0/claim", content=json.dumps(body), headers=ts)).json()["task"]
    waited = await http.post("/api/v0/claim/wait", content=json.dumps({**body, "pollMs": "5000"}), headers=ts)
    assert waited.json()["task"]["id"] != task["id"]

    # A failed request: the client throws with json.message.
    bad = await http.post("/api/v0/claim", content=json.dumps({**body, "queues": []}), headers=ts)
    assert bad.status_code == 400 and bad.json()["message"]

    # streamTasks(): GET .../tasks/stream, concatenated JSON objects, each with tasks[].
    stream = await http.get(path.removesuffix("/tasks") + "/tasks/stream", headers=ts)
    decoder, text, seen = json.JSONDecoder(), stream.text, []
    position = 0
    while position < len(text.strip()):
        obj, end = decoder.raw_decode(text, position)
        seen += [t["id"] for t in obj["tasks"]]
        position = end + (len(text[end:]) - len(text[end:].lstrip()))
    assert sorted(seen) == ids

    assert isinstance((await http.get("/api/v0/time", headers=ts)).json()["timeMs"], str)
