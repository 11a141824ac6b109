"""Battery row f: hostile input at the HTTP edge, the explicit cases.

The row is docs/reference/reliability-battery.md 3.

Each case goes to the session's real service (Hypercorn process) over real HTTP, in the
test's own namespace; the store is the session store (embedded Valkey, or the external Redis
in CI's second run). Every refused request must be a clear 4xx (never a 5xx), must leave the
namespace's keys exactly as they were (compared with DUMP), and must leave the service
serving. What goes in unharmed must come back byte for byte. The property-based fuzzing of
every route is in test_battery_hostile_fuzz.py (on a private store, where the whole keyspace
can be compared).

Extends, without repeating, tests/test_http_routes.py (malformed JSON, wrong types, an 11 MiB
body), test_core_values.py and test_core_modify.py / test_core_claim.py.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import httpx
import pytest
import redis
import trio
from battery.hostile import (
    HOSTILE_STRINGS,
    HOSTILE_VALUES,
    RssSampler,
    b64,
    namespace_state,
    outside_namespace,
)
from conftest import ServiceProcess

MIB = 1024 * 1024
DEFAULT_LIMIT = 10 * MIB  # the service's default --max-body-mb
# Reads on the later routes (/api/v0/tasks) default to JSON-era values; these tests read bytes.
BASE64_VALUES = {"EntroQ-Value-Encoding": "base64"}


def assert_refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    """A clear refusal: the status, a google.rpc.Status body, no stack trace."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body: dict[str, Any] = response.json()
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


async def post_raw(http: httpx.AsyncClient, path: str, body: bytes, **headers: str) -> httpx.Response:
    return await http.post(path, content=body, headers={"Content-Type": "application/json", **headers})


