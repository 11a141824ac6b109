"""Token and header hygiene of the service with ``--authz rego`` (the example policy), over
real HTTP: a malformed bearer token is 401 (not an engine outage), the ``Bearer`` scheme is
case-insensitive, two ``Authorization`` headers are 400, and every answer carries a request
ID (``X-Request-Id``: a well-formed incoming one is kept, anything else replaced)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import httpx
import pytest
from authz_support import ALICE, REGO_FLAGS, b64
from conftest import ServiceProcess, start_service

INSERT = {"inserts": [{"queue": "/alice/jobs", "value": b64("x")}]}


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


def _client(service: ServiceProcess, namespace: str) -> httpx.AsyncClient:
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    return httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30)


def _part(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "a.b.c",
        "..",
        f"{_part('{}')}.{_part('[1]')}.sig",  # a payload that is JSON but not an object
        f"{_part('not json')}.{_part('{}')}.sig",
        f"{_part('{}')}.{_part('{}')}.s!g",  # not base64url
    ],
)
async def test_a_malformed_jwt_is_401_not_an_outage(
    service: ServiceProcess, namespace: str, token: str
) -> None:
    async with _client(service, namespace) as http:
        answer = await http.post("/api/v0/modify", json=INSERT, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401, answer.text
    assert "malformed bearer token" in answer.json()["message"]
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="entroq"'
    assert "policy engine failed" not in service.log()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_case_insensitive(
    service: ServiceProcess, namespace: str, scheme: str
) -> None:
    async with _client(service, namespace) as http:
        answer = await http.post(
            "/api/v0/modify", json=INSERT, headers={"Authorization": f"{scheme} {ALICE}"}
        )
        assert answer.status_code == 200, answer.text
        listed = await http.get("/api/v0/queues", headers={"Authorization": f"{scheme} {ALICE}"})
    assert listed.status_code == 200
    assert [q["name"] for q in listed.json()["queues"]] == ["/alice/jobs"]


async def test_two_authorization_headers_are_400(service: ServiceProcess, namespace: str) -> None:
    twice = [("Authorization", f"Bearer {ALICE}"), ("Authorization", "Bearer nobody")]
    async with _client(service, namespace) as http:
        rest = await http.post("/api/v0/modify", json=INSERT, headers=twice)
        connect = await http.post("/api.EntroQ/Modify", json=INSERT, headers=twice)
        alone = await http.post("/api/v0/modify", json=INSERT, headers={"Authorization": f"Bearer {ALICE}"})
    assert rest.status_code == 400
    assert rest.json()["message"] == "more than one Authorization header: send exactly one"
    assert connect.status_code == 400 and connect.json()["code"] == "invalid_argument"
    assert alone.status_code == 200


async def test_every_answer_carries_a_request_id(service: ServiceProcess, namespace: str) -> None:
    generated = re.compile(r"[0-9a-f]{32}")
    alice = {"Authorization": f"Bearer {ALICE}"}
    async with _client(service, namespace) as http:
        answers = [
            await http.post("/api/v0/modify", json=INSERT, headers=alice),  # 200
            await http.post("/api/v0/modify", json=INSERT),  # 401
            await http.post("/api/v0/modify", json={"inserts": [{"queue": "/bob/x"}]}, headers=alice),  # 403
            await http.get("/api/v0/nowhere"),  # 404
            await http.post("/api/v0/modify", content=b"{", headers=alice),  # 400
            await http.get("/healthz"),
        ]
        assert [a.status_code for a in answers] == [200, 401, 403, 404, 400, 200]
        ids = [a.headers["X-Request-Id"] for a in answers]
        assert all(generated.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
        kept = await http.get("/api/v0/time", headers={"X-Request-Id": "proxy-7f3a.1:2"})
        assert kept.headers["X-Request-Id"] == "proxy-7f3a.1:2"
        for bad in ("-starts-with-dash", "x" * 65, "spa ce", "semi;colon"):
            replaced = await http.get("/api/v0/time", headers={"X-Request-Id": bad})
            assert generated.fullmatch(replaced.headers["X-Request-Id"]), bad
        twice = await http.get("/api/v0/time", headers=[("X-Request-Id", "a"), ("X-Request-Id", "b")])
        assert generated.fullmatch(twice.headers["X-Request-Id"])
