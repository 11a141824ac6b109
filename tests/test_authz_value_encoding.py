"""A caller's requests never change how another caller's task values are encoded.

The service remembers, per claimant ID, which value encoding (base64 or JSON) a client
generation uses, because a claim body does not tell. Only requests that were authorized and
served teach that memory, and what they teach is kept under the caller's credentials as well
as the claimant ID: a refused request naming ``bob#w2``, or another user's request naming the
same claimant ID, leaves bob's encoding alone. Real service, ``--authz rego`` with the example
policy, real HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from authz_support import ALICE, BOB, REGO_FLAGS, b64, client
from conftest import ServiceProcess, start_service

import entroq_redis

VALUE_ENCODING = "EntroQ-Value-Encoding"


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    # base64 by default, so that a value read as JSON can only come from what bob's own
    # requests taught.
    flags = ("--test-any-namespace", "--value-encoding-default", "base64", *REGO_FLAGS)
    process = start_service(store_url, *flags)
    yield process
    assert process.stop() == 0


def _claim(claimant: str, queue: str) -> dict[str, Any]:
    return {"claimantId": claimant, "queues": [queue], "durationMs": "30000"}


async def test_refused_requests_do_not_change_a_claimants_encoding(
    service: ServiceProcess, namespace: str
) -> None:
    async with client(service.url, namespace, BOB) as bob:
        # bob's JSON-era worker says how it writes values once; the service remembers it.
        taught = await bob.post(
            "/api/v0/modify",
            json={"claimantId": "bob#w2", "inserts": [{"queue": "/bob/jobs", "value": {"n": 1}}]},
            headers={VALUE_ENCODING: "json"},
        )
        assert taught.status_code == 200, taught.text

        # Someone without valid credentials, then alice (whose policy forbids bob's claimant
        # IDs), each claim to be bob#w2 and declare base64.
        async with client(service.url, namespace, "nobody") as nobody:
            refused = await nobody.post(
                "/api/v0/claim", json=_claim("bob#w2", "/bob/jobs"), headers={VALUE_ENCODING: "base64"}
            )
        assert refused.status_code == 401, refused.text
        async with client(service.url, namespace, ALICE) as alice:
            denied = await alice.post(
                "/api/v0/claim", json=_claim("bob#w2", "/alice/jobs"), headers={VALUE_ENCODING: "base64"}
            )
        assert denied.status_code == 403, denied.text

        # bob's claim reveals nothing itself: the value comes back as bob's worker reads it.
        claimed = await bob.post("/api/v0/claim", json=_claim("bob#w2", "/bob/jobs"))
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["task"]["value"] == {"n": 1}


async def test_refused_requests_do_not_change_how_a_claimants_values_are_stored(
    service: ServiceProcess, namespace: str, store_url: str
) -> None:
    async with client(service.url, namespace, "nobody") as nobody:
        refused = await nobody.post(
            "/api/v0/modify",
            json={"claimantId": "bob#seed", "inserts": [{"queue": "/bob/jobs", "value": b64("x")}]},
            headers={VALUE_ENCODING: "json"},
        )
    assert refused.status_code == 401, refused.text
    async with client(service.url, namespace, BOB) as bob:
        # A seed-era insert (base64 text, nothing else revealing) by bob#seed.
        inserted = await bob.post(
            "/api/v0/modify",
            json={"claimantId": "bob#seed", "inserts": [{"queue": "/bob/jobs", "value": b64("raw bytes")}]},
        )
    assert inserted.status_code == 200, inserted.text
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        stored = await store.tasks("/bob/jobs")
    assert [t.value for t in stored] == [b"raw bytes"]


async def test_one_users_requests_do_not_teach_anothers_claimant(
    service: ServiceProcess, namespace: str, store_url: str
) -> None:
    # A claimant ID without a user prefix may be sent by anyone the policy lets claim: alice's
    # requests as "w7" teach the memory only for alice's credentials.
    async with client(service.url, namespace, ALICE) as alice:
        taught = await alice.post(
            "/api/v0/modify",
            json={"claimantId": "w7", "inserts": [{"queue": "/alice/jobs", "value": "text"}]},
            headers={VALUE_ENCODING: "json"},
        )
    assert taught.status_code == 200, taught.text
    async with client(service.url, namespace, BOB) as bob:
        inserted = await bob.post(
            "/api/v0/modify",
            json={"claimantId": "w7", "inserts": [{"queue": "/bob/jobs", "value": b64("bob's")}]},
        )
        assert inserted.status_code == 200, inserted.text
        claimed = await bob.post("/api/v0/claim", json=_claim("w7", "/bob/jobs"))
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["task"]["value"] == b64("bob's")
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        assert [t.value for t in await store.tasks("/bob/jobs")] == [b"bob's"]
        assert [json.loads(t.value) for t in await store.tasks("/alice/jobs")] == ["text"]
