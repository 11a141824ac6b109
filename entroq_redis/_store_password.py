"""The embedded store's password: generated on first start, kept in ``store.password`` (0600).

Without it any local process could connect to the store's loopback port and read or write
every task, around the service's authorization. The file lives in the data directory so a
restart on the same directory reuses it (clients of this process get it through the URL);
a store without a data directory gets a fresh one each time.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
import stat

from ._errors import EntroQError

PASSWORD_FILE = "store.password"

# The password goes into the store's config and into redis:// URLs unescaped.
_USABLE = re.compile(r"[A-Za-z0-9_-]{32,256}")


class StorePasswordError(EntroQError):
    """The password file exists but cannot be trusted or used."""


def new_password() -> str:
    return secrets.token_urlsafe(32)


def load_or_create_password(data_dir: pathlib.Path) -> str:
    """The directory's password, created (0600, written atomically) if there is none yet.

    The caller holds the directory's lock, so no other process creates it at the same time.
    """
    path = data_dir / PASSWORD_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return _create(path)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise StorePasswordError(f"{path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise StorePasswordError(
                f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise StorePasswordError(
                f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"anyone who read it can reach every task; chmod 600 {path} (or remove it for a new password)"
            )
        password = file.read(1024).decode(errors="replace").strip()
    if not _USABLE.fullmatch(password):
        raise StorePasswordError(
            f"{path} does not hold a usable password (32 to 256 characters of A-Z a-z 0-9 _ -); "
            "remove it for a new one"
        )
    return password


def _create(path: pathlib.Path) -> str:
    password = new_password()
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # left by a crash of an earlier process with this PID
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{password}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    # Rename: a crash leaves either no password file or a complete one, never an empty one.
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return password
