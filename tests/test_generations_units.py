"""Client generations without I/O: the value codec, protocol negotiation, and how a request's
value encoding is decided (values.py, generations.py and wire.py in server/entroq_redis_server/core/).

The request shapes are the captures of docs/reference/entroq-client-generations.md (seed 0.10,
PyPI entroq 0.12.x, 0.13/0.14, 0.15).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from entroq_redis_server.core import errors as _errors
from entroq_redis_server.core import generations as _generations
from entroq_redis_server.core import values as _values
from entroq_redis_server.core import wire as _wire
from entroq_redis_server.core.generations import Generations
from hypothesis import given
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_a_json_value_round_trips_as_equal_json(value: Any) -> None:
    stored = _values.json_to_bytes(value)
    assert _values.bytes_to_json(stored) == value
    # Stored as JSON text: what a seed-era reader gets (base64 of it) is that text.
    assert (stored == b"") if value is None else (json.loads(stored) == value)


def test_null_is_no_value_and_no_value_is_omitted() -> None:
    assert _values.json_to_bytes(None) == b""
    assert _values.bytes_to_json(b"") is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, math.nan]])
def test_non_finite_numbers_are_not_json(value: Any) -> None:
    with pytest.raises(ValueError):
        _values.json_to_bytes(value)


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (b'{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),  # JSON text: parsed
        (b"  7\n", 7),
        (b'"quoted"', "quoted"),
        (b"plain text", "plain text"),  # UTF-8 text that is not JSON: a string
        ("grüße".encode(), "grüße"),
        (b"NaN", "NaN"),  # Python would parse these; JSON does not
        (b"1e999", "1e999"),
        (b"[" * 100_000, "[" * 100_000),  # too deep to parse: text
        (b"\xff\x00\x01", base64.b64encode(b"\xff\x00\x01").decode()),  # not UTF-8: base64
        (b"\x01\x02", "AQI="),  # UTF-8 by chance, but control characters: base64
        (b"tab\tnew\nline\r", "tab\tnew\nline\r"),
    ],
)
def test_bytes_as_a_json_era_caller_reads_them(stored: bytes, read: Any) -> None:
    assert _values.bytes_to_json(stored) == read


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], 1), (["1"], 1), (["2"], 2), ([" 2 "], 2)],
)
def test_served_protocols(values: list[str], expected: int) -> None:
    assert _generations.protocol(values) == expected


@pytest.mark.parametrize(
    ("values", "status"),
    [
        (["3"], 501),
        (["17"], 501),
        (["1,2"], 400),
        (["1, 2"], 400),
        (["1", "2"], 400),
        (["x"], 400),
        (["0"], 400),
        (["-1"], 400),
        ([""], 400),
    ],
)
def test_refused_protocols(values: list[str], status: int) -> None:
    with pytest.raises(_errors.ApiError) as caught:
        _generations.protocol(values)
    assert caught.value.status == status
    if status == 501:
        assert "upgrade the server" in caught.value.message and "1,2" in caught.value.message


def test_served_header_is_what_the_0_15_client_accepts() -> None:
    # entroq 0.15.0 json._served: a comma-separated integer list that must contain 2.
    served = [int(p) for p in _generations.SERVED_HEADER_VALUE.split(",") if p.strip()]
    assert served == [1, 2]


SEED_MODIFY = {
    "claimantId": "2b0c6a0e-5d1f-4c4e-9a57-1f0d4c7e8a11",
    "inserts": [{"queue": "jobs", "atMs": "0", "value": "cmVzdWx0", "id": None, "attempt": 0, "err": ""}],
    "changes": [],
    "deletes": [],
    "depends": [],
}
A_MODIFY = {
    "claimantId": "5ad297cf8e4dd94b",
    "inserts": [{"queue": "/q", "atMs": 1795828205727, "value": "later"}],
    "changes": [],
    "deletes": [],
    "depends": [],
    "docInserts": [],
    "docChanges": [],
    "docDeletes": [],
    "docDepends": [],
}
C_LEASE = {
    "claimantId": "dd86d37abd6dd261",
    "inserts": [],
    "changes": [
        {
            "oldId": {"id": "f436", "version": 1, "queue": "/q"},
            "newData": {"byMs": 90000},
            "mode": "CHANGE_LEASE",
        }
    ],
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SEED_MODIFY, "base64"),
        (A_MODIFY, "json"),  # the document-store lists, present even when empty
        ({"inserts": [{"queue": "q", "value": {"a": 1}}]}, "json"),
        ({"inserts": [{"queue": "q", "value": 12}]}, "json"),
        ({"changes": [{"oldId": {"id": "x"}, "newData": {"queue": "q", "value": None}}]}, "json"),
        ({"changes": [{"old_id": {"id": "x"}, "new_data": {"queue": "q", "value": [1]}}]}, "json"),
        ({"doc_inserts": []}, "json"),
        (C_LEASE, None),  # no value at all: only the protocol header tells
        ({"inserts": [{"queue": "q", "value": "aGk="}]}, None),  # a string: either
        ({"inserts": [{"queue": "q", "id": None, "atMs": 0}]}, None),  # a number atMs: not the seed's
        ({}, None),
        (None, None),
    ],
)
def test_modify_body_shapes(body: dict[str, Any] | None, expected: str | None) -> None:
    assert _generations.body_encoding(body) == expected


def identify(generations: Generations, **kwargs: Any) -> _generations.Caller:
    """Identifies a request, then learns from it as the service does once the call succeeded."""
    base: dict[str, Any] = {"protocol_values": [], "encoding_values": [], "user_agent": ""}
    caller = generations.identify(**{**base, **kwargs})
    generations.learn(caller)
    return caller


def test_decision_order() -> None:
    g = Generations(default="base64")
    httpx_ua = "python-httpx/0.28.1"
    # 1. our header beats everything, even protocol 2 and the seed route
    caller = identify(g, protocol_values=["2"], encoding_values=["base64"], route="seed_tasks")
    assert (caller.protocol, caller.values, caller.evidence) == (2, "base64", "header")
    # 2. protocol 2 beats the route and the body
    assert identify(g, protocol_values=["2"], route="seed_tasks", body=SEED_MODIFY).values == "json"
    # 3. the route beats the body and the user agent
    assert identify(g, route="seed_tasks", user_agent=httpx_ua).values == "base64"
    assert identify(g, route="tasks", body=SEED_MODIFY).values == "json"
    # 4. the body beats the user agent
    assert identify(g, body=SEED_MODIFY, user_agent=httpx_ua).evidence == "body"
    # 6. then the user agent, 7. then the default
    assert identify(g, user_agent=httpx_ua).evidence == "user-agent"
    assert identify(g, user_agent="python-requests/2.32.3").values == "base64"
    assert identify(Generations(default="json"), user_agent="python-requests/2.32.3").values == "json"


def test_bad_value_encoding_header() -> None:
    g = Generations()
    for values in (["hex"], ["json", "base64"], ["json,base64"]):
        with pytest.raises(_errors.ApiError) as caught:
            identify(g, encoding_values=values)
        assert caught.value.status == 400
    assert identify(g, encoding_values=[" JSON "]).values == "json"


def test_claimants_are_remembered_from_unambiguous_requests_only() -> None:
    g = Generations(default="json")
    seed_claim = {"claimantId": SEED_MODIFY["claimantId"], "queues": ["jobs"], "durationMs": "30000"}
    ua = "python-requests/2.32.3"  # the seed's, and the interim sync client's (JSON): ambiguous
    assert identify(g, body=seed_claim, user_agent=ua).values == "json"  # nothing known yet
    identify(g, body=SEED_MODIFY, user_agent=ua)  # its modify shows the seed
    caller = identify(g, body=seed_claim, user_agent=ua)
    assert (caller.values, caller.evidence) == ("base64", "claimant")
    # A guess (user agent, default) teaches nothing.
    identify(g, body={"claimantId": "w2", "queues": ["q"]}, user_agent="python-httpx/0.28.1")
    assert g.remembered("w2") is None
    # Listings name their claimant in the query.
    identify(g, route="seed_tasks", claimant="w3")
    assert g.remembered("w3") == "base64"


def test_claimants_are_remembered_per_namespace() -> None:
    g = Generations(default="base64")
    identify(g, route="tasks", claimant="w", namespace="one")
    assert identify(g, body={"claimantId": "w"}, namespace="one").values == "json"
    assert identify(g, body={"claimantId": "w"}, namespace="two").evidence == "default"
    assert (g.remembered("w", "one"), g.remembered("w", "two")) == ("json", None)


def test_only_served_requests_teach_and_only_their_own_credentials() -> None:
    g = Generations(default="base64")
    # Identified but never served (refused by authorization, say): nothing learned.
    refused = g.identify(
        protocol_values=[], encoding_values=["json"], user_agent="", claimant="bob#w2", credentials="Bearer x"
    )
    assert refused.values == "json" and g.remembered("bob#w2", credentials="Bearer x") is None
    # Served: learned under the caller's credentials only.
    identify(g, encoding_values=["json"], claimant="bob#w2", credentials="Bearer bob-token")
    assert g.remembered("bob#w2", credentials="Bearer bob-token") == "json"
    assert g.remembered("bob#w2", credentials="Bearer alice-token") is None
    assert g.remembered("bob#w2") is None
    assert identify(g, body={"claimantId": "bob#w2"}, credentials="Bearer bob-token").values == "json"
    other = identify(g, body={"claimantId": "bob#w2"}, credentials="Bearer alice-token")
    assert (other.values, other.evidence) == ("base64", "default")
    # The memory keeps a fingerprint, never the credentials themselves.
    assert all("bob-token" not in part for key in g._claimants for part in key)


def test_claimant_memory_is_bounded_lru() -> None:
    g = Generations(remember=3)
    for name in ["a", "b", "c"]:
        identify(g, route="tasks", claimant=name)
    identify(g, body={"claimantId": "a"})  # a is seen again: b is now the oldest
    identify(g, route="tasks", claimant="d")
    assert [g.remembered(n) for n in "abcd"] == ["json", None, "json", "json"]
    assert len(g._claimants) == 3
    off = Generations(remember=0)
    identify(off, route="tasks", claimant="a")
    assert off.remembered("a") is None


def test_json_values_cross_the_wire_as_stored_bytes() -> None:
    body = {
        "inserts": [{"queue": "q", "value": {"ü": [1, None]}}, {"queue": "q"}, {"queue": "q", "value": None}],
        "changes": [{"oldId": {"id": "x", "version": 1}, "new_data": {"queue": "q", "value": "text"}}],
    }
    request = _wire.parse_dict(body, "ModifyRequest", "json")
    assert [i.value for i in request.inserts] == ['{"ü":[1,null]}'.encode(), b"", b""]
    assert request.changes[0].new_data.value == b'"text"'
    assert body["inserts"][0]["value"] == {"ü": [1, None]}  # the caller's dict is not changed
    with pytest.raises(_errors.ApiError) as caught:
        _wire.parse_dict({"inserts": [{"queue": "q", "value": [math.inf]}]}, "ModifyRequest", "json")
    assert caught.value.status == 400


def test_responses_carry_values_in_the_callers_encoding() -> None:
    from entroq_redis_server.core import schema as _schema

    tasks = [_schema.Task(queue="q", id="a", value=b'{"n":1}'), _schema.Task(queue="q", id="b")]
    response = _schema.ModifyResponse(inserted=tasks, changed=[_schema.Task(id="c", value=b"\xff")])
    as_json = json.loads(_wire.to_json(response, "json"))
    assert [t.get("value") for t in as_json["inserted"]] == [{"n": 1}, None]
    assert "value" not in as_json["inserted"][1] and as_json["changed"][0]["value"] == "/w=="
    as_base64 = json.loads(_wire.to_json(response, "base64"))
    assert as_base64["inserted"][0]["value"] == base64.b64encode(b'{"n":1}').decode()
    assert _wire.to_json(_schema.ClaimResponse(), "json") == b"{}"


def test_document_contents_cross_the_wire_as_stored_bytes() -> None:
    body = {
        **A_MODIFY,
        "docInserts": [{"namespace": "n", "key": "k", "content": {"ü": 1}}],
        "doc_changes": [{"oldId": {"namespace": "n", "id": "d"}, "newData": {"content": [None]}}],
    }
    request = _wire.parse_dict(body, "ModifyRequest", "json")
    assert request.inserts[0].queue == "/q"
    assert request.doc_inserts[0].content == '{"ü":1}'.encode()
    assert request.doc_changes[0].new_data.content == b"[null]"
    assert body["docInserts"][0]["content"] == {"ü": 1}  # the caller's dict is not changed
    with pytest.raises(_errors.ApiError) as caught:
        _wire.parse_dict({"docInserts": [{"namespace": "n", "content": "Zm9v!"}]}, "ModifyRequest", "base64")
    assert caught.value.status == 400 and "content" in caught.value.message
