"""The authorization matrix over gRPC: every RPC of ``api.EntroQ`` guarded like its REST twin.

One service, started with ``--authz rego`` and the example policy (REGO_FLAGS, as in
test_authz_service.py and test_battery_hostile_authz.py), serves both. Each request is sent over
gRPC (grpcio stubs from the v1 proto) in one namespace and as its REST twin in another namespace
seeded the same way, and the answers must agree: 200 <-> OK, 401 <-> UNAUTHENTICATED, 403 <->
PERMISSION_DENIED with the same AuthzDep details, 404 <-> NOT_FOUND, 504 <-> DEADLINE_EXCEEDED,
with the same message. On top: who is allowed what (alice on her own queues only, everyone else
401), the store unchanged by every refusal (DUMP of the namespace), listings filtered to what the
caller may read, moves checked on the task's real queue, finish authorized as a delete, and
claimant binding.

RPCs covered: TryClaim, Claim, Modify, Tasks, StreamTasks, Queues, QueueStats, Time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import grpc_support
import httpx
import pytest
import redis
import trio
from authz_support import ALICE, BOB, OPS, REGO_FLAGS, client, jwt
from battery.hostile import HOSTILE_STRINGS, namespace_state
from conftest import ServiceProcess, start_service
from google.protobuf import json_format
from grpc_backend import GrpcBackend, call_metadata, channel_to, open_grpc_client

import entroq_redis

OWN = ["/alice/x", "/alice/../bob/x"]
OTHERS = ["/bob/x", "/alice2/x"]
# "malformed": three dot-separated parts that are not a JWT. The HTTP suite's other malformed
# header, a control character ("a\tb"), cannot be sent as gRPC metadata: grpcio refuses it
# before sending (metadata values are printable ASCII).
CREDENTIALS: dict[str, str | None] = {
    "none": None,
    "malformed": "a.b.c",
    "wrong": "no-such-token",
    "expired": "<expired>",
    "forged": "<forged>",
    "alice": ALICE,
}
CODES = {
    200: grpc.StatusCode.OK,
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The RPC each case of cases_for sends; every RPC of the service except the document store's.
RPC_OF = {
    "insert": "Modify",
    "delete": "Modify",
    "depend": "Modify",
    "move-out": "Modify",
    "tryclaim": "TryClaim",
    "claim": "Claim",
    "tasks": "Tasks",
    "tasks-by-id": "Tasks",
    "stream": "StreamTasks",
    "queues": "Queues",
    "queuestats": "QueueStats",
    "time": "Time",
}
ALL_RPCS = ("TryClaim", "Claim", "Modify", "Tasks", "StreamTasks", "Queues", "QueueStats", "Time")
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
pb2: Any = grpc_support.v1().pb2


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


@pytest.fixture
def rest_namespace(sync_redis: redis.Redis) -> Iterator[str]:
    """A second fresh namespace, where the REST twins run."""
    name = "t" + secrets.token_hex(6)
    yield name
    keys = list(sync_redis.scan_iter(match="{" + name + "}:*", count=1000))
    if keys:
        sync_redis.delete(*keys)


def token(kind: str) -> str | None:
    if kind == "expired":
        return str(jwt("alice", expires_in=-60))
    if kind == "forged":
        return str(jwt("alice", secret="forged"))
    return CREDENTIALS[kind]


@dataclasses.dataclass
class Answer:
    """What a gRPC call ended with: its code, message, typed details (as proto3 JSON, with
    ``@type``, as REST bodies carry them) and its response (a list of them for a stream)."""

    code: grpc.StatusCode
    message: str = ""
    details: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    response: Any = None


def _details(exc: grpc.RpcError) -> list[dict[str, Any]]:
    status = grpc_support.status_details(exc)
    found: list[dict[str, Any]] = []
    for detail in status.details if status is not None else ():
        name = detail.type_url.rsplit("/", 1)[-1]
        message = getattr(pb2, name.removeprefix("api."))()
        assert detail.Unpack(message), detail.type_url
        found.append({"@type": detail.type_url, **json_format.MessageToDict(message)})
    return found


def _failed(exc: grpc.RpcError) -> Answer:
    call: Any = exc
    return Answer(call.code(), call.details() or "", _details(exc))


class Caller:
    """Raw gRPC calls as one caller (token, namespace) on its own channel."""

    def __init__(self, address: str, namespace: str, bearer: str | None) -> None:
        self.backend = GrpcBackend(channel_to(address), call_metadata(bearer, namespace))
        self.stub = self.backend.stub

    async def unary(self, rpc: str, request: Any, timeout_s: float = 30) -> Answer:
        try:
            response = await self.backend.call(getattr(self.stub, rpc), request, grpc_timeout_s=timeout_s)
        except grpc.RpcError as exc:
            return _failed(exc)
        return Answer(grpc.StatusCode.OK, response=response)

    async def stream(self, request: Any, timeout_s: float = 30) -> Answer:
        """StreamTasks, read to its end on a worker thread (server streaming)."""

        def read() -> Answer:
            try:
                responses = list(
                    self.stub.StreamTasks(request, metadata=self.backend.metadata, timeout=timeout_s)
                )
            except grpc.RpcError as exc:
                return _failed(exc)
            return Answer(grpc.StatusCode.OK, response=responses)

        return await trio.to_thread.run_sync(read)

    def close(self) -> None:
        self.backend.channel.close()


@contextlib.asynccontextmanager
async def caller(service: ServiceProcess, namespace: str, bearer: str | None) -> AsyncIterator[Caller]:
    assert service.grpc_url is not None
    calling = Caller(service.grpc_url, namespace, bearer)
    try:
        yield calling
    finally:
        calling.close()


async def _seed(store_url: str, namespace: str, queues: list[str]) -> dict[str, str]:
    """One task per queue with the same IDs in every namespace seeded: t0, t1, ..."""
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        await store.modify(inserts=[entroq_redis.TaskData(q, id=f"t{i}") for i, q in enumerate(queues)])
    return {q: f"t{i}" for i, q in enumerate(queues)}


# One case: (label, send it over gRPC, its REST twin as (method, path, httpx keyword arguments)).
Case = tuple[str, Callable[[Caller], Any], tuple[str, str, dict[str, Any]]]


def cases_for(queue: str, task_id: str) -> list[Case]:
    """Every RPC acting on ``queue`` (Time on none), with its REST twin."""
    quoted = urllib.parse.quote(queue, safe="")
    claimant = "alice#1"
    task = {"id": task_id, "version": 0, "queue": queue}
    change = {"oldId": task, "newData": {"queue": "/alice/moved"}}
    claim = {"claimantId": claimant, "queues": [queue], "durationMs": "60000"}
    empty = queue + "/empty"
    wait = {"claimantId": claimant, "queues": [empty], "durationMs": "60000"}

    def modify(body: dict[str, Any]) -> Callable[[Caller], Any]:
        return lambda c: c.unary("Modify", json_format.ParseDict(body, pb2.ModifyRequest()))

    def rest_modify(body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        return ("POST", "/api/v0/modify", {"json": body})

    insert = {"claimantId": claimant, "inserts": [{"queue": queue}]}
    delete = {"claimantId": claimant, "deletes": [task]}
    depend = {"claimantId": claimant, "depends": [task]}
    move = {"claimantId": claimant, "changes": [change]}
    return [
        ("insert", modify(insert), rest_modify(insert)),
        ("delete", modify(delete), rest_modify(delete)),
        ("depend", modify(depend), rest_modify(depend)),
        ("move-out", modify(move), rest_modify(move)),
        (
            "tryclaim",
            lambda c: c.unary("TryClaim", json_format.ParseDict(claim, pb2.ClaimRequest())),
            ("POST", "/api/v0/claim", {"json": claim}),
        ),
        (
            "claim",
            lambda c: c.unary("Claim", json_format.ParseDict(wait, pb2.ClaimRequest()), timeout_s=0.2),
            ("POST", "/api/v0/claim/wait", {"json": wait, "headers": {"X-Server-Timeout": "0.2"}}),
        ),
        (
            "tasks",
            lambda c: c.unary("Tasks", pb2.TasksRequest(queue=queue)),
            ("GET", f"/api/v0/queues/{quoted}/tasks", {}),
        ),
        (
            "tasks-by-id",
            lambda c: c.unary("Tasks", pb2.TasksRequest(queue=queue, task_id=[task_id])),
            ("GET", "/api/v0/tasks", {"params": {"taskId": task_id, "queue": queue}}),
        ),
        (
            "stream",
            lambda c: c.stream(pb2.TasksRequest(queue=queue)),
            ("GET", "/api/v0/tasks/stream", {"params": {"queue": queue}}),
        ),
        (
            "queues",
            lambda c: c.unary("Queues", pb2.QueuesRequest(match_exact=[queue])),
            ("GET", "/api/v0/queues", {"params": {"matchExact": queue}}),
        ),
        (
            "queuestats",
            lambda c: c.unary("QueueStats", pb2.QueuesRequest(match_prefix=[queue])),
            ("GET", "/api/v0/queues/stats", {"params": {"matchPrefix": queue}}),
        ),
        ("time", lambda c: c.unary("Time", pb2.TimeRequest()), ("GET", "/api/v0/time", {})),
    ]


def _names(answer: Answer) -> list[str]:
    return [q.name for q in answer.response.queues]


def _rest_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _twin_differences(label: str, answer: Answer, twin: httpx.Response) -> list[str]:
    """How the gRPC answer differs from its REST twin's (empty: they agree)."""
    expected = CODES.get(twin.status_code)
    if answer.code != expected:
        return [f"{label}: gRPC {answer.code.name}, REST {twin.status_code} {twin.text[:160]}"]
    if answer.code == grpc.StatusCode.OK:
        if label in ("queues", "queuestats"):
            rest_names = [q["name"] for q in _rest_body(twin).get("queues", [])]
            if _names(answer) != rest_names:
                return [f"{label}: gRPC lists {_names(answer)}, REST {rest_names}"]
        return []
    body = _rest_body(twin)
    wrong = []
    if answer.code in REFUSED and answer.message != body.get("message"):
        wrong.append(f"{label}: gRPC says {answer.message!r}, REST {body.get('message')!r}")
    if answer.code == grpc.StatusCode.PERMISSION_DENIED and answer.details != body.get("details"):
        wrong.append(f"{label}: gRPC details {answer.details}, REST {body.get('details')}")
    return wrong


