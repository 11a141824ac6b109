"""``serve --authz rego`` and the example policy's published credentials.

The example data (deploy/authz/data.json) holds a JWT secret and the hashes of tokens printed in
the docs and here: anyone can sign in with them. serve refuses to start with them, wherever
the data file lives and whatever it is called, unless --allow-example-credentials (a demo). Real
processes throughout: serve against the session's store, requests over HTTP.

Also pinned here, as it stands by design: task IDs are global in a namespace, so an insert can
collide with a task in a queue the caller may not read; the answer names the ID, not the queue.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import pathlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from authz_support import ALICE, BOB, DATA, JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, POLICY, b64, client, jwt
from conftest import ServiceProcess, start_service

import entroq_redis
from entroq_redis.cli._example_credentials import EXAMPLE_JWT_SECRET, EXAMPLE_TOKENS, example_credentials_in
from entroq_redis.testing import ServiceStartError

REFUSAL = "holds the example policy's published credentials"


def _example_data() -> dict[str, Any]:
    with open(DATA) as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _own_credentials(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of ``data`` with a JWT secret and a token of its own for alice; and that token."""
    mine = copy.deepcopy(data)
    token = "own-" + secrets.token_hex(16)
    mine["entroq"]["jwt"]["secret"] = "own-" + secrets.token_hex(32)
    mine["entroq"]["tokens"] = {hashlib.sha256(token.encode()).hexdigest(): "alice"}
    return mine, token


def _serve_until_listening_or_exit(store_url: str, *args: str, timeout: float = 60) -> tuple[int | None, str]:
    """Runs ``serve ARGS`` on the store: (None, log) once it listens (it is then stopped), or (exit code,
    log) if it exits first. Waits for one of the two, however long startup takes."""
    try:
        service = start_service(store_url, *args, timeout=timeout, wait_ready=False)
    except ServiceStartError as exc:
        if exc.returncode is None:
            raise AssertionError(f"serve neither listened nor exited within {timeout} s") from exc
        return exc.returncode, exc.log
    service.stop()
    return None, service.log()


def _rego(data_file: str | pathlib.Path) -> tuple[str, ...]:
    return ("--authz", "rego", "--policy", POLICY, "--policy-data", str(data_file))


def test_the_check_knows_every_credential_of_the_example_data() -> None:
    """The check's list and deploy/authz/data.json stay in step: each of its tokens and its
    secret is found, and the example tokens the tests use are the published ones."""
    found = example_credentials_in(_example_data())
    assert "the example JWT secret at entroq.jwt.secret" in found
    for token in EXAMPLE_TOKENS:
        assert f"the hash of example token {token!r} at entroq.tokens" in found
    assert len(found) == 1 + len(_example_data()["entroq"]["tokens"])
    assert (EXAMPLE_JWT_SECRET, set(EXAMPLE_TOKENS)) == (JWT_SECRET, {ALICE, BOB, "ops-token"})


@pytest.mark.parametrize("where", ["the example file", "a copy under another name"])
def test_serve_refuses_the_example_data(store_url: str, where: str, tmp_path: pathlib.Path) -> None:
    data_file: str | pathlib.Path = DATA
    if where != "the example file":
        data_file = tmp_path / "production-authz.json"
        data_file.write_text(json.dumps(_example_data()))
    code, stderr = _serve_until_listening_or_exit(store_url, *_rego(data_file))
    assert code == 2, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"entroq-redis serve: --policy-data {data_file} {REFUSAL} (")
    assert "the example JWT secret at entroq.jwt.secret" in line
    assert "--allow-example-credentials" in line


@pytest.mark.parametrize("kept", ["the secret", "the tokens", "one token as a value"])
def test_serve_refuses_data_that_keeps_any_example_credential(
    store_url: str, kept: str, tmp_path: pathlib.Path
) -> None:
    data, _token = _own_credentials(_example_data())
    if kept == "the secret":
        data["entroq"]["jwt"]["secret"] = EXAMPLE_JWT_SECRET
    elif kept == "the tokens":
        data["entroq"]["tokens"].update(_example_data()["entroq"]["tokens"])
    else:
        data["entroq"]["legacy"] = {"alice": ["bob-token"]}
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    code, stderr = _serve_until_listening_or_exit(store_url, *_rego(data_file))
    assert code == 2 and REFUSAL in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_serve_starts_with_credentials_of_its_own(store_url: str, tmp_path: pathlib.Path) -> None:
    data, _token = _own_credentials(_example_data())
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    code, log = _serve_until_listening_or_exit(store_url, *_rego(data_file))
    assert code is None, log
    assert "example" not in log


