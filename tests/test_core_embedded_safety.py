"""The embedded store's data safety: one store per data directory, the store dies with its
owner, and only holders of its password reach it.

Every store here is a real valkey-server; the ``serve`` tests run real ``entroq-redis
serve`` processes and kill them as an operator (or the OOM killer) would.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
import redis
import trio
from conftest import ServiceProcess, start_service

from entroq_redis import TaskData, connect
from entroq_redis._embedded import open_embedded_store

# Named here, not imported, so that these tests run (and fail) against a store without them.
LOCK_FILE = "store.lock"
PASSWORD_FILE = "store.password"
SERVE = [sys.executable, "-m", "entroq_redis.cli", "serve", "--port", "0"]


def store_of(service: ServiceProcess) -> psutil.Process:
    """The valkey-server a ``serve`` process started (its only such child)."""
    stores = [p for p in psutil.Process(service.process.pid).children() if p.name() == "valkey-server"]
    assert len(stores) == 1, stores
    return stores[0]


def store_port(store: psutil.Process) -> int:
    listening = [c.laddr.port for c in store.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    assert len(listening) == 1, listening
    return int(listening[0])


def gone(pid: int) -> bool:
    """True once the process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_gone(pid: int, limit_s: float = 30) -> bool:
    deadline = time.monotonic() + limit_s
    # Polling is the only way to watch a process this test is not the parent of.
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL a serve that should not be running, and whatever store it started."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
    process.kill()
    process.wait()


def run_refused_serve(data: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Runs a second ``serve`` on ``data``; it must exit by itself (a serving one is killed)."""
    process = subprocess.Popen(
        [*SERVE, "--data", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        stdout, stderr = process.communicate()
        pytest.fail(f"the second serve kept running on the same data directory: {stdout}{stderr[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def insert(service: ServiceProcess, queue: str, task_id: str) -> None:
    answer = httpx.post(service.url + "/api/v0/modify", json={"inserts": [{"queue": queue, "id": task_id}]})
    assert answer.status_code == 200, answer.text


def task_ids(service: ServiceProcess, queue: str) -> list[str]:
    answer = httpx.get(service.url + "/api/v0/tasks", params={"queue": queue})
    assert answer.status_code == 200, answer.text
    return [task["id"] for task in answer.json()["tasks"]]


@pytest.fixture
def data(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "data"


@pytest.fixture
def first(data: pathlib.Path) -> Iterator[ServiceProcess]:
    """A ``serve`` on ``data`` holding one task, stopped (or already killed) afterwards."""
    service = start_service(None, "--data", str(data))
    try:
        insert(service, "kept", "k1")
        yield service
    finally:
        if service.process.poll() is None:
            service.stop()
        elif service.process.stdout:
            service.process.stdout.close()


def test_a_second_serve_on_the_same_data_refuses_in_one_line_naming_the_holder(
    first: ServiceProcess, data: pathlib.Path
) -> None:
    store = store_of(first)
    refused = run_refused_serve(data)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"PID {store.pid}" in lines[0] and "valkey-server" in lines[0] and str(data) in lines[0], lines
    assert "embedded store" not in refused.stdout, "the refused serve started nothing"
    # The first keeps serving its store, which the refused one never touched.
    insert(first, "kept", "k2")
    assert sorted(task_ids(first, "kept")) == ["k1", "k2"]
    assert store_of(first).pid == store.pid


def test_the_lock_is_held_by_the_store_process_itself(first: ServiceProcess, data: pathlib.Path) -> None:
    store = store_of(first)
    lock_path = str(data / LOCK_FILE)
    assert lock_path in {f.path for f in store.open_files()}
    # serve let go of its own descriptor: the lock lives exactly as long as the store.
    assert lock_path not in {f.path for f in psutil.Process(first.process.pid).open_files()}
    with open(lock_path) as lock, pytest.raises(BlockingIOError):
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_kill_9_of_serve_takes_its_store_down_and_the_next_serve_keeps_the_tasks(
    first: ServiceProcess, data: pathlib.Path
) -> None:
    store = store_of(first)
    first.stop(signal.SIGKILL)
    assert wait_until_gone(store.pid), "the store outlived its serve"
    password = (data / PASSWORD_FILE).read_text()
    again = start_service(None, "--data", str(data))
    try:
        assert task_ids(again, "kept") == ["k1"]
        assert (data / PASSWORD_FILE).read_text() == password, "a restart reuses the password"
    finally:
        assert again.stop() == 0


def test_an_orphaned_store_still_holds_the_directory(first: ServiceProcess, data: pathlib.Path) -> None:
    store = store_of(first)
    port, password = store_port(store), (data / PASSWORD_FILE).read_text().strip()
    client = redis.Redis(port=port, password=password)
    # A store running a script acts on SIGTERM only once the script ends: while one runs,
    # the store outlives its parent's death as an orphan, as if no signal had come.
    client.config_set("busy-reply-threshold", 100)
    busy = socket.create_connection(("127.0.0.1", port))
    try:
        busy.sendall(resp("AUTH", password) + resp("EVAL", "while true do end", "0"))
        wait_until_busy(client)
        first.stop(signal.SIGKILL)
        assert not gone(store.pid) and store.ppid() != first.process.pid
        refused = run_refused_serve(data)
        assert refused.returncode == 1
        assert f"PID {store.pid}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        with open(data / LOCK_FILE) as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        with contextlib.suppress(redis.RedisError):
            client.script_kill()
        busy.close()
        client.close()
    # The script over, the store acts on the parent-death signal that was waiting for it.
    assert wait_until_gone(store.pid), "the orphaned store kept running after its parent died"
    again = start_service(None, "--data", str(data))
    try:
        assert task_ids(again, "kept") == ["k1"]
    finally:
        assert again.stop() == 0


def resp(*words: str) -> bytes:
    """One command in the store's wire protocol."""
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in words)


