"""Authorization pieces without I/O: credentials, EntroQ's input entries per request, reading
a policy's answer (fail closed), 403 details, listing visibility, and the move plan."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from authz_support import ALICE, DATA, POLICY, jwt
from entroq_redis_server.authz.decision import (
    Decision,
    PolicyFailure,
    denied,
    parse_result,
    read_specs,
)
from entroq_redis_server.authz.input import (
    Credentials,
    CredentialsError,
    QueueEntry,
    claim_entries,
    input_document,
    read_credentials,
    read_entries,
)
from entroq_redis_server.authz.listing import (
    LISTING_BATCH,
    ListingFilter,
    batches,
    covered,
    granted_entries,
    path_prefix,
)
from entroq_redis_server.authz.modify import plan_lookups, plan_modify, translate_failures
from entroq_redis_server.authz.rego import load_rego_engine
from entroq_redis_server.authz.sessions import RecentlyAuthenticated, jwt_expiry
from entroq_redis_server.authz.settings import AuthzSettings, document_path
from entroq_redis_server.core import errors as _errors
from entroq_redis_server.core import schema as _schema

import entroq_redis


def test_credentials_split_at_the_first_space_as_entroq_does() -> None:
    assert read_credentials({"Authorization": "Bearer abc"}) == Credentials("Bearer", "abc")
    assert read_credentials({"Authorization": "abc"}) == Credentials("", "abc")
    assert read_credentials({"Authorization": "Basic a b"}) == Credentials("Basic", "a b")
    # One word is credentials without a type (EntroQ); the policy decides what that is worth.
    assert read_credentials({"Authorization": "Bearer"}) == Credentials("", "Bearer")
    assert Credentials("Bearer", "abc").header() == "Bearer abc"
    assert Credentials("", "abc").to_json() == {"credentials": "abc"}


@pytest.mark.parametrize("value", [None, "", "   ", "Bearer ", "Bearer \t", "Bearer a\x01b", "x" * 9000])
def test_missing_or_malformed_credentials(value: str | None) -> None:
    headers = {} if value is None else {"Authorization": value}
    with pytest.raises(CredentialsError):
        read_credentials(headers)


def test_input_document_is_entroqs_shape() -> None:
    entries = [*claim_entries(["/a", "/b"], ["/c"]), *read_entries([""])]
    document = input_document(Credentials("Bearer", "t"), entries)
    assert document == {
        "authz": {"type": "Bearer", "credentials": "t"},
        "queues": [
            {"exact": "/a", "actions": ["CLAIM"]},
            {"exact": "/b", "actions": ["CLAIM"]},
            {"exact": "/c", "actions": ["DELETE"]},
            {"actions": ["READ"]},  # an empty queue: exact omitted, as EntroQ sends it
        ],
    }
    assert input_document(Credentials("", "t"), [])["authz"] == {"credentials": "t"}
    # Our one addition: the namespace of the call, for services serving several.
    assert input_document(Credentials("", "t", namespace="ns1"), [])["namespace"] == "ns1"


def test_opa_path_names_the_document() -> None:
    assert document_path("/v1/data/entroq/authz") == ("entroq", "authz")
    assert document_path("v1/data/x/") == ("x",)
    for bad in ("/v1/data", "/v0/data/x", "/data/entroq"):
        with pytest.raises(ValueError):
            document_path(bad)
    assert AuthzSettings().opa_path == "/v1/data/entroq/authz"
    assert AuthzSettings().opa_url == "http://localhost:8181"


@pytest.mark.parametrize(
    "result",
    [
        None,  # an undefined document (EntroQ's server would dereference nil here)
        [],
        {},
        {"allow": "true"},
        {"allow": 1},
        {"allow": True, "failed": "x"},
        {"allow": True, "failed": ["/q"]},
        {"allow": True, "failed": [{"exact": 1, "actions": []}]},
        {"allow": True, "errors": "x"},
        {"allow": False, "authenticated": "no"},
    ],
)
def test_malformed_answers_fail_closed(result: Any) -> None:
    with pytest.raises(PolicyFailure):
        parse_result(result)


def test_answers() -> None:
    allow = parse_result({"allow": True, "failed": [], "errors": [], "extra": 1})
    assert allow.permits
    # allow with failed entries contradicts itself: read as a denial.
    contradiction = parse_result({"allow": True, "failed": [{"exact": "/q", "actions": ["READ"]}]})
    assert not contradiction.permits
    deny = parse_result({"allow": False, "authenticated": False, "errors": ["e", 3]})
    assert (deny.authenticated, deny.errors) == (False, ("e", "3"))


def _body(error: _errors.ApiError) -> dict[str, Any]:
    return json.loads(json.dumps(_errors.rest_body(error)))


def test_denied_details_are_entroqs_authzdeps() -> None:
    decision = Decision(
        False,
        True,
        (
            QueueEntry("/bob/x", "", ("DELETE",)),
            QueueEntry("", "", ("READ", "*")),
            QueueEntry("/hid", "", ("DELETE",)),
        ),
        ("user: alice",),
    )
    error = denied(decision, hidden_queues={"/hid"})
    assert (error.status, error.code) == (403, _errors.PERMISSION_DENIED)
    body = _body(error)
    assert body["message"].startswith('queue action denied: DELETE on "/bob/x"')
    assert "/hid" not in json.dumps(body)
    kind = "type.googleapis.com/api.AuthzDep"
    assert body["details"] == [
        {"@type": kind, "actions": ["DETAIL"], "msg": "user: alice"},
        {"@type": kind, "actions": ["DELETE"], "exact": "/bob/x"},
        {"@type": kind, "actions": ["READ"]},
        {"@type": kind, "actions": ["DETAIL"], "exact": 'WARNING: Unknown action "*"'},
        {
            "@type": kind,
            "actions": ["DELETE"],
            "msg": "the queue the named task is in (not shown)",
        },
    ]
    connect = _errors.connect_body(error)
    assert connect["code"] == "permission_denied" and len(connect["details"]) == 5


def test_listing_visibility_fails_closed() -> None:
    wanted = read_entries(["/a", "/b", "/c"])

    def shown(decision: Decision) -> set[str] | None:
        granted = granted_entries(decision, wanted)
        return None if granted is None else {e.exact for e in granted}

    assert shown(Decision(True, None, (), ())) == {"/a", "/b", "/c"}
    failed_b = (QueueEntry("/b", "", ("READ",)),)
    assert shown(Decision(False, True, failed_b, ())) == {"/a", "/c"}
    assert shown(Decision(False, False, failed_b, ())) is None  # bad credentials: 401
    assert shown(Decision(False, None, (), ("no",))) == set()  # nothing attributable
    assert shown(Decision(False, None, (QueueEntry("/zzz", "", ("READ",)),), ())) == set()
    assert shown(Decision(False, None, (QueueEntry("", "/", ("READ",)),), ())) == set()


def _task(queue: str, task_id: str, version: int) -> entroq_redis.Task:
    return entroq_redis.Task(
        queue=queue,
        id=task_id,
        version=version,
        at_ms=0,
        claimant="",
        value=b"",
        created_ms=0,
        modified_ms=0,
        claims=0,
        attempt=0,
        err="",
    )


def _modify(**fields: Any) -> Any:
    return json_format_parse(fields)


def json_format_parse(fields: dict[str, Any]) -> Any:
    from google.protobuf import json_format

    return json_format.ParseDict(fields, _schema.ModifyRequest())


def _entries(plan: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.exact, e.actions) for e in plan.entries]


def test_a_move_is_authorized_on_the_real_source_whatever_old_id_queue_says() -> None:
    found = {"t1": _task("/bob/in", "t1", 3)}
    for claimed_source in ("", "/alice/out", "/alice/in"):
        request = _modify(
            changes=[
                {
                    "oldId": {"id": "t1", "version": 3, "queue": claimed_source},
                    "newData": {"queue": "/alice/out"},
                }
            ]
        )
        assert plan_lookups(request.changes, request.deletes, request.depends) == ["t1"]
        plan = plan_modify(request, found)
        assert _entries(plan) == [("/bob/in", ("DELETE",)), ("/alice/out", ("INSERT",))]
        guard = plan.request.depends[-1]
        assert (guard.id, guard.version, guard.queue) == ("t1", 3, "/bob/in")
        assert plan.hidden == {"/bob/in"}


def test_plans_for_changes_in_place_leases_deletes_and_depends() -> None:
    request = _modify(
        inserts=[{"queue": "/a/new"}],
        changes=[
            {"oldId": {"id": "c1", "version": 1}, "newData": {"queue": "/a/q"}},
            {
                "oldId": {"id": "c2", "version": 2, "queue": "/a/q"},
                "newData": {"queue": ""},
                "mode": "CHANGE_LEASE",
            },
            {"oldId": {"id": "gone", "version": 0, "queue": "/a/src"}, "newData": {"queue": "/a/dst"}},
        ],
        deletes=[{"id": "d1", "version": 4}, {"id": "d2", "version": 1, "queue": "/a/d"}, {"id": "nope"}],
        depends=[{"id": "p1", "version": 2}],
    )
    assert plan_lookups(request.changes, request.deletes, request.depends) == [
        "c1",
        "c2",
        "gone",
        "d1",
        "nope",
        "p1",
    ]
    found = {
        t.id: t
        for t in [
            _task("/a/q", "c1", 1),
            _task("/a/q", "c2", 2),
            _task("/b/x", "d1", 4),
            _task("/a/r", "p1", 2),
        ]
    }
    plan = plan_modify(request, found)
    assert _entries(plan) == [
        ("/a/new", ("INSERT",)),
        ("/a/q", ("CHANGE",)),
        ("/a/q", ("CHANGE",)),  # a lease change keeps the task where it is
        ("/a/src", ("DELETE",)),  # not found: the source the caller named, held to it by the guard
        ("/a/dst", ("INSERT",)),
        ("/b/x", ("DELETE",)),
        ("/a/d", ("DELETE",)),
        ("", ("DELETE",)),  # no queue and no task: EntroQ's entry without a queue
        ("/a/r", ("READ",)),
    ]
    assert [d.queue for d in plan.request.deletes] == ["/b/x", "/a/d", ""]
    assert [(d.id, d.queue) for d in plan.request.depends] == [
        ("p1", "/a/r"),
        ("c1", "/a/q"),
        ("c2", "/a/q"),
        ("gone", "/a/src"),
    ]
    assert plan.client_depends == 1 and plan.hidden == {"/b/x", "/a/r"}
    assert len(request.depends) == 1  # the caller's message is left alone


def test_guard_failures_are_reported_as_the_change_failing() -> None:
    request = _modify(
        changes=[
            {"oldId": {"id": "a", "version": 1, "queue": "/q"}, "newData": {"queue": "/q"}},
            {"oldId": {"id": "b", "version": 5, "queue": "/q"}, "newData": {"queue": "/q"}},
        ],
        depends=[{"id": "d", "version": 1, "queue": "/q"}],
    )
    plan = plan_modify(request, {"a": _task("/q", "a", 1), "b": _task("/q", "b", 5)})
    failure = entroq_redis.DependencyFailure
    error = entroq_redis.DependencyError(
        [
            failure("CHANGE", "mismatch", "b", 5, "/q", 6),  # b failed by itself
            failure("DEPEND", "missing", "d", 1, "/q", -1),  # the caller's own depend
            failure("DEPEND", "missing", "a", 1, "/q", 1),  # a's guard: a moved to another queue
            failure("DEPEND", "mismatch", "b", 5, "/q", 6),  # b's guard, same cause as b's failure
        ]
    )
    translated = translate_failures(error, plan)
    assert [(f.kind, f.reason, f.id) for f in translated.failures] == [
        ("CHANGE", "mismatch", "b"),
        ("DEPEND", "missing", "d"),
        ("CHANGE", "missing", "a"),
    ]
    assert translated.failures[2].current_version == 1


def test_listing_prefixes_batches_and_read_specs() -> None:
    assert [path_prefix("/a/b/c", d) for d in (1, 2, 3)] == ["/", "/a/", "/a/b/"]
    assert path_prefix("/a/b/c", 4) is None and path_prefix("/a/", 2) is None and path_prefix("q", 1) is None
    entries = read_entries([f"/q{i}" for i in range(LISTING_BATCH * 2 + 1)])
    assert [len(b) for b in batches(entries, 10**9)] == [LISTING_BATCH, LISTING_BATCH, 1]
    assert [len(b) for b in batches(read_entries(["x" * 100] * 3), 200)] == [1, 1, 1]
    assert read_specs(None) is None
    assert read_specs([{"exact": "/a"}, {"prefix": "/b/"}]) == [("/a", ""), ("", "/b/")]
    for bad in ({}, [1], [{}], [{"exact": "/a", "prefix": "/b/"}], [{"prefix": ""}], [{"exact": 3}]):
        with pytest.raises(PolicyFailure):
            read_specs(bad)
    granted = {QueueEntry("/x", "", ("READ",)), QueueEntry("", "/a/", ("READ",))}
    assert covered(["/x", "/x2", "/a/1", "/a", "/b/1"], granted) == {"/x", "/a/1"}


async def test_listing_by_prefix_asks_only_below_denied_prefixes() -> None:
    engine = load_rego_engine([POLICY], DATA, ("entroq", "authz"))
    asked: list[QueueEntry] = []

    async def decide(entries: Sequence[QueueEntry]) -> Decision:
        asked.extend(entries)
        credentials = Credentials("Bearer", ALICE)
        result = engine.evaluate_sync(input_document(credentials, entries))
        # As a policy written for EntroQ answers: without the readable grants.
        del result["readable"]
        return parse_result(result)

    mine = [f"/alice/{i}" for i in range(100)] + [f"/alice/deep/{i}" for i in range(100)]
    others = ["/bob/1", "/bob/2", "/shared/inbox", "/shared/other", "top"]
    try:
        shown = await ListingFilter(decide, 10**6).readable(mine + others)
    finally:
        engine.close()
    assert shown == set(mine) | {"/shared/inbox"}
    # "/" (denied), then "/alice/" (granted: 200 names in one entry), "/bob/" and "/shared/"
    # (denied), then the four names under those exactly, and "top" (no prefix) exactly.
    assert sorted(e.prefix or e.exact for e in asked) == sorted(
        ["/", "/alice/", "/bob/", "/shared/", "/bob/1", "/bob/2", "/shared/inbox", "/shared/other", "top"]
    )


async def test_listing_with_the_example_policy_asks_only_about_its_readable_grants() -> None:
    # The rego engine passes the policy's readable grants on: one decision about alice's
    # three read grants, however many names are listed.
    engine = load_rego_engine([POLICY], DATA, ("entroq", "authz"))
    asked: list[QueueEntry] = []

    async def decide(entries: Sequence[QueueEntry]) -> Decision:
        asked.extend(entries)
        credentials = Credentials("Bearer", ALICE)
        return parse_result(engine.evaluate_sync(input_document(credentials, entries)))

    mine = [f"/alice/{i}" for i in range(100)] + ["/ns=user/alice/x"]
    others = [f"/bob/{i}" for i in range(1000)] + ["/shared/inbox", "/shared/other", "top"]
    try:
        shown = await ListingFilter(decide, 10**6).readable(mine + others)
    finally:
        engine.close()
    assert shown == set(mine) | {"/shared/inbox"}
    assert sorted(e.prefix or e.exact for e in asked) == ["/alice/", "/ns=user/alice/", "/shared/inbox"]


def test_remembered_credentials_end_with_a_jwt() -> None:
    sessions = RecentlyAuthenticated(remember_s=60)
    sessions.remember("Bearer opaque", "eq")
    assert sessions.knows("Bearer opaque", "eq")
    assert not sessions.knows("Bearer opaque", "other") and not sessions.knows("Bearer other", "eq")
    expired = f"Bearer {jwt('alice', expires_in=-1)}"
    assert jwt_expiry(expired) is not None
    sessions.remember(expired, "eq")
    assert not sessions.knows(expired, "eq")
    assert jwt_expiry("Bearer a.b.c") is None and jwt_expiry("Bearer opaque") is None