async def assert_healthy(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/api/v0/time")).status_code == 200


# --- bodies at and past the limit ------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    """A valid modify of exactly ``size`` bytes: one insert whose value fills it, then spaces."""
    head, tail = b'{"inserts":[{"queue":"big","value":"', b'"}]}'
    room = size - len(head) - len(tail)
    value_bytes = (room // 4) * 3
    body = head + b64(b"\xab" * value_bytes).encode() + tail
    return body + b" " * (size - len(body))


async def test_largest_body_is_the_limit_and_one_byte_more_is_413(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str
) -> None:
    at_limit = body_of_size(DEFAULT_LIMIT)
    assert len(at_limit) == DEFAULT_LIMIT
    accepted = await post_raw(http, "/api/v0/modify", at_limit)
    assert accepted.status_code == 200, accepted.text[:300]
    stored = accepted.json()["inserted"][0]
    print(f"largest body accepted: {len(at_limit)} bytes (limit {DEFAULT_LIMIT})")
    before = namespace_state(sync_redis, namespace)
    over = body_of_size(DEFAULT_LIMIT + 1)
    assert len(over) == DEFAULT_LIMIT + 1
    refused = await post_raw(http, "/api/v0/modify", over)
    assert assert_refused(refused, 413)["code"] == 8
    assert namespace_state(sync_redis, namespace) == before
    listed = (await http.get("/api/v0/tasks", params={"queue": "big", "omitValues": "true"})).json()
    assert [t["id"] for t in listed["tasks"]] == [stored["id"]]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_100_mib_streamed_body_is_413_with_memory_flat(
    http: httpx.AsyncClient,
    http_service: ServiceProcess,
    sync_redis: redis.Redis,
    namespace: str,
    declared: bool,
) -> None:
    # Raw HTTP/1.1: the client keeps sending after the answer, as an attacker would; the server
    # must answer 413 after at most the limit and must not buffer the rest.
    host, port = http_service.url.removeprefix("http://").rsplit(":", 1)
    total = 100 * MIB
    framing = f"Content-Length: {total}" if declared else "Transfer-Encoding: chunked"
    head = (
        f"POST /api/v0/modify HTTP/1.1\r\nHost: {host}\r\nEntroQ-Namespace: {namespace}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    chunk = b'{"inserts":[{"queue":"q","value":"' + b"A" * (MIB - 36)
    sent = 0
    reply = b""
    with RssSampler(http_service.process.pid) as memory:
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(head)
            with trio.move_on_after(60):
                while sent < total:
                    piece = chunk if declared else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    try:
                        await stream.send_all(piece)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    sent += len(chunk)
                while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                    try:
                        data = await stream.receive_some()
                    except trio.BrokenResourceError:
                        break
                    if not data:
                        break
                    reply += data
    print(
        f"100 MiB {'declared' if declared else 'chunked'}: client sent {sent / MIB:.0f} MiB before the "
        f"server stopped reading; service RSS {memory.baseline / MIB:.0f} -> peak "
        f"{memory.peak / MIB:.0f} MiB (+{memory.growth_mib:.1f})"
    )
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    # Flat: at most the limit (10 MiB) held once plus the app's own churn, never the 100 MiB.
    assert memory.growth_mib < 40, memory.growth_mib
    assert namespace_state(sync_redis, namespace) == {}
    await assert_healthy(http)


# --- malformed JSON: nesting, encodings, numbers -----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 100_000,  # unterminated as well
        b'{"inserts":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"inserts":[{"queue":"q","value":' + b"[" * 10_000 + b"]" * 10_000 + b"}]}",
    ],
    ids=["arrays-1e4", "objects-1e4", "open-arrays-1e5", "in-a-field", "in-a-value"],
)
@pytest.mark.parametrize("encoding", ["base64", "json"])
async def test_deeply_nested_json_is_400(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str, body: bytes, encoding: str
) -> None:
    for path in ("/api/v0/modify", "/api/v0/claim", "/api.EntroQ/Modify"):
        response = await post_raw(http, path, body, **{"EntroQ-Value-Encoding": encoding})
        assert_refused(response)
    assert namespace_state(sync_redis, namespace) == {}
    await assert_healthy(http)


async def test_json_value_nested_just_below_the_parser_limit_round_trips(http: httpx.AsyncClient) -> None:
    # A JSON-era value is stored as its compact JSON text: deep but parseable nesting is data.
    depth = 500
    value = "[" * depth + "]" * depth
    response = await post_raw(
        http,
        "/api/v0/modify",
        b'{"inserts":[{"queue":"deep","value":' + value.encode() + b"}]}",
        **{"EntroQ-Value-Encoding": "json"},
    )
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 200:
        listed = await http.get(
            "/api/v0/tasks", params={"queue": "deep"}, headers={"EntroQ-Value-Encoding": "json"}
        )
        assert json.dumps(listed.json()["tasks"][0]["value"], separators=(",", ":")) == value


@pytest.mark.parametrize(
    "body",
    [
        b'{"inserts":[{"queue":"q","value":"not base64!"}]}',
        b'{"inserts":[{"queue":"q","value":"QUJD\\u0000"}]}',
        b'{"inserts":[{"queue":"q","value":"===="}]}',
        b'{"inserts":[{"queue":"q","value":"A"}]}',
        b'{"inserts":[{"queue":"q","value":"\xff\xfe"}]}',
        b'{"inserts":[{"queue":"q\xff"}]}',
        b'{"inserts":[{"queue":"q\xc0\xaf"}]}',  # overlong "/"
        b'{"inserts":[{"queue":"q\xed\xa0\x80"}]}',  # UTF-8-encoded surrogate
        b'{"inserts":[{"queue":"q\\ud800"}]}',
        b'{"inserts":[{"queue":"q","id":"\\udfff"}]}',
        b'{"inserts":[{"queue":"q","err":"\\ud800"}]}',
        b'{"claimantId":"\\ud800","inserts":[{"queue":"q"}]}',
        b'{"deletes":[{"id":"\\ud800","version":1}]}',
        b"\xef\xbb\xbf\xff{}",
        b"\x00",
        b'{"inserts":[{"queue":"q"}]}\x00',
    ],
)
async def test_invalid_base64_and_utf8_are_400(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str, body: bytes
) -> None:
    assert_refused(await post_raw(http, "/api/v0/modify", body))
    assert namespace_state(sync_redis, namespace) == {}


async def test_invalid_utf8_in_urls_is_never_a_5xx(http: httpx.AsyncClient, namespace: str) -> None:
    # A queue name that is not valid UTF-8 cannot exist (JSON bodies are UTF-8), so a lookup may
    # find nothing or be refused; it must never fail inside the service.
    for path in [
        "/api/v0/tasks?queue=%FF",
        "/api/v0/tasks?queue=%ED%A0%80",
        "/api/v0/tasks?queue=%C0%AF",
        "/api/v0/queues/%FF/tasks",
        "/api/v0/queues/%00/tasks",
        "/api/v0/queues/%ED%A0%80/tasks/stream",
        "/api/v0/queues?matchPrefix=%FF",
        "/api/v0/tasks?taskId=%FF&taskId=%00",
        "/api/v0/tasks?%FF=1",
    ]:
        response = await http.get(path)
        assert response.status_code in (200, 400), (path, response.status_code, response.text[:200])
    await assert_healthy(http)


INT64_OVERFLOWS: list[dict[str, Any]] = [
    {"inserts": [{"queue": "q", "atMs": "9223372036854775808"}]},
    {"inserts": [{"queue": "q", "atMs": "-9223372036854775809"}]},
    {"inserts": [{"queue": "q", "atMs": "9223372036854775807"}]},  # fits int64, past the store's range
    {"inserts": [{"queue": "q", "atMs": "-9223372036854775808"}]},
    {"inserts": [{"queue": "q", "byMs": "99999999999999"}]},  # now + that is past the range
    {"inserts": [{"queue": "q", "atMs": 1e300}]},
    {"inserts": [{"queue": "q", "atMs": "1e20"}]},  # proto3 JSON takes exponents; this one overflows
    {"inserts": [{"queue": "q", "attempt": 2147483648}]},
    {"inserts": [{"queue": "q", "attempt": -1}]},
    {"inserts": [{"queue": "q", "attempt": 1.5}]},
    {"deletes": [{"id": "x", "version": 2147483648}]},
    {"deletes": [{"id": "x", "version": -1}]},
    {"deletes": [{"id": "x", "version": "4294967296"}]},
    {
        "changes": [
            {"oldId": {"id": "x", "version": 0}, "newData": {"queue": "q", "atMs": "18446744073709551616"}}
        ]
    },
]


@pytest.mark.parametrize("body", INT64_OVERFLOWS, ids=[json.dumps(b)[:60] for b in INT64_OVERFLOWS])
async def test_integer_overflow_is_400(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str, body: dict[str, Any]
) -> None:
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "q", "id": "x"}]})
    before = namespace_state(sync_redis, namespace)
    assert_refused(await http.post("/api/v0/modify", json=body))
    assert namespace_state(sync_redis, namespace) == before


