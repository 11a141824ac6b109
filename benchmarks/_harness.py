"""Shared plumbing of the benchmark suite: the store, INFO snapshots, client processes, results.

The orchestrator (run.py) is synchronous: it starts the store, the service and the client
processes, reads the store's INFO around each measured window, and prints. Client processes
are plain subprocesses (``python benchmarks/_clients.py SPEC``) so that each one is a real,
separate interpreter and py-spy can be pointed at its PID.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis

from entroq_redis.testing import embedded_store

HERE = pathlib.Path(__file__).resolve().parent


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of unsorted values (q in 0..100); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The store counters a measured window is judged by."""

    at: float
    evalsha_calls: int
    evalsha_usec: int
    cpu_s: float  # used_cpu_user + used_cpu_sys: the whole server process
    used_memory: int

    def delta(self, later: Snapshot) -> dict[str, float]:
        return {
            "seconds": later.at - self.at,
            "evalsha_calls": later.evalsha_calls - self.evalsha_calls,
            "evalsha_usec": later.evalsha_usec - self.evalsha_usec,
            "cpu_usec": (later.cpu_s - self.cpu_s) * 1e6,
            "memory": later.used_memory - self.used_memory,
        }


class Store:
    """The store under test: the library's embedded Valkey, or any store given by URL."""

    def __init__(self, url: str, owner: contextlib.ExitStack | None = None) -> None:
        self.url = url
        self._owner = owner
        self.client = redis.Redis.from_url(url)
        # Only a store we started may have its statistics reset (CONFIG RESETSTAT), and
        # only its process is ours to watch (py-spy, CPU).
        self.owned = owner is not None
        self.pid: int | None = int(self.client.info("server")["process_id"]) if self.owned else None

    @classmethod
    def embedded(cls, data_dir: str) -> Store:
        """The library's embedded Valkey (entroq_redis.testing), stopped by ``close``."""
        owner = contextlib.ExitStack()
        url = owner.enter_context(embedded_store(data_dir))
        return cls(url, owner)

    def server_version(self) -> str:
        info = self.client.info("server")
        name = "valkey" if "valkey_version" in info else "redis"
        return f"{name} {info.get('valkey_version') or info.get('redis_version')}"

    def config(self) -> dict[str, Any]:
        info = self.client.info("persistence")
        return {"aof_enabled": info.get("aof_enabled"), "server": self.server_version()}

    def snapshot(self) -> Snapshot:
        stats = self.client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        cpu = self.client.info("cpu")
        memory = self.client.info("memory")
        return Snapshot(
            time.time(),
            int(stats["calls"]),
            int(stats["usec"]),
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            int(memory["used_memory"]),
        )

    def reset_latency(self) -> bool:
        """Starts the store's own per-command latency histogram afresh (our store only)."""
        if self.owned:
            self.client.config_resetstat()
        return self.owned

    def evalsha_latency(self) -> dict[str, float]:
        """Store-side EVALSHA latency percentiles (us) since the last reset: INFO latencystats."""
        stats = self.client.info("latencystats").get("latency_percentiles_usec_evalsha", {})
        return {"store_p50_us": stats.get("p50", math.nan), "store_p99_us": stats.get("p99", math.nan)}

    def clear(self, namespace: str) -> None:
        """Deletes every key of a namespace (never anything else: --url may be a shared store)."""
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{{{namespace}}}:*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                self.client.unlink(*batch)
                batch.clear()
        if batch:
            self.client.unlink(*batch)

    def close(self) -> None:
        self.client.close()
        if self._owner is not None:
            self._owner.close()


def start_clients(specs: Sequence[dict[str, Any]], scratch: str) -> list[subprocess.Popen[str]]:
    """Starts one client process per spec (see _clients.py); each writes its report to a file.
    Each spec gets the process's ``index`` (the doc loops key their docs by it)."""
    processes = []
    for index, spec in enumerate(specs):
        report = os.path.join(scratch, f"client-{os.getpid()}-{time.monotonic_ns()}-{index}.json")
        settings = {**spec, "report": report, "index": index}
        command = [sys.executable, str(HERE / "_clients.py"), json.dumps(settings)]
        process = subprocess.Popen(command, text=True)
        process.report = report  # type: ignore[attr-defined]
        processes.append(process)
    return processes


def collect(processes: Sequence[subprocess.Popen[str]], timeout: float = 600) -> list[dict[str, Any]]:
    """Waits for client processes and returns their JSON reports."""
    reports = []
    for process in processes:
        process.wait(timeout=timeout)
        if process.returncode != 0:
            raise RuntimeError(f"a client process failed (exit {process.returncode})")
        path = process.report  # type: ignore[attr-defined]
        with open(path, encoding="utf-8") as report:
            reports.append(json.load(report))
        os.unlink(path)
    return reports


def measure_window(store: Store, start_at: float, seconds: float) -> dict[str, float]:
    """Store counter deltas over the wall-clock window [start_at, start_at + seconds]."""
    time.sleep(max(0.0, start_at - time.time()))
    before = store.snapshot()
    time.sleep(max(0.0, start_at + seconds - time.time()))
    return before.delta(store.snapshot())


class Results:
    """Collects result rows: one JSON line each on stdout (and in a file), then a table."""

    def __init__(self, path: pathlib.Path | None, context: dict[str, Any]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = path
        self.context = context
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
            self._write({"part": "context", **context})

    def _write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, sort_keys=False)
        print(line, flush=True)
        if self.path is not None:
            self._file.write(line + "\n")
            self._file.flush()

    def add(self, part: str, **fields: Any) -> dict[str, Any]:
        row = {"part": part, **{k: _rounded(v) for k, v in fields.items()}}
        self.rows.append(row)
        self._write(row)
        return row

    def close(self) -> None:
        if self.path is not None:
            self._file.close()


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if value != value:  # nan
            return None
        return round(value, 1) if abs(value) >= 10 else round(value, 3)
    return value


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of the given columns (missing values blank)."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers ran on, and how busy the machine was when they started."""
    model = ""
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }
