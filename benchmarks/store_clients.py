"""Store clients side by side: 16 concurrent EVALSHA of a trivial script from one process.

    python benchmarks/store_clients.py                # embedded Valkey, 3 s per client
    python benchmarks/store_clients.py --seconds 1 --url redis://HOST:PORT/0

Each client runs in a process of its own (one at a time, in turns), with 16 tasks each calling
``return 1`` (one key) in a loop; over a window after a warm-up it counts the calls and the
process's CPU time. Clients:

- ``glide-script``: valkey-glide's ``invoke_script`` (EVALSHA, loads the script on NOSCRIPT);
- ``glide-evalsha``: valkey-glide's ``custom_command(["EVALSHA", ...])``;
- ``coredis-direct``: this project's path (``RedisBackend._evalsha``): EVALSHA built with
  ``connection.create_request`` on a pooled connection, the connection released before the
  reply is awaited;
- ``coredis-script``: coredis's own ``Script`` objects (``register_script``).

On trio for all of them, on asyncio + uvloop for glide-script and the two coredis paths. Prints
one JSON line per client and a table; nothing is asserted (a program, not a test).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any

import anyio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

SCRIPT = "return 1"
KEY = "{bench-store-clients}:k"
CONCURRENCY = 16
RUNS = [
    ("glide-script", "trio"),
    ("glide-evalsha", "trio"),
    ("coredis-direct", "trio"),
    ("coredis-script", "trio"),
    ("glide-script", "uvloop"),
    ("coredis-direct", "uvloop"),
    ("coredis-script", "uvloop"),
]


def glide_config(url: str, **extra: Any) -> Any:
    """valkey-glide's configuration for a redis:// URL (host, port, password, database)."""
    from glide import GlideClientConfiguration, NodeAddress, ServerCredentials

    parts = urllib.parse.urlsplit(url)
    credentials = None
    if parts.password:
        credentials = ServerCredentials(
            password=urllib.parse.unquote(parts.password), username=parts.username or None
        )
    database = int(parts.path.lstrip("/") or 0)
    return GlideClientConfiguration(
        [NodeAddress(parts.hostname or "localhost", parts.port or 6379)],
        credentials=credentials,
        database_id=database or None,
        **extra,
    )


async def _glide_caller(url: str, kind: str) -> tuple[Any, Any]:
    from glide import GlideClient, Script

    client = await GlideClient.create(glide_config(url))
    script = Script(SCRIPT)
    if kind == "glide-script":

        async def call() -> Any:
            return await client.invoke_script(script, keys=[KEY])

    else:
        sha = script.get_hash()
        await client.custom_command(["SCRIPT", "LOAD", SCRIPT])

        async def call() -> Any:
            return await client.custom_command(["EVALSHA", sha, "1", KEY])

    return call, client.close


async def _coredis_caller(url: str, kind: str) -> tuple[Any, Any]:
    import coredis
    import coredis.exceptions

    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False)
    await client.__aenter__()
    script = client.register_script(SCRIPT)
    await client.script_load(SCRIPT)
    if kind == "coredis-script":

        async def call() -> Any:
            return await script(keys=[KEY], args=[])

    else:
        pool = client.connection_pool

        # entroq_redis._redis_backend.RedisBackend._evalsha, without its durability step.
        async def call() -> Any:
            for attempt in range(2):
                connection = await pool.get_connection()
                try:
                    request = connection.create_request(b"EVALSHA", script.sha, 1, KEY, decode=False)
                finally:
                    pool.release(connection)
                try:
                    return await request
                except coredis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    await client.script_load(SCRIPT)
            raise AssertionError("unreachable")

    async def close() -> None:
        await client.__aexit__(None, None, None)

    return call, close


async def child(kind: str, url: str, seconds: float, warmup: float) -> dict[str, Any]:
    maker = _glide_caller if kind.startswith("glide") else _coredis_caller
    call, close = await maker(url, kind)
    if await call() != 1:
        raise RuntimeError(f"{kind}: the script did not return 1")
    counts = [0]
    cpu: list[float] = []
    start = time.perf_counter() + warmup
    end = start + seconds

    async def caller() -> None:
        perf = time.perf_counter
        while (now := perf()) < end:
            await call()
            if now >= start:
                counts[0] += 1

    async def clock() -> None:
        await anyio.sleep(start - time.perf_counter())
        cpu.append(time.process_time())
        await anyio.sleep(end - time.perf_counter())
        cpu.append(time.process_time())

    async with anyio.create_task_group() as group:
        group.start_soon(clock)
        for _ in range(CONCURRENCY):
            group.start_soon(caller)
    await close()
    return {"calls": counts[0], "seconds": seconds, "cpu_s": cpu[1] - cpu[0]}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("valkey-glide", "coredis", "trio", "anyio", "uvloop")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="store to use (default: an embedded Valkey in a temporary directory)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per client")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--child", nargs=2, metavar=("CLIENT", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, loop = args.child
        if loop == "trio":
            report = anyio.run(child, kind, args.url, args.seconds, args.warmup, backend="trio")
        else:
            options = {"use_uvloop": loop == "uvloop"}
            report = anyio.run(
                child, kind, args.url, args.seconds, args.warmup, backend="asyncio", backend_options=options
            )
        print(json.dumps(report), flush=True)
        return 0

    from _harness import Store, machine, table

    with tempfile.TemporaryDirectory(prefix="entroq-store-clients-") as scratch:
        store = Store(args.url) if args.url else Store.embedded(str(pathlib.Path(scratch) / "store"))
        try:
            print(
                json.dumps({"part": "context", **machine(), **_versions(), "server": store.server_version()})
            )
            rows = []
            for kind, loop in RUNS:
                command = [
                    sys.executable, __file__, "--child", kind, loop, "--url", store.url,
                    "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                ]  # fmt: skip
                before = store.snapshot()
                done = subprocess.run(command, capture_output=True, text=True, timeout=120 + args.seconds)
                delta = before.delta(store.snapshot())
                if done.returncode != 0:
                    row = {"client": kind, "loop": loop, "error": done.stderr.strip().splitlines()[-1:]}
                else:
                    report = json.loads(done.stdout.strip().splitlines()[-1])
                    calls = report["calls"]
                    row = {
                        "client": kind,
                        "loop": loop,
                        "calls_per_s": round(calls / report["seconds"], 1),
                        "process_cpu_us_per_call": round(report["cpu_s"] * 1e6 / calls, 1),
                        "process_cpu_cores": round(report["cpu_s"] / report["seconds"], 2),
                        # Over the whole child (warm-up and connecting included): indicative.
                        "store_cpu_us_per_evalsha": round(
                            delta["cpu_usec"] / max(1, delta["evalsha_calls"]), 1
                        ),
                    }
                print(json.dumps({"part": "store-clients", **row}), flush=True)
                rows.append(row)
        finally:
            store.close()
    columns = ["client", "loop", "calls_per_s", "process_cpu_us_per_call", "process_cpu_cores",
               "store_cpu_us_per_evalsha", "error"]  # fmt: skip
    print()
    print(table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