async def test_numbers_with_thousands_of_digits_are_400(http: httpx.AsyncClient) -> None:
    for field in (b"atMs", b"attempt", b"version"):
        body = b'{"inserts":[{"queue":"q","' + field + b'":' + b"9" * 5000 + b"}]}"
        assert_refused(await post_raw(http, "/api/v0/modify", body))
    query = "/api/v0/tasks?queue=q&limit=" + "9" * 5000
    assert_refused(await http.get(query))


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "duration", ["-1", "-9223372036854775808", "31622400001", "9223372036854775807", "1e12", "1.5"]
)
async def test_negative_and_absurd_lease_durations_are_400(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str, duration: str
) -> None:
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "q"}]})
    before = namespace_state(sync_redis, namespace)
    for path in ("/api/v0/claim", "/api/v0/claim/wait"):
        body = {"claimantId": "w", "queues": ["q"], "durationMs": duration}
        assert_refused(await http.post(path, json=body, headers={"X-Server-Timeout": "1"}))
    assert namespace_state(sync_redis, namespace) == before


async def test_longest_lease_and_negative_arrivals_are_accepted(http: httpx.AsyncClient) -> None:
    # 366 days is the cap and allowed; a negative or zero arrival means now (EntroQ's rule).
    inserted = await http.post(
        "/api/v0/modify", json={"inserts": [{"queue": "q", "byMs": "-5000"}, {"queue": "q", "atMs": "-1"}]}
    )
    assert inserted.status_code == 200
    now = int((await http.get("/api/v0/time")).json()["timeMs"])
    for task in inserted.json()["inserted"]:
        assert abs(int(task["atMs"]) - now) < 60_000
    claimed = await http.post(
        "/api/v0/claim", json={"claimantId": "w", "queues": ["q"], "durationMs": "31622400000"}
    )
    assert claimed.status_code == 200
    assert int(claimed.json()["task"]["atMs"]) - now >= 31622400000 - 60_000


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Server-Timeout", "-1"),
        ("X-Server-Timeout", "nan"),
        ("X-Server-Timeout", "inf"),
        ("X-Server-Timeout", "1e400"),
        ("X-Server-Timeout", "soon"),
        ("Connect-Timeout-Ms", "-1"),
        ("Connect-Timeout-Ms", "99999999999"),
        ("Connect-Timeout-Ms", "1.5"),
    ],
)
async def test_absurd_claim_deadlines_are_400(http: httpx.AsyncClient, header: str, value: str) -> None:
    body = {"claimantId": "w", "queues": ["nothing-here"]}
    path = "/api.EntroQ/Claim" if header.startswith("Connect") else "/api/v0/claim/wait"
    assert_refused(await http.post(path, json=body, headers={header: value}))


