"""One store per data directory: a lock on ``store.lock`` that the store process itself holds.

Two stores appending to one AOF each serve their own view and interleave their writes in
the file; after a restart both views are merged. So the directory is locked (flock) before a
store starts, and the locked descriptor is handed to valkey-server: from then on the lock
lives exactly as long as the store process (and the children it forks to rewrite the AOF,
which write in the directory too), even if that process is orphaned, and the kernel drops
it when the last of them exits, so a crash never leaves a stale lock behind.

The lock file also says who holds it (one line: ``PID what``), so a refused second store
can name the holder. The file is never removed: removing a lock file while another process
waits on it would let two holders lock two different files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib

from ._errors import EntroQError

LOCK_FILE = "store.lock"


class DataDirectoryInUseError(EntroQError):
    """Another process holds the data directory: one store per directory."""


class DataDirectoryLock:
    """The held lock of one data directory; ``fd`` is the descriptor to hand to the store."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        """Locks ``data_dir`` or raises DataDirectoryInUseError naming the holder."""
        self.path = data_dir / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise DataDirectoryInUseError(
                f"data directory {data_dir} is in use by {holder}: one store per data directory; "
                "stop that process or use another directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("the data directory lock was released")
        return self._fd

    def record_holder(self, pid: int, what: str) -> None:
        """Writes who holds the lock, for the message a refused second store prints."""
        line = f"{pid} {what}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, line, 0)

    def release(self) -> None:
        """Closes this process's descriptor; a store that inherited it keeps the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _describe_holder(fd: int) -> str:
    """``PID <n> (<what>)`` from the lock file, checked against the running processes."""
    try:
        recorded = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        recorded = ""
    pid_text, _, what = recorded.partition(" ")
    if not pid_text.isdigit():
        return "a process that has not recorded itself yet (a store starting right now)"
    pid = int(pid_text)
    if not _running(pid):
        return f"PID {pid} ({what}), as recorded, though no such process is visible here"
    return f"PID {pid} ({what})"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True