async def test_every_rpc_every_credential_every_queue_like_its_rest_twin(
    service: ServiceProcess,
    store_url: str,
    namespace: str,
    rest_namespace: str,
    sync_redis: redis.Redis,
) -> None:
    seeded = await _seed(store_url, namespace, OWN + OTHERS)
    assert await _seed(store_url, rest_namespace, OWN + OTHERS) == seeded
    wrong_accepts: list[str] = []
    wrong_denies: list[str] = []
    changed_by_refusal: list[str] = []
    unlike_rest: list[str] = []
    codes: dict[str, int] = {}
    rpcs: set[str] = set()
    sent = 0
    for kind in CREDENTIALS:
        bearer = token(kind)
        async with (
            caller(service, namespace, bearer) as grpc_caller,
            client(service.url, rest_namespace, bearer) as http,
        ):
            for queue in OWN + OTHERS:
                for label, send, (method, path, kwargs) in cases_for(queue, seeded[queue]):
                    before = namespace_state(sync_redis, namespace)
                    answer = await send(grpc_caller)
                    twin = await http.request(method, path, **kwargs)
                    sent += 1
                    rpcs.add(RPC_OF[label])
                    codes[answer.code.name] = codes.get(answer.code.name, 0) + 1
                    what = f"{kind} {label} {queue!r}: {answer.code.name} {answer.message[:120]}"
                    unlike_rest += [f"{kind} {queue!r} {d}" for d in _twin_differences(label, answer, twin)]
                    refused = answer.code in REFUSED
                    if refused and namespace_state(sync_redis, namespace) != before:
                        changed_by_refusal.append(what)
                    if label == "time":
                        continue  # open to everyone, as in EntroQ; its twin decides
                    if kind != "alice":
                        if answer.code != grpc.StatusCode.UNAUTHENTICATED:
                            wrong_accepts.append(what)
                        continue
                    if label in ("queues", "queuestats"):
                        # Listings are filtered, not refused: another user's queue is not shown.
                        shown = answer.code == grpc.StatusCode.OK and queue in _names(answer)
                        if shown != (queue in OWN):
                            (wrong_denies if queue in OWN else wrong_accepts).append(what)
                        continue
                    if queue in OWN and refused:
                        wrong_denies.append(what)
                    if queue in OTHERS and answer.code != grpc.StatusCode.PERMISSION_DENIED:
                        wrong_accepts.append(what)
                    named = {queue, queue + "/empty"}  # the claim waits on an empty queue beside it
                    if queue in OTHERS and not any(d.get("exact") in named for d in answer.details):
                        wrong_accepts.append(f"{what}: no AuthzDep names the queue {answer.details}")
    print(
        f"gRPC authz matrix: {sent} calls (and as many REST twins), codes {dict(sorted(codes.items()))}; "
        f"wrong accepts {len(wrong_accepts)}, wrong denies {len(wrong_denies)}, refusals that changed "
        f"the store {len(changed_by_refusal)}, unlike REST {len(unlike_rest)}"
    )
    assert rpcs == set(ALL_RPCS)
    assert wrong_accepts == []
    assert wrong_denies == []
    assert changed_by_refusal == []
    assert unlike_rest == []
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        assert [t.id for t in await store.tasks("/bob/x")] == [seeded["/bob/x"]]