async def test_a_deadline_of_1e300_seconds_waits_until_the_client_leaves(http: httpx.AsyncClient) -> None:
    # Finite, so allowed (no --claim-wait-cap here): the wait ends when the caller goes away,
    # and the service keeps serving.
    with trio.move_on_after(0.5) as scope:
        await http.post(
            "/api/v0/claim/wait",
            json={"claimantId": "w", "queues": ["none"]},
            headers={"X-Server-Timeout": "1e300"},
        )
    assert scope.cancelled_caught
    await assert_healthy(http)


# --- sizes: queues per claim, items per modify ------------------------------------------------


async def test_10000_queues_in_one_claim_is_a_clear_400(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str
) -> None:
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "q999"}]})
    before = namespace_state(sync_redis, namespace)
    body = {"claimantId": "w", "queues": [f"q{i}" for i in range(10_000)]}
    error = assert_refused(await http.post("/api/v0/claim", json=body))
    assert "at most 1000 queues per claim, got 10000" in error["message"]
    body["queues"] = [f"q{i}" for i in range(1001)]
    assert "at most 1000 queues" in assert_refused(await http.post("/api/v0/claim", json=body))["message"]
    assert namespace_state(sync_redis, namespace) == before
    # The cap itself works, and 10,000 repeats of one name are one queue (the store ignores repeats).
    body["queues"] = [f"q{i}" for i in range(1000)]
    assert (await http.post("/api/v0/claim", json=body)).json()["task"]["queue"] == "q999"
    body["queues"] = ["q999"] * 10_000
    assert (await http.post("/api/v0/claim", json=body)).status_code == 200


async def test_100000_items_in_one_modify_is_a_clear_400(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str
) -> None:
    await http.post("/api/v0/modify", json={"inserts": [{"queue": "q", "id": "x"}]})
    before = namespace_state(sync_redis, namespace)
    started = time.perf_counter()
    error = assert_refused(await http.post("/api/v0/modify", json={"inserts": [{"queue": "q"}] * 100_000}))
    elapsed = time.perf_counter() - started
    assert "at most 1000 items per modify" in error["message"] and "got 100000" in error["message"]
    mixed = {"inserts": [{"queue": "q"}] * 600, "deletes": [{"id": "x", "version": 0}] * 401}
    assert "got 1001" in assert_refused(await http.post("/api/v0/modify", json=mixed))["message"]
    finish = {"claimantId": "w", "queues": ["q"], "finish": [{"id": "x", "version": 0}] * 1001}
    assert (
        "at most 1000 finished tasks"
        in assert_refused(await http.post("/api/v0/claim", json=finish))["message"]
    )
    assert namespace_state(sync_redis, namespace) == before
    print(f"100,000-item modify refused in {elapsed:.2f} s")


