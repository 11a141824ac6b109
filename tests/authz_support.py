"""Shared by the authorization tests: the example policy, tokens for it, JWTs, raw HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICY = str(ROOT / "deploy" / "authz" / "policy.rego")
DATA = str(ROOT / "deploy" / "authz" / "data.json")
# The example data's credentials are published (here and in docs/operations/), so serve refuses them
# unless told this is a demo.
REGO_FLAGS = ("--authz", "rego", "--policy", POLICY, "--policy-data", DATA, "--allow-example-credentials")

# The example data's users (data.json keeps only the SHA-256 of each token).
ALICE, BOB, OPS = "alice-token", "bob-token", "ops-token"
JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE = "example-only-replace-me", "https://auth.example.com", "entroq"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(subject: str, *, expires_in: float = 300, secret: str = JWT_SECRET, **claims: Any) -> str:
    """An HS256 JWT as an identity provider would issue it for the example policy."""
    body = {
        "sub": subject,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "exp": int(time.time() + expires_in),
        **claims,
    }
    return signed_jwt(json.dumps(body), secret=secret)


def signed_jwt(payload_text: str, *, secret: str = JWT_SECRET) -> str:
    """An HS256 JWT whose payload is exactly ``payload_text`` (e.g. a number written ``1.7E9``,
    which ``json.dumps`` would never write), correctly signed."""
    header = json.dumps({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{_b64(header.encode())}.{_b64(payload_text.encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


# Test-only rules, a second module of the example policy's package: a queue named
# "/slow/<text>" costs about (10 * its length)^2 steps (a name of 100 characters: about a
# second), and one named "/big/<text>" builds an array of 10,000 * its length numbers, which
# rego-cpp keeps (a name of 25 characters: about 110 MB); both print a line first, so a test
# can see the decision started.
SLOW_POLICY = """package entroq.authz

import rego.v1

slow if {
	some want in input.queues
	startswith(want.exact, "/slow/")
	n := count(want.exact) * 10
	print("evaluating the slow request", want.exact)
	count([1 | some i in numbers.range(1, n); some j in numbers.range(1, n); i == j]) > 0
}

big if {
	some want in input.queues
	startswith(want.exact, "/big/")
	print("evaluating the big request", want.exact)
	count(numbers.range(1, count(want.exact) * 10000)) > 0
}

allow if slow

allow if big
"""


def printing_policy() -> str:
    """The example policy with print() calls in rules every decision evaluates (rego-cpp
    writes what they print to the process's stdout)."""
    with open(POLICY) as handle:
        source = handle.read()
    edits = {
        "authenticated if user\n": (
            'authenticated if {\n\tprint("deciding on", count(input.queues), "queue entries")\n\tuser\n}\n'
        ),
        "\tsome want in input.queues\n": '\tsome want in input.queues\n\tprint("checking", want)\n',
    }
    for old, new in edits.items():
        assert source.count(old) == 1, f"the example policy changed: {old!r}"
        source = source.replace(old, new)
    return source


def client(url: str, namespace: str, token: str | None = None) -> httpx.AsyncClient:
    """Raw HTTP in a namespace, as a seed-era client (base64 values), with a bearer token."""
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class OpaStandInHandler(http.server.BaseHTTPRequestHandler):
    """A handler of an OPA stand-in (a ThreadingHTTPServer the test writes): JSON answers, no log."""

    def send_json(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


Server = TypeVar("Server", bound=http.server.ThreadingHTTPServer)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Runs ``server`` in a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