async def test_unauthenticated_and_denied_answers(service: ServiceProcess, namespace: str) -> None:
    insert = pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/alice/jobs")])
    async with caller(service, namespace, ALICE) as alice:
        ok = await alice.unary("Modify", insert)
        assert ok.code == grpc.StatusCode.OK and ok.response.inserted[0].queue == "/alice/jobs"
    async with caller(service, namespace, BOB) as bob:
        denied = await bob.unary("Modify", insert)
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.message == 'queue action denied: INSERT on "/alice/jobs"'
    assert denied.details == [
        {"@type": "type.googleapis.com/api.AuthzDep", "actions": ["DETAIL"], "msg": "user: bob"},
        {"@type": "type.googleapis.com/api.AuthzDep", "actions": ["INSERT"], "exact": "/alice/jobs"},
    ]
    async with caller(service, namespace, None) as anonymous:
        missing = await anonymous.unary("Modify", insert)
        time = await anonymous.unary("Time", pb2.TimeRequest())
    assert missing.code == grpc.StatusCode.UNAUTHENTICATED and "missing credentials" in missing.message
    assert missing.details == []
    assert time.code == grpc.StatusCode.OK and time.response.time_ms > 0  # open, as in EntroQ
    # A wrong token, an expired JWT and a forged one get the same answer: nothing tells which.
    answers = []
    for bearer in ("no-such-token", jwt("alice", expires_in=-60), jwt("alice", secret="forged")):
        async with caller(service, namespace, bearer) as wrong:
            answers.append(await wrong.unary("Modify", insert))
    assert {(a.code, a.message, len(a.details)) for a in answers} == {
        (grpc.StatusCode.UNAUTHENTICATED, "invalid credentials", 0)
    }
    async with caller(service, namespace, jwt("alice")) as alice_jwt:
        assert (await alice_jwt.unary("Modify", insert)).code == grpc.StatusCode.OK
    async with entroq_redis.connect(service.url, namespace=namespace, token=OPS) as ops:
        assert len(await ops.tasks("/alice/jobs")) == 2