async def test_a_body_of_millions_of_empty_items_is_refused_quickly(http: httpx.AsyncClient) -> None:
    # 10 MiB of "{}," is 3.5 million inserts. Parsed item by item it held the service's event
    # loop for about 20 s (every other request waited), and the caller identification's walk
    # over the inserts for ~3 s more; counted first it is refused in about 0.3 s.
    items = b",".join([b"{}"] * ((DEFAULT_LIMIT - 20) // 3))
    body = b'{"inserts":[' + items + b"]}"
    assert len(body) <= DEFAULT_LIMIT
    started = time.perf_counter()
    error = assert_refused(await post_raw(http, "/api/v0/modify", body))
    elapsed = time.perf_counter() - started
    assert "at most 1000 items per modify" in error["message"]
    print(f"{len(body) / MIB:.1f} MiB body of empty inserts refused in {elapsed:.2f} s")
    assert elapsed < 2, elapsed


@pytest.mark.parametrize("mode", ["{}", "[]", "[1]", "true", '{"a": [1]}', "null", '"SIDEWAYS"', "7"])
async def test_an_enum_field_holding_an_object_is_400(http: httpx.AsyncClient, mode: str) -> None:
    # Found by the fuzzer: an object or a list where a change mode goes was a 500 (the enum
    # check looked it up in a dict: unhashable).
    body = '{"changes":[{"oldId":{"id":"x","version":0},"newData":{"queue":"q"},"mode":' + mode + "}]}"
    response = await post_raw(http, "/api/v0/modify", body.encode())
    if mode == "null":
        assert response.status_code == 404  # null = the default mode; then x is missing
    else:
        assert_refused(response)


@pytest.mark.parametrize(
    "body",
    [b'{"changes": 5}', b'{"inserts": 1}', b'{"changes": "x"}', b'{"inserts": true, "changes": 2.5}'],
)
@pytest.mark.parametrize(
    "path", ["/api/v0/modify", "/api/v0/claim", "/api/v0/claim/wait", "/api.EntroQ/Modify"]
)
async def test_a_scalar_where_a_list_goes_is_400(http: httpx.AsyncClient, body: bytes, path: str) -> None:
    # Found by the fuzzer (--full): the caller identification iterated "changes" before the
    # parser had checked it, and an integer there was a 500 on every POST route.
    assert_refused(await post_raw(http, path, body, **{"X-Server-Timeout": "0.05"}))


# --- hostile names, IDs and values round-trip byte for byte ----------------------------------


@pytest.mark.parametrize("text", HOSTILE_STRINGS, ids=[repr(s)[:24] for s in HOSTILE_STRINGS])
async def test_hostile_strings_as_queue_id_claimant_and_err_round_trip(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str, text: str
) -> None:
    value = text.encode() + b"\x00\xff"
    insert = {"queue": text, "id": text, "value": b64(value), "err": text}
    response = await http.post("/api/v0/modify", json={"claimantId": text, "inserts": [insert]})
    assert response.status_code == 200, response.text[:300]
    task = response.json()["inserted"][0]
    assert (task["queue"], task["id"], task["err"], task["claimantId"]) == (text, text, text, text)
    # Read back on every route that names a queue.
    routes = [
        ("/api/v0/tasks", {"queue": text}),
        ("/api/v0/queues/" + urllib.parse.quote(text, safe="") + "/tasks", {}),
        ("/api/v0/tasks", {"taskId": text}),
    ]
    for path, params in routes:
        listed = (await http.get(path, params=params, headers=BASE64_VALUES)).json()
        assert [(t["id"], t["queue"], t["value"]) for t in listed["tasks"]] == [(text, text, b64(value))], (
            path
        )
    stats = (await http.get("/api/v0/queues", params={"matchExact": text})).json()["queues"]
    assert [s["name"] for s in stats] == [text]
    # The store holds exactly these bytes, under keys of the namespace's slot only.
    keys = list(namespace_state(sync_redis, namespace))
    assert outside_namespace(keys, namespace) == []
    assert sync_redis.exists(("{" + namespace + "}:t:").encode() + text.encode())
    assert sync_redis.zscore(("{" + namespace + "}:queues").encode(), text.encode()) == 0
    # Claim, change (renaming the queue to itself plus a suffix) and delete all work on it.
    claimed = (await http.post("/api/v0/claim", json={"claimantId": text, "queues": [text]})).json()["task"]
    assert claimed["id"] == text and claimed["claimantId"] == text
    change = {"oldId": {"id": text, "version": 1}, "newData": {"queue": text + "/2", "value": b64(value)}}
    changed = (await http.post("/api/v0/modify", json={"claimantId": text, "changes": [change]})).json()
    assert changed["changed"][0]["queue"] == text + "/2"
    deleted = await http.post("/api/v0/modify", json={"deletes": [{"id": text, "version": 2}]})
    assert deleted.status_code == 200
    assert namespace_state(sync_redis, namespace) == {}


async def test_nfc_and_nfd_names_are_different_queues(http: httpx.AsyncClient) -> None:
    # No normalization anywhere: names are bytes, so the two spellings of "é" are two queues.
    for name in ("\u00e9", "e\u0301"):
        assert (
            await http.post("/api/v0/modify", json={"inserts": [{"queue": name, "id": name}]})
        ).status_code == 200
    queues = (await http.get("/api/v0/queues")).json()["queues"]
    assert sorted(q["name"] for q in queues) == sorted(["\u00e9", "e\u0301"])
    nfc = (await http.get("/api/v0/tasks", params={"queue": "\u00e9"})).json()["tasks"]
    assert [t["id"] for t in nfc] == ["\u00e9"]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=[repr(v)[:20] for v in HOSTILE_VALUES])
async def test_hostile_values_round_trip_byte_for_byte(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str, value: bytes
) -> None:
    response = await http.post("/api/v0/modify", json={"inserts": [{"queue": "v", "value": b64(value)}]})
    assert response.status_code == 200
    task_id = response.json()["inserted"][0]["id"]
    listed = (await http.get("/api/v0/tasks", params={"queue": "v"}, headers=BASE64_VALUES)).json()["tasks"]
    assert [t["value"] for t in listed] == [b64(value)]
    record = sync_redis.get(("{" + namespace + "}:t:" + task_id).encode())
    assert record is not None and record.endswith(value)


async def test_too_long_names_and_ids_are_400_counted_in_bytes(
    http: httpx.AsyncClient, sync_redis: redis.Redis, namespace: str
) -> None:
    # The limits are bytes of UTF-8: 16 four-byte emoji fill a 64-byte ID, one more is over.
    emoji = "\U0001f600"
    assert (
        await http.post("/api/v0/modify", json={"inserts": [{"queue": "q", "id": emoji * 16}]})
    ).status_code == 200
    before = namespace_state(sync_redis, namespace)
    for body in [
        {"inserts": [{"queue": "q", "id": emoji * 16 + "x"}]},
        {"inserts": [{"queue": emoji * 256 + "x"}]},
        {"claimantId": emoji * 32 + "x", "inserts": [{"queue": "q"}]},
        {"inserts": [{"queue": ""}]},
        {"deletes": [{"id": "", "version": 0}]},
    ]:
        assert_refused(await http.post("/api/v0/modify", json=body))
    assert namespace_state(sync_redis, namespace) == before
