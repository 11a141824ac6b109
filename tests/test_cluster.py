"""Scale-out on a real local Valkey Cluster (3 primaries, 3 replicas; conftest's ``cluster``).

Namespaces are the unit of scale (docs/design.md 2.4): each is one hash tag, one slot, so one
primary runs all of a namespace's scripts and several namespaces spread over the primaries.
The shared behaviour tests also run on the cluster (the "cluster" backend in conftest), and
test_cluster_failover.py kills primaries. Here: where namespaces land, the service serving
several of them on the cluster, and how an unconfirmed write (--wait-replicas) is reported.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys

import httpx
import pytest
from cluster_fixture import LocalCluster
from conftest import start_service

import entroq_redis
from entroq_redis import DependencyError, Durability, OutcomeUnknownError, TaskData, TaskID


def primary_ports(cluster: LocalCluster) -> dict[int, tuple[int, int]]:
    """CLUSTER SHARDS: each primary's port -> its (first, last) slot range."""
    found = {}
    for shard in cluster.shards():
        (primary,) = [node for node in shard["nodes"] if node["role"] == "master"]
        first, last = (int(slot) for slot in shard["slots"][:2])
        found[int(primary["port"])] = (first, last)
    return found


async def test_namespaces_land_on_different_primaries_and_stay_apart(cluster: LocalCluster) -> None:
    names = cluster.spread_namespaces("spread-" + secrets.token_hex(3))
    ranges = primary_ports(cluster)
    assert len(ranges) == 3
    owners = {}
    for name in names:
        slot = cluster.namespace_slot(name)  # CLUSTER KEYSLOT of the namespace's queue index
        owners[name] = next(port for port, (a, b) in ranges.items() if a <= slot <= b)
    assert len(set(owners.values())) == 3, owners

    for number, name in enumerate(names):
        async with entroq_redis.connect(cluster.url, namespace=name) as eq:
            await eq.modify(inserts=[TaskData("jobs", value=name.encode()) for _ in range(number + 1)])

    for number, name in enumerate(names):
        slot = cluster.namespace_slot(name)
        for port in ranges:
            # Each primary holds keys only for its own slots: the namespace lives on its owner alone.
            with contextlib.closing(cluster.node_at(port).client()) as node:
                held = int(node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
            # A queue's tasks, its index entries and the queue index: more keys than tasks.
            assert (held > number + 1) if port == owners[name] else held == 0, (name, port, held)
        async with entroq_redis.connect(cluster.url, namespace=name) as eq:
            (stats,) = await eq.queue_stats()
            assert stats.name == "jobs" and stats.num_tasks == number + 1
            assert {t.value for t in await eq.tasks("jobs")} == {name.encode()}


async def test_service_serves_several_namespaces_of_the_cluster(cluster: LocalCluster) -> None:
    names = cluster.spread_namespaces("svc-" + secrets.token_hex(3))
    args = [arg for name in names for arg in ("--namespace", name)]
    service = start_service(cluster.url, *args)
    try:
        inserted: dict[str, TaskID] = {}
        for name in names:
            async with entroq_redis.connect(service.url, namespace=name) as eq:
                (task,), _ = await eq.modify(inserts=[TaskData("jobs", value=name.encode())])
                inserted[name] = task.as_id()
                claimed = await eq.claim("jobs", duration_ms=10_000, timeout_s=10)
                assert claimed.id == task.id and claimed.value == name.encode()
                await eq.modify(changes=[claimed.as_change(at=None)])  # release, keep it
        # One request, one namespace: a modify in one namespace cannot reach a task of
        # another (it is simply not there), so nothing is ever committed across two slots.
        first, second = names[0], names[1]
        async with entroq_redis.connect(service.url, namespace=first) as eq:
            with pytest.raises(DependencyError) as refused:
                await eq.modify(deletes=[inserted[second]])
            assert [f.reason for f in refused.value.failures] == ["missing"]
        async with entroq_redis.connect(service.url) as eq:  # no header: the first namespace
            assert [t.id for t in await eq.tasks("jobs")] == [inserted[first].id]
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            assert (await http.get("/readyz")).status_code == 200
            other = await http.get("/api/v0/time", headers={"EntroQ-Namespace": "not-served"})
            assert other.status_code == 404 and "not served here" in other.json()["message"]
    finally:
        assert service.stop() == 0
    assert "Traceback" not in service.log()


# More replicas than any test store has: WAIT can never be satisfied, so every write is
# applied on the store but reported unconfirmed (on the embedded store, or Redis on 6379).
NEVER_ENOUGH = 9


async def test_unconfirmed_write_is_outcome_unknown_in_the_library(store_url: str, namespace: str) -> None:
    durability = Durability(replicas=NEVER_ENOUGH, timeout_ms=50)
    async with entroq_redis.connect(store_url, namespace=namespace, durability=durability) as eq:
        with pytest.raises(OutcomeUnknownError, match="not confirmed durable"):
            await eq.modify(inserts=[TaskData("jobs", id="first")])
        (task,) = await eq.tasks("jobs")  # applied on the primary all the same
        # Retrying the same modify is safe: the first attempt survived, so the retry is refused
        # and writes nothing; a refusal wrote nothing, so it is reported as such.
        with pytest.raises(DependencyError):
            await eq.modify(inserts=[TaskData("jobs", id="first")])
        assert await eq.tasks("jobs") == [task]
        with pytest.raises(OutcomeUnknownError):
            await eq.try_claim("jobs", duration_ms=10_000)
        (claimed,) = await eq.tasks("jobs")
        assert claimed.version == task.version + 1 and claimed.claimant == eq.claimant_id


async def test_unconfirmed_write_is_503_outcome_unknown_over_http(store_url: str, namespace: str) -> None:
    service = start_service(
        store_url, "--wait-replicas", str(NEVER_ENOUGH), "--wait-timeout-ms", "50", "--test-any-namespace"
    )
    try:
        headers = {"EntroQ-Namespace": namespace}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as http:
            body = {"inserts": [{"queue": "jobs", "id": "a"}]}
            rest = await http.post("/api/v0/modify", json=body)
            assert rest.status_code == 503
            assert rest.json()["code"] == 14 and rest.json()["reason"] == "outcome_unknown"
            assert "not confirmed durable" in rest.json()["message"]
            connect = await http.post(
                "/api.EntroQ/Modify",
                json={"inserts": [{"queue": "jobs", "id": "b"}]},
                headers={"Connect-Protocol-Version": "1"},
            )
            assert connect.status_code == 503
            assert connect.json()["code"] == "unavailable" and connect.json()["reason"] == "outcome_unknown"
            # Reads do not wait: the two inserts are there.
            listed = await http.get("/api/v0/queues/jobs/tasks")
            assert sorted(t["id"] for t in listed.json()["tasks"]) == ["a", "b"]
            metrics = (await http.get("/metrics")).text
            assert 'outcome="outcome_unknown"' in metrics
        async with entroq_redis.connect(service.url, namespace=namespace) as eq:
            with pytest.raises(OutcomeUnknownError, match="not confirmed durable"):
                await eq.modify(inserts=[TaskData("jobs", id="c")])
    finally:
        assert service.stop() == 0


def test_serve_refuses_a_zero_wait_timeout(store_url: str) -> None:
    # The URL in the environment, as a secret should be (on the command line it draws a warning).
    serve = [sys.executable, "-m", "entroq_redis.cli", "serve", "--port", "0"]
    result = subprocess.run(
        [*serve, "--wait-replicas", "1", "--wait-timeout-ms", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENTROQ_REDIS_URL": store_url},
    )
    assert result.returncode == 2
    assert result.stderr == "entroq-redis serve: --wait-timeout-ms must be positive\n"