async def test_listings_show_only_readable_queues(
    service: ServiceProcess, store_url: str, namespace: str
) -> None:
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        mine, theirs = None, None
        for queue in ("/alice/a", "/alice/b", "/bob/x", "/shared/inbox", "/ns=user/alice/z", "/secret"):
            (task,), _ = await store.modify(inserts=[entroq_redis.TaskData(queue)])
            mine = task if queue == "/alice/a" else mine
            theirs = task if queue == "/bob/x" else theirs
    assert mine is not None and theirs is not None

    async def names(bearer: str | None, rpc: str = "Queues", **request: Any) -> list[str] | grpc.StatusCode:
        async with caller(service, namespace, bearer) as calling:
            answer = await calling.unary(rpc, pb2.QueuesRequest(**request))
        return _names(answer) if answer.code == grpc.StatusCode.OK else answer.code

    alices = ["/alice/a", "/alice/b", "/ns=user/alice/z", "/shared/inbox"]
    assert await names(ALICE) == alices
    assert await names(ALICE, "QueueStats") == alices
    assert await names(BOB) == ["/bob/x", "/shared/inbox"]
    assert await names(OPS) == sorted([*alices, "/bob/x", "/secret"])
    # The limit counts what the caller may see, not what was hidden.
    assert await names(BOB, limit=1) == ["/bob/x"]
    assert await names(ALICE, match_prefix=["/b"]) == []
    assert await names(ALICE, "QueueStats", match_exact=["/bob/x", "/secret", "/alice/b"]) == ["/alice/b"]
    assert await names(None) == grpc.StatusCode.UNAUTHENTICATED
    assert await names("wrong", "QueueStats") == grpc.StatusCode.UNAUTHENTICATED
    async with caller(service, namespace, ALICE) as alice:
        # By IDs without a queue: only the tasks in queues alice may read come back.
        by_id = await alice.unary("Tasks", pb2.TasksRequest(task_id=[mine.id, theirs.id]))
        no_queue = await alice.unary("Tasks", pb2.TasksRequest())  # EntroQ: READ on no queue, denied
        stream = await alice.stream(pb2.TasksRequest(queue="/bob/x"))
        own_stream = await alice.stream(pb2.TasksRequest(queue="/alice/a"))
    assert by_id.code == grpc.StatusCode.OK and [t.id for t in by_id.response.tasks] == [mine.id]
    assert no_queue.code == grpc.StatusCode.PERMISSION_DENIED
    assert stream.code == grpc.StatusCode.PERMISSION_DENIED and stream.details[1]["exact"] == "/bob/x"
    assert own_stream.code == grpc.StatusCode.OK
    assert [t.id for r in own_stream.response for t in r.tasks] == [mine.id]


async def test_a_move_is_checked_against_the_real_source_queue(
    service: ServiceProcess, store_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        (bobs, own), _ = await store.modify(
            inserts=[entroq_redis.TaskData("/bob/in"), entroq_redis.TaskData("/alice/in")]
        )
    before = namespace_state(sync_redis, namespace)
    async with caller(service, namespace, ALICE) as alice:
        for claimed_source in ("", "/alice/out", "/alice/in"):
            old_id = pb2.TaskID(id=bobs.id, version=bobs.version, queue=claimed_source)
            change = pb2.TaskChange(old_id=old_id, new_data=pb2.TaskData(queue="/alice/out"))
            answer = await alice.unary("Modify", pb2.ModifyRequest(changes=[change]))
            assert answer.code == grpc.StatusCode.PERMISSION_DENIED, (claimed_source, answer)
            assert answer.details[1]["actions"] == ["DELETE"]
            assert "/bob/in" not in repr(answer)  # the real queue is not revealed
        assert namespace_state(sync_redis, namespace) == before
        # Her own task, moved with oldId.queue = the destination (an EntroQ client quirk): allowed.
        old_id = pb2.TaskID(id=own.id, version=own.version, queue="/alice/out")
        move = pb2.ModifyRequest(
            changes=[pb2.TaskChange(old_id=old_id, new_data=pb2.TaskData(queue="/alice/out"))]
        )
        assert (await alice.unary("Modify", move)).code == grpc.StatusCode.OK
        # A stale version is a dependency error naming the change only (no guard depend shows).
        stale = await alice.unary("Modify", move)
    assert stale.code == grpc.StatusCode.NOT_FOUND
    assert [d["type"] for d in stale.details] == ["DETAIL", "CHANGE"]


async def test_finish_is_authorized_as_a_delete_on_the_tasks_real_queue(
    service: ServiceProcess, store_url: str, namespace: str
) -> None:
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        (work, other), _ = await store.modify(
            inserts=[entroq_redis.TaskData("/alice/work"), entroq_redis.TaskData("/bob/work")]
        )
    async with caller(service, namespace, ALICE) as alice:
        claim = pb2.ClaimRequest(claimant_id="alice#1", queues=["/alice/work"], duration_ms=5000)
        claimed = await alice.unary("TryClaim", claim)
        assert claimed.code == grpc.StatusCode.OK and claimed.response.task.id == work.id
        # bob's task, named without its queue: found by lookup, refused, and not revealed.
        foreign = pb2.ClaimRequest(
            claimant_id="alice#1", queues=["/alice/work"], finish=[pb2.TaskID(id=other.id, version=0)]
        )
        refused = await alice.unary("TryClaim", foreign)
        done = pb2.TaskID(id=work.id, version=claimed.response.task.version)
        own = await alice.unary(
            "TryClaim", pb2.ClaimRequest(claimant_id="alice#1", queues=["/alice/work"], finish=[done])
        )
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert "/bob/work" not in repr(refused)
    assert own.code == grpc.StatusCode.OK and not own.response.HasField("task")
    async with entroq_redis.connect(store_url, namespace=namespace) as store:
        assert [t.id for t in await store.tasks("/bob/work")] == [other.id]
        assert await store.tasks("/alice/work") == []


async def test_a_claimant_id_of_another_user_is_refused(
    service: ServiceProcess, namespace: str, sync_redis: redis.Redis
) -> None:
    async with caller(service, namespace, ALICE) as alice:
        inserted = await alice.unary("Modify", pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/alice/x")]))
        held = await alice.unary(
            "TryClaim", pb2.ClaimRequest(claimant_id="alice#1", queues=["/alice/x"], duration_ms=60_000)
        )
        assert held.code == grpc.StatusCode.OK, held
        held_id = pb2.TaskID(
            id=inserted.response.inserted[0].id, version=held.response.task.version, queue="/alice/x"
        )
        before = namespace_state(sync_redis, namespace)
        claim = pb2.ClaimRequest(claimant_id="bob#1", queues=["/alice/x"], duration_ms=1000)
        as_bob = [
            ("TryClaim", claim),
            ("Claim", claim),
            (
                "Modify",
                pb2.ModifyRequest(
                    claimant_id="bob#1",
                    changes=[pb2.TaskChange(old_id=held_id, new_data=pb2.TaskData(queue="/alice/x"))],
                ),
            ),
            ("Modify", pb2.ModifyRequest(claimant_id="bob#1", deletes=[held_id])),
            ("Modify", pb2.ModifyRequest(claimant_id="bob#1", inserts=[pb2.TaskData(queue="/alice/y")])),
        ]
        for rpc, request in as_bob:
            answer = await alice.unary(rpc, request, timeout_s=5)
            assert answer.code == grpc.StatusCode.PERMISSION_DENIED, (rpc, answer)
            assert 'claimant ID "bob#1" may not be used by alice' in answer.message, answer
            assert answer.details[0]["actions"] == ["DETAIL"], answer
        assert namespace_state(sync_redis, namespace) == before
        for claimant in ("alice#2", "0c6f6a52-35b4-4cf4-a4bb-7b86d5a1e0f1"):
            request = pb2.ModifyRequest(claimant_id=claimant, inserts=[pb2.TaskData(queue="/alice/z")])
            assert (await alice.unary("Modify", request)).code == grpc.StatusCode.OK, claimant


async def test_the_grpc_test_backend_maps_refusals_like_the_http_backend(
    service: ServiceProcess, namespace: str
) -> None:
    assert service.grpc_url is not None
    async with open_grpc_client(service.grpc_url, namespace=namespace, token=ALICE) as alice:
        inserted, _ = await alice.modify([entroq_redis.TaskData(queue="/alice/lib", value=b"x")])
        assert [t.id for t in await alice.tasks("/alice/lib")] == [inserted[0].id]
        assert await alice.try_claim("/alice/lib") is not None
        with pytest.raises(entroq_redis.PermissionDeniedError) as denied:
            await alice.modify([entroq_redis.TaskData(queue="/bob/lib", value=b"x")])
        assert denied.value.status == 403 and "/bob/lib" in str(denied.value)
        assert list(await alice.queues()) == ["/alice/lib"]
    for bearer in (None, "wrong"):
        async with open_grpc_client(service.grpc_url, namespace=namespace, token=bearer) as nobody:
            with pytest.raises(entroq_redis.PermissionDeniedError) as refused:
                await nobody.tasks("/alice/lib")
            assert refused.value.status == 401
            await nobody.ping()  # the health service is open, as a load balancer's probe needs


async def test_metrics_count_grpc_decisions(service: ServiceProcess, namespace: str) -> None:
    def denials(metrics: str) -> float:
        prefix = 'entroq_authz_decisions_total{outcome="deny"} '
        lines = [x for x in metrics.splitlines() if x.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        before = denials((await http.get("/metrics")).text)
        async with caller(service, namespace, BOB) as bob:
            for _ in range(3):
                answer = await bob.unary(
                    "Modify", pb2.ModifyRequest(inserts=[pb2.TaskData(queue="/alice/m")])
                )
                assert answer.code == grpc.StatusCode.PERMISSION_DENIED
        after = denials((await http.get("/metrics")).text)
    assert after - before == 3


async def test_denials_naming_any_queue_text_match_rest(service: ServiceProcess, namespace: str) -> None:
    # A denial's message names the queue: it travels percent-encoded in grpc-message, and the
    # queue once more in the AuthzDep details, and must read exactly as the REST body says it.
    names = ["/alice/ünï 队列 🚀", "/alice/tab\tnl\n", "/alice/nul\x00", "/alice/100%"]
    names += ["/alice/" + text for text in HOSTILE_STRINGS]
    unlike_rest = []
    async with caller(service, namespace, BOB) as bob, client(service.url, namespace, BOB) as http:
        for name in names:
            answer = await bob.unary("Modify", pb2.ModifyRequest(inserts=[pb2.TaskData(queue=name)]))
            twin = await http.post("/api/v0/modify", json={"inserts": [{"queue": name}]})
            assert answer.code == grpc.StatusCode.PERMISSION_DENIED, (name, answer)
            unlike_rest += _twin_differences(f"insert {name!r}", answer, twin)
    assert unlike_rest == []


async def test_an_empty_bearer_token_is_refused_alone(service: ServiceProcess, namespace: str) -> None:
    # "Bearer " is what a client with an empty token sends. REST answers 401 (malformed: no
    # credentials after Bearer); over gRPC it must be UNAUTHENTICATED, and a claim waiting on the
    # same connection must go on.
    assert service.grpc_url is not None
    channel = channel_to(service.grpc_url)
    waiting = GrpcBackend(channel, call_metadata(ALICE, namespace))
    empty = GrpcBackend(channel, [("authorization", "Bearer "), ("entroq-namespace", namespace)])
    claim = pb2.ClaimRequest(claimant_id="alice#1", queues=["/alice/wait"], duration_ms=1000)
    outcome: dict[str, Any] = {}

    async def wait() -> None:
        try:
            await waiting.call(waiting.stub.Claim, claim, grpc_timeout_s=1.0)
            outcome["claim"] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            outcome["claim"] = _failed(exc).code

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(0.3)
            try:
                await empty.call(empty.stub.Tasks, pb2.TasksRequest(queue="/alice/wait"), grpc_timeout_s=5)
                outcome["empty"] = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                outcome["empty"] = _failed(exc).code, _failed(exc).message
    finally:
        channel.close()
    message = "malformed Authorization header: no credentials after 'Bearer'"
    assert outcome == {
        "empty": (grpc.StatusCode.UNAUTHENTICATED, message),
        "claim": grpc.StatusCode.DEADLINE_EXCEEDED,
    }