def _rs256(subject: str, key_file: pathlib.Path) -> str:
    """An RS256 JWT for the example policy's issuer and audience, signed with openssl."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = {"sub": subject, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 300}
    signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
    signed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key_file)],
        input=signing_input.encode(),
        capture_output=True,
        check=True,
    )
    return f"{signing_input}.{_b64url(signed.stdout)}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def identity_provider(tmp_path: pathlib.Path) -> tuple[str, str]:
    """An identity provider's certificate (PEM) and an RS256 JWT for alice it signed."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a key and a certificate")
    key, cert = tmp_path / "idp-key.pem", tmp_path / "idp-cert.pem"
    certificate = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=idp"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(["openssl", *certificate, *files], capture_output=True, check=True)
    return cert.read_text(), _rs256("alice", key)


async def test_real_credentials_work_and_the_example_ones_do_not(
    store_url: str, namespace: str, tmp_path: pathlib.Path, identity_provider: tuple[str, str]
) -> None:
    """Credentials set as deploy/authz/README.md says: a token of one's own (its hash in the
    data) and an identity provider's certificate for RS256 JWTs instead of the HS256 secret."""
    cert, signed = identity_provider
    data, token = _own_credentials(_example_data())
    data["entroq"]["jwt"] = {"cert": cert, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE}
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    forged = signed[:-8] + ("A" * 8 if not signed.endswith("A" * 8) else "B" * 8)
    service = start_service(store_url, "--namespace", namespace, *_rego(data_file))
    try:
        for name, credential, status in (
            ("own token", token, 200),
            ("RS256 JWT", signed, 200),
            ("forged RS256 JWT", forged, 401),
            ("example token", ALICE, 401),
            ("example HS256 JWT", jwt("alice"), 401),
        ):
            async with client(service.url, namespace, credential) as caller:
                response = await caller.get("/api/v0/queues/%2Falice%2Fq/tasks")
            assert response.status_code == status, (name, response.text)
    finally:
        assert service.stop() == 0


@pytest.fixture(scope="module")
def demo(store_url: str) -> Iterator[ServiceProcess]:
    """The example policy and data, as a demo: --allow-example-credentials."""
    service = start_service(store_url, "--test-any-namespace", *_rego(DATA), "--allow-example-credentials")
    yield service
    assert service.stop() == 0


async def test_the_flag_starts_it_with_a_warning(demo: ServiceProcess, namespace: str) -> None:
    async with client(demo.url, namespace, ALICE) as alice:
        response = await alice.get("/api/v0/queues/%2Falice%2Fq/tasks")
    assert response.status_code == 200, response.text
    warnings = [line for line in demo.log().splitlines() if "WARNING" in line and REFUSAL in line]
    assert len(warnings) == 1 and "for a local demo only" in warnings[0], demo.log()


async def test_task_ids_are_global_in_a_namespace(
    store_url: str, demo: ServiceProcess, namespace: str
) -> None:
    """By design: an insert whose ID exists in a queue the caller may not read fails as a
    collision (404) naming the ID, so IDs can be probed; the queue is not named. An insert
    without an ID gets a random UUID from the server and cannot collide."""
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        await store.modify([entroq_redis.TaskData(queue="/bob/private", value=b"x", id="invoice-42")])
    async with client(demo.url, namespace, ALICE) as alice:
        probe = await alice.post(
            "/api/v0/modify", json={"inserts": [{"queue": "/alice/q", "id": "invoice-42", "value": b64("y")}]}
        )
        generated = await alice.post(
            "/api/v0/modify", json={"inserts": [{"queue": "/alice/q", "value": b64("y")}]}
        )
        prefixed = await alice.post(
            "/api/v0/modify",
            json={"inserts": [{"queue": "/alice/q", "id": "alice/invoice-42", "value": b64("y")}]},
        )
    assert probe.status_code == 404, probe.text
    assert probe.json()["message"].startswith("modification dependency error")
    assert "task invoice-42 already exists" in probe.json()["message"]
    assert "/bob/private" not in probe.text
    assert generated.status_code == 200 and len(generated.json()["inserted"][0]["id"]) == 36
    assert prefixed.status_code == 200, prefixed.text