def wait_until_busy(client: redis.Redis, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            client.ping()
        except redis.ResponseError as exc:
            if "BUSY" in str(exc):
                return
            raise
        time.sleep(0.02)
    pytest.fail("the store never got busy with the script")


def test_the_store_refuses_clients_without_the_password_and_ps_never_shows_it(
    data: pathlib.Path,
) -> None:
    process = subprocess.Popen(
        [*SERVE, "--data", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("listening on" in line for line in printed) and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                printed.append(process.stdout.readline())
            assert process.poll() is None, process.stderr.read()
        assert any("listening on" in line for line in printed), printed
        (store,) = [p for p in psutil.Process(process.pid).children() if p.name() == "valkey-server"]
        password_file = data / PASSWORD_FILE
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 32
        port = store_port(store)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="guess").ping()
        assert redis.Redis(port=port, password=password).ping()
        # Not on a command line (ps), not in the environment, not printed.
        assert password not in "\0".join(store.cmdline())
        assert password not in "\0".join(f"{k}={v}" for k, v in store.environ().items())
        assert password not in "\0".join(psutil.Process(process.pid).cmdline())
        assert not any(password in line for line in printed), printed
        assert any(re.search(r"embedded store at redis://127\.0\.0\.1:\d+ ", line) for line in printed), (
            printed
        )
        # Nothing else in the data directory carries it.
        for path in data.rglob("*"):
            if path.is_file() and path != password_file:
                assert password.encode() not in path.read_bytes(), path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            raise
    assert process.returncode == 0


async def test_restart_on_the_same_directory_reuses_the_password_and_keeps_data(
    tmp_path: pathlib.Path,
) -> None:
    async with open_embedded_store(tmp_path, fsync="always") as store, connect(store.url) as eq:
        first_password = store.password
        await eq.modify(inserts=[TaskData("r", id="r1")])
    assert stat.S_IMODE((tmp_path / PASSWORD_FILE).stat().st_mode) == 0o600
    async with open_embedded_store(tmp_path) as store, connect(store.url) as eq:
        assert store.password == first_password
        assert store.url == f"redis://:{first_password}@127.0.0.1:{store.port}"
        assert [t.id for t in await eq.tasks("r")] == ["r1"]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=store.port).ping()


async def test_a_temporary_store_gets_a_fresh_password() -> None:
    async with open_embedded_store() as one, open_embedded_store() as two:
        assert one.password and two.password and one.password != two.password
        for store in (one, two):
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=store.port).ping()
            assert redis.Redis.from_url(store.url).ping()


async def test_a_second_store_on_a_directory_in_use_is_refused(tmp_path: pathlib.Path) -> None:
    from entroq_redis._data_lock import DataDirectoryInUseError

    async with open_embedded_store(tmp_path) as store:
        with pytest.raises(DataDirectoryInUseError, match=f"PID {store.pid} .*valkey-server"):
            async with open_embedded_store(tmp_path):
                pass
        # The refused attempt left the running store and its password alone.
        assert redis.Redis.from_url(store.url).ping()


async def test_a_password_file_others_can_read_is_refused(tmp_path: pathlib.Path) -> None:
    from entroq_redis._store_password import StorePasswordError

    async with open_embedded_store(tmp_path):
        pass
    (tmp_path / PASSWORD_FILE).chmod(0o644)
    with pytest.raises(StorePasswordError, match="chmod 600"):
        async with open_embedded_store(tmp_path):
            pass
    assert not (tmp_path / LOCK_FILE).exists() or _lock_is_free(tmp_path / LOCK_FILE)


def _lock_is_free(path: pathlib.Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


async def test_the_store_is_not_tied_to_a_worker_thread(tmp_path: pathlib.Path) -> None:
    """The parent-death signal fires when the *thread* that forked the store ends. A worker
    thread (that the pool retires after about 10 s idle) would stop the store under its
    owner; the store must be forked on the caller's own thread."""
    async with open_embedded_store(tmp_path) as store:
        workers = {t.native_id for t in threading.enumerate() if t.name.startswith("Trio thread")}
        # Stopped, the store keeps any signal pending, where this test can see it.
        psutil.Process(store.pid).suspend()
        try:
            with trio.fail_after(60):
                # A thread's entry leaves /proc only after the kernel sent the signal.
                while workers & {int(tid) for tid in os.listdir("/proc/self/task")}:  # noqa: ASYNC110
                    await trio.sleep(0.2)
            assert not pending_signals(store.pid) & (1 << (signal.SIGTERM - 1)), "the store got SIGTERM"
        finally:
            psutil.Process(store.pid).resume()
        assert redis.Redis.from_url(store.url).ping()


def pending_signals(pid: int) -> int:
    """The signals waiting for a process (the process-wide set, as /proc shows it)."""
    with open(f"/proc/{pid}/status") as status:
        (line,) = [line for line in status if line.startswith("ShdPnd:")]
    return int(line.split()[1], 16)
