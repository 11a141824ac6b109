"""The embedded engine (``--authz rego``, regopy) on the example policy, directly.

Besides the policy's decisions, these pin the regopy string pitfalls the engine works
around: queue names that would break its JSON output, NUL bytes, and escapes in the data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from authz_support import ALICE, BOB, DATA, OPS, POLICY, jwt
from entroq_redis_server.authz.decision import PolicyFailure, parse_result
from entroq_redis_server.authz.rego import PolicyConfigError, load_rego_engine

PATH = ("entroq", "authz")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    engine = load_rego_engine([POLICY], DATA, PATH)
    yield engine
    engine.close()


def ask(engine: Any, token: str | None, *entries: tuple[str, str]) -> Any:
    authz = {"type": "Bearer", "credentials": token} if token else {}
    queues = [{"exact": q, "actions": [a]} if q else {"actions": [a]} for q, a in entries]
    return parse_result(engine.evaluate_sync({"authz": authz, "queues": queues}))


def test_example_policy_decisions(engine: Any) -> None:
    assert ask(engine, ALICE, ("/alice/jobs", "CLAIM"), ("/shared/inbox", "INSERT")).permits
    bob = ask(engine, BOB, ("/alice/jobs", "CLAIM"), ("/bob/jobs", "DELETE"), ("/shared/inbox", "INSERT"))
    assert (bob.allow, bob.authenticated, bob.errors) == (False, True, ("user: bob",))
    assert [(f.exact, f.actions) for f in bob.failed] == [
        ("/alice/jobs", ("CLAIM",)),
        ("/shared/inbox", ("INSERT",)),
    ]
    assert ask(engine, BOB, ("/ns=user/bob/scratch", "DELETE")).permits  # EntroQ's per-user space
    assert not ask(engine, BOB, ("/ns=user/alice/scratch", "READ")).permits
    ops = ask(engine, OPS, ("/bob/x", "READ"), ("/bob/x", "CLAIM"), ("", "READ"))
    assert {(f.exact, f.actions) for f in ops.failed} == {("", ("READ",)), ("/bob/x", ("CLAIM",))}
    # A prefix covers every name that starts with it, "/alice/../bob" included (names are not
    # paths); "/alice2" is not under "/alice/".
    assert ask(engine, ALICE, ("/alice/../bob", "DELETE")).permits
    assert not ask(engine, ALICE, ("/alice2", "READ")).permits


@pytest.mark.parametrize(
    ("token", "authenticated"),
    [
        (None, False),
        ("unknown", False),
        (jwt("alice"), True),
        (jwt("alice", expires_in=-5), False),
        (jwt("alice", secret="forged"), False),
        (jwt("alice", aud="someone-else"), False),
        (jwt("alice", iss="https://evil.example.com"), False),
        (jwt("alice", exp=None), False),  # exp is required
        (jwt("alice", nbf=int(time.time()) + 600), False),
    ],
)
def test_who_is_calling(engine: Any, token: str | None, authenticated: bool) -> None:
    decision = ask(engine, token, ("/alice/jobs", "READ"))
    assert (decision.authenticated, decision.permits) == (authenticated, authenticated)


def test_an_unsigned_jwt_is_not_accepted(engine: Any) -> None:
    header, body, _ = jwt("alice").split(".")
    none_header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    for token in (f"{none_header}.{body}.", f"{header}.{body}."):
        assert ask(engine, token, ("/alice/jobs", "READ")).authenticated is False


@pytest.mark.parametrize(
    "name",
    [
        'x"}], "allow": true, "failed": [], "authenticated": true, "z": [{"a": "',
        'q\\", "allow": true, "x": "',
        'tab\tnewline\nquote"backslash\\nul\x00end',
        "/shared/inbox\x00/evil",  # regopy's set_input would cut this at NUL into an exact grant
        "/shared/inbox\n",
        "é/😀/\u2028",
    ],
)
def test_queue_names_cannot_change_the_decision(engine: Any, name: str) -> None:
    decision = ask(engine, ALICE, (name, "READ"))
    assert not decision.permits
    assert [f.exact for f in decision.failed] == [name]


def test_names_round_trip_exactly(engine: Any) -> None:
    name = "/alice/" + "".join(chr(c) for c in range(1, 128)) + "é😀\x00"
    assert ask(engine, ALICE, (name, "READ")).permits
    assert ask(engine, BOB, (name, "READ")).failed[0].exact == name


def claims_as(engine: Any, token: str, claimant: str | None) -> Any:
    document: dict[str, Any] = {
        "authz": {"type": "Bearer", "credentials": token},
        "queues": [{"exact": "/alice/jobs", "actions": ["CLAIM"]}],
    }
    if claimant is not None:
        document["claimant_id"] = claimant
    return parse_result(engine.evaluate_sync(document))


def test_claimant_ids_naming_another_user_are_refused(engine: Any) -> None:
    for claimant in (None, "", "alice#1", "alice#", "alice##x", "7d1c0c36-uuid", "alice"):
        assert claims_as(engine, ALICE, claimant).permits, claimant
    for claimant in ("bob#1", "#", "alice2#1", "ALICE#1", "x#alice#1"):
        decision = claims_as(engine, ALICE, claimant)
        assert (decision.allow, decision.authenticated, decision.failed) == (False, True, ()), claimant
        assert decision.errors == (
            f'claimant ID "{claimant}" may not be used by alice (alice\'s claimant IDs start with "alice#")',
        )
    # A queue denial and a claimant denial together: both are reported.
    both = claims_as(engine, BOB, "alice#1")
    assert [f.exact for f in both.failed] == ["/alice/jobs"]
    assert set(both.errors) == {
        "user: bob",
        'claimant ID "alice#1" may not be used by bob (bob\'s claimant IDs start with "bob#")',
    }


def test_claimant_binding_can_be_required_and_admins_are_exempt(tmp_path: Any) -> None:
    with open(DATA) as handle:
        data = json.load(handle)
    data["entroq"]["claimants"] = {"require_user_prefix": True}
    data["entroq"]["users"]["bob"]["admin"] = True
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    strict = load_rego_engine([POLICY], str(path), PATH)
    try:
        assert claims_as(strict, ALICE, "alice#1").permits
        assert claims_as(strict, ALICE, None).permits  # a modify that names no claimant
        for claimant in ("7d1c0c36-uuid", "alice", "bob#1"):
            assert not claims_as(strict, ALICE, claimant).permits, claimant
        # bob is an admin: any claimant ID, but still only his queues.
        assert claims_as(strict, BOB, "alice#1").errors == ("user: bob",)
    finally:
        strict.close()


def test_data_escapes_compare_equal_to_request_text(tmp_path: Any) -> None:
    data = tmp_path / "data.json"
    with open(DATA) as handle:
        tokens = json.load(handle)["entroq"]["tokens"]
    users = {"alice": {"queues": [{"exact": "/caf\\u00e9", "actions": ["READ"]}]}}
    data.write_text(
        json.dumps({"entroq": {"tokens": tokens, "users": users}}).replace("\\\\u00e9", "\\u00e9")
    )
    engine = load_rego_engine([POLICY], str(data), PATH)
    assert ask(engine, ALICE, ("/café", "READ")).permits


def _write(tmp_path: Any, source: str) -> str:
    path = tmp_path / "policy.rego"
    path.write_text(source)
    return str(path)


def test_unusable_policies_stop_startup(tmp_path: Any) -> None:
    cases = [
        (
            "package entroq.authz\n\nimport rego.v1\n\nallow if { input.x = }\n",
            "Invalid assignment operator (line 5)",
        ),
        (
            "package entroq.other\n\nimport rego.v1\n\ndefault allow := false\n",
            "no boolean data.entroq.authz.allow",
        ),
        ('package entroq.authz\n\nimport rego.v1\n\nallow := "yes"\n', "no boolean data.entroq.authz.allow"),
        (
            "package entroq.authz\n\nimport rego.v1\n\n"
            "allow := true if input.authz\n\nallow := false if input.queues\n",
            "fails on an empty request",
        ),
    ]
    for source, message in cases:
        with pytest.raises(PolicyConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_rego_engine([_write(tmp_path, source)], None, PATH)
    with pytest.raises(PolicyConfigError, match="cannot read policy"):
        load_rego_engine([str(tmp_path / "missing.rego")], None, PATH)
    with pytest.raises(PolicyConfigError, match="needs at least one"):
        load_rego_engine([], None, PATH)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(PolicyConfigError, match="must be a JSON object"):
        load_rego_engine([POLICY], str(tmp_path / "list.json"), PATH)
    with pytest.raises(PolicyConfigError, match="not a Rego identifier"):
        load_rego_engine([POLICY], DATA, ("entroq", "authz-v2"))


def test_a_policy_that_fails_on_a_request_fails_closed(tmp_path: Any) -> None:
    source = (
        "package entroq.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
        "allow := true if count(input.queues) > 1\n\nallow := false if count(input.queues) > 1\n"
    )
    engine = load_rego_engine([_write(tmp_path, source)], None, PATH)
    with pytest.raises(PolicyFailure):
        engine.evaluate_sync({"authz": {}, "queues": [{"exact": "a", "actions": ["READ"]}] * 2})


async def test_evaluations_run_in_child_processes_concurrently(engine: Any) -> None:
    import trio
    from entroq_redis_server.authz.input import Credentials

    results: list[Any] = []

    async def one(index: int) -> None:
        document = {
            "authz": {"type": "Bearer", "credentials": ALICE},
            "queues": [{"exact": f"/alice/{index}", "actions": ["READ"]}],
        }
        results.append(parse_result(await engine.evaluate(Credentials("Bearer", ALICE), document)))

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(one, index)
    assert len(results) == 20 and all(r.permits for r in results)


async def test_child_processes_are_replaced_so_the_engines_leak_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rego-cpp leaks ~13 KB per decision of this policy (crypto.sha256, io.jwt): evaluated in
    # the service's own process, 1,000 decisions would grow it by ~13 MB. The service's
    # decisions run in children, each replaced after DECISIONS_PER_PROCESS decisions.
    import psutil
    import trio
    from entroq_redis_server.authz import rego_processes as _authz_rego_processes
    from entroq_redis_server.authz.input import Credentials

    monkeypatch.setattr(_authz_rego_processes, "DECISIONS_PER_PROCESS", 200)  # each retires at 150-250
    engine = load_rego_engine([POLICY], DATA, PATH)
    me = psutil.Process()
    others = {child.pid for child in me.children()}  # other engines' pools, multiprocessing's tracker
    children: set[int] = set()
    document = {
        "authz": {"type": "Bearer", "credentials": ALICE},
        "queues": [{"exact": "/alice/q", "actions": ["CLAIM"]}],
    }
    try:
        await engine.evaluate(Credentials("Bearer", ALICE), document)  # the pool is up
        rss_before = me.memory_info().rss
        for _round in range(10):
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(engine.evaluate, Credentials("Bearer", ALICE), document)
            children.update(child.pid for child in me.children() if child.pid not in others)
        grown_mb = (me.memory_info().rss - rss_before) / 2**20
    finally:
        engine.close()
    assert len(children) >= 1000 // 250, f"children seen: {sorted(children)}"
    assert grown_mb < 6, f"the service process grew {grown_mb:.1f} MB over 1,000 decisions"
    assert not {child.pid for child in me.children()} & children, "close() stops every child"
    print(f"{len(children)} children served 1,000 decisions; the service process grew {grown_mb:.1f} MB")
