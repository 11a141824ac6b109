"""Battery row f: property-based fuzzing of every route.

The row is docs/reference/reliability-battery.md 3.

Two fuzzers against a real service (Hypercorn process) on a private store, so that the whole
keyspace can be compared after every request:

1. schemathesis, driven by the service's own OpenAPI document
   (server/entroq_redis_server/openapi.json), through
   all its phases: the document's examples, coverage (boundary and invalid values of every
   parameter), random fuzzing, and stateful sequences that follow the document's links (an
   insert's ID into a claim, a claim's task into a modify). Its checks (status codes, content
   types, response schemas, response headers, allowed methods, unsupported methods, missing
   headers, positive data accepted) plus ours (tests/battery/st_hooks.py: no unplanned 5xx, no
   write by a refused request or a GET, no key outside the namespace or its slot, NDJSON lines
   valid, no stack traces).
2. Hypothesis strategies of our own for what a schema-driven fuzzer does not try: JSON bodies
   of any shape and nesting sent to every POST route, raw byte bodies, query strings of any
   bytes, headers with odd values.

CI runs a fixed, small number of examples with deterministic generation (same requests every
run, so CI cannot flake); ``--full`` runs ten times more. The run happens once, on its own
store: it is skipped in CI's second pass against an external Redis, where it would repeat
itself.

Deliberately not checked: schemathesis's ``negative_data_rejection``, because the service is
lenient by design (proto3 JSON as EntroQ's server reads it: unknown fields ignored, null =
default, numbers or strings for integers), so a body the document calls invalid is often
served; and ``ignored_auth``, because this service runs without authorization (the
authorization matrix is tests/test_authz_*.py).
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from battery.hostile import outside_namespace, store_digest, store_state
from battery.stores import PrivateValkey, private_valkey
from conftest import ServiceProcess, start_service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("ENTROQ_TEST_REDIS_URL")),
    reason="runs once, on a private store of its own (the same run as without ENTROQ_TEST_REDIS_URL)",
)

NAMESPACE = "fuzz"
TESTS = pathlib.Path(__file__).resolve().parent


def full_size(config: pytest.Config) -> bool:
    return bool(config.getoption("--full"))


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[tuple[PrivateValkey, ServiceProcess]]:
    # One namespace only (no --test-any-namespace): a fuzzed EntroQ-Namespace header must not
    # be able to create keys anywhere else. A claim-wait cap keeps blocking claims the fuzzer
    # sends without a deadline from holding the run.
    with private_valkey() as store:
        service = start_service(store.url, "--namespace", NAMESPACE, "--claim-wait-cap", "1")
        try:
            yield store, service
        finally:
            service.stop()


def assert_store_clean(store: PrivateValkey) -> dict[bytes, bytes | None]:
    client = store.client()
    try:
        state = store_state(client)
    finally:
        client.close()
    assert outside_namespace(list(state), NAMESPACE) == []
    return state


@pytest.mark.timeout(2400)  # bounded by its example count; --full runs ten times as many
def test_schemathesis_every_route(
    fuzz_target: tuple[PrivateValkey, ServiceProcess], tmp_path: pathlib.Path, pytestconfig: pytest.Config
) -> None:
    store, service = fuzz_target
    examples = 300 if full_size(pytestconfig) else 30
    log = tmp_path / "requests.jsonl"
    junit = tmp_path / "junit.xml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "SCHEMATHESIS_HOOKS": "battery.st_hooks",
        "ENTROQ_FUZZ_STORE": store.url,
        "ENTROQ_FUZZ_LOG": str(log),
    }
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", service.url + "/openapi.json",
        "--url", service.url,
        "--header", f"EntroQ-Namespace: {NAMESPACE}",
        "--checks", "all",
        "--exclude-checks", "not_a_server_error,negative_data_rejection,ignored_auth",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(examples),
        "--seed", "20261128",
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", "10",
        "--continue-on-failure",
        "--report", "junit", "--report-junit-path", str(junit),
        "--no-color",
    ]  # fmt: skip
    # In the test's own directory: schemathesis keeps a cache folder where it runs.
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    requests = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    statuses = collections.Counter(status for _, _, status in requests)
    failures = junit_failures(junit)
    print(
        f"schemathesis: {len(requests)} requests ({examples} examples per operation and phase), "
        f"statuses {dict(sorted(statuses.items()))}, {len(failures)} failing operations"
    )
    assert result.returncode == 0 and not failures, output[-12_000:]
    assert len(requests) > 100, output[-3000:]
    # 431: Hypercorn refuses a request line or headers past its limit (a long fuzzed query).
    assert set(statuses) - {200, 400, 404, 405, 406, 413, 415, 431, 501, 504} == set(), statuses
    assert_store_clean(store)
    assert "Traceback" not in service.log()


def junit_failures(path: pathlib.Path) -> list[str]:
    if not path.exists():
        return ["no junit report"]
    root = ElementTree.parse(path).getroot()
    return [
        f"{case.get('name')}: {(problem.get('message') or problem.text or '')[:500]}"
        for case in root.iter("testcase")
        for problem in list(case)
        if problem.tag in ("failure", "error")
    ]


# --- our own strategies: shapes and bytes a schema does not describe --------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "9223372036854775808", "1e400", "NaN", "\x00", "\ud7ff", "CHANGE_LEASE"]),
)


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function, not a lambda: Hypothesis checks by reading the source that the argument
    # is used, and that check misreads a lambda spread over several lines.
    return st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)


JSON_VALUES = st.recursive(JSON_LEAVES, _json_containers, max_leaves=30)
FIELD_NAMES = st.sampled_from(
    [
        "claimantId", "claimant_id", "queues", "durationMs", "duration_ms", "pollMs", "finish", "inserts",
        "changes", "deletes", "depends", "docInserts", "queue", "id", "version", "value", "atMs", "byMs",
        "attempt", "err", "oldId", "newData", "new_data", "mode", "taskId", "limit", "omitValues",
        "matchPrefix", "matchExact", "docChanges", "docDeletes", "docDepends", "namespace", "key",
        "secondaryKey", "content", "claimQuery", "claimant", "sets", "set", "omitMembers", "taskToMatch",
        "query", "ids", "keyStart", "keyEnd", "keyExact",
    ]
)  # fmt: skip


# Objects whose keys are the API's own field names at every level, so values reach the parser.
def _api_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(FIELD_NAMES, children, max_size=6)


API_SHAPED = st.recursive(JSON_LEAVES, _api_containers, max_leaves=40)
POST_ROUTES = [
    "/api/v0/claim",
    "/api/v0/claim/wait",
    "/api/v0/modify",
    "/api.EntroQ/TryClaim",
    "/api.EntroQ/Claim",
    "/api.EntroQ/Modify",
    "/api.EntroQ/Tasks",
    "/api.EntroQ/Queues",
    "/api.EntroQ/QueueStats",
    "/api.EntroQ/Time",
    "/api/v0/docs/claim",
    "/api.EntroQ/Docs",
    "/api.EntroQ/ClaimDocs",
    "/api.EntroQ/NamespaceStats",
]
GET_ROUTES = [
    "/api/v0/tasks",
    "/api/v0/queues",
    "/api/v0/queues/stats",
    "/api/v0/tasks/stream",
    "/api/v0/time",
    "/api/v0/docs",
    "/api/v0/namespaces/stats",
]
PLANNED_5XX = {501, 504}  # a later protocol than this server serves; a blocking claim's deadline


def own_examples(config: pytest.Config) -> int:
    return 1000 if full_size(config) else 100


@pytest.fixture(scope="module")
def fuzz_client(fuzz_target: tuple[PrivateValkey, ServiceProcess]) -> Iterator[httpx.Client]:
    _, service = fuzz_target
    headers = {"EntroQ-Namespace": NAMESPACE, "X-Server-Timeout": "0.05"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
        yield client


class Bracket:
    """Runs one request between two snapshots of the private store."""

    def __init__(self, store: PrivateValkey) -> None:
        self.client: redis.Redis = store.client()
        self.requests = 0
        self.statuses: collections.Counter[int] = collections.Counter()

    def send(self, call: Any, *, read_only: bool = False) -> httpx.Response:
        before = store_digest(self.client)
        response: httpx.Response = call()
        after = store_digest(self.client)
        self.requests += 1
        self.statuses[response.status_code] += 1
        assert response.status_code < 500 or response.status_code in PLANNED_5XX, response.text[:500]
        assert "Traceback" not in response.text
        if read_only or not 200 <= response.status_code < 300:
            assert after == before, (response.status_code, response.text[:300])
        return response


def run_own(pytestconfig: pytest.Config, strategy: st.SearchStrategy[Any], test: Any, seed_name: str) -> None:
    run = settings(
        max_examples=own_examples(pytestconfig),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )(given(strategy)(test))
    run()


def test_any_json_shape_on_every_post_route(
    fuzz_target: tuple[PrivateValkey, ServiceProcess], fuzz_client: httpx.Client, pytestconfig: pytest.Config
) -> None:
    bracket = Bracket(fuzz_target[0])
    bodies = st.tuples(st.sampled_from(POST_ROUTES), st.one_of(API_SHAPED, JSON_VALUES), st.booleans())

    def send(case: tuple[str, Any, bool]) -> None:
        route, body, json_values = case
        headers = {"EntroQ-Value-Encoding": "json"} if json_values else {}
        bracket.send(lambda: fuzz_client.post(route, json=body, headers=headers))

    run_own(pytestconfig, bodies, send, "json")
    print(f"own JSON shapes: {bracket.requests} requests, statuses {dict(sorted(bracket.statuses.items()))}")
    assert_store_clean(fuzz_target[0])


def test_any_bytes_as_body_query_and_header(
    fuzz_target: tuple[PrivateValkey, ServiceProcess], fuzz_client: httpx.Client, pytestconfig: pytest.Config
) -> None:
    bracket = Bracket(fuzz_target[0])
    raw_bodies = st.one_of(
        st.binary(max_size=200),
        st.builds(lambda d, b: b"[" * d + b + b"]" * d, st.integers(0, 5000), st.binary(max_size=20)),
        st.builds(lambda s: json.dumps(s).encode(), JSON_VALUES),
    )
    query_bytes = st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=40)), max_size=6)
    # What HTTP allows in a header value (printable ASCII, no whitespace at either end).
    header_values = st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
    ).filter(lambda value: value == value.strip())
    cases = st.one_of(
        st.tuples(st.just("body"), st.sampled_from(POST_ROUTES), raw_bodies),
        st.tuples(st.just("query"), st.sampled_from(GET_ROUTES), query_bytes),
        st.tuples(
            st.just("header"),
            st.sampled_from(POST_ROUTES[:3]),
            st.tuples(
                st.sampled_from(
                    [
                        "X-Server-Timeout",
                        "Connect-Timeout-Ms",
                        "entroq-protocol",
                        "EntroQ-Value-Encoding",
                        "Content-Type",
                        "Connect-Protocol-Version",
                    ]
                ),
                header_values,
            ),
        ),
    )

    def send(case: tuple[str, str, Any]) -> None:
        kind, route, data = case
        if kind == "body":
            bracket.send(
                lambda: fuzz_client.post(route, content=data, headers={"Content-Type": "application/json"})
            )
        elif kind == "query":
            from urllib.parse import quote_from_bytes

            query = "&".join(quote_from_bytes(k) + "=" + quote_from_bytes(v) for k, v in data)
            bracket.send(lambda: fuzz_client.get(route + "?" + query), read_only=True)
        else:
            name, value = data
            body = {"claimantId": "w", "queues": ["q"]}
            bracket.send(lambda: fuzz_client.post(route, json=body, headers={name: value}))

    run_own(pytestconfig, cases, send, "bytes")
    print(f"own bytes: {bracket.requests} requests, statuses {dict(sorted(bracket.statuses.items()))}")
    assert_store_clean(fuzz_target[0])
