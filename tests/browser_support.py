"""A real headless Chromium for the dashboard's browser tests: Debian's ``chromium`` package,
installed with apt by the test setup when missing, driven by Playwright for Python with
``executable_path`` set to it. Playwright's own browser download (``playwright install``) is
never used: it fetches a browser build from outside the package registries.

Playwright's sync API is used from plain (non-trio) test functions; the service under test is
a separate process, and the tests reach the store through :func:`run_trio`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio

T = TypeVar("T")

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
APT_LOCK = pathlib.Path("/tmp/entroq-redis-tests-chromium.lock")


def chromium_path() -> str:
    """Debian's chromium binary, installed with apt first if it is missing.

    Skips the calling test only when there is no apt-get (not a Debian-like machine); a failed
    install fails it with apt's own output.
    """
    found = _installed()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("no chromium and no apt-get to install Debian's chromium package")
    # Two test sessions on one machine: the second waits for the first's install.
    with open(APT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _installed()
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "install", "-y", "-q", "--no-install-recommends", "chromium"]
        done = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
        if done.returncode != 0:
            # The package lists may be missing or stale (a fresh machine): update them once, retry.
            subprocess.run([apt, "update", "-q"], capture_output=True, text=True, timeout=900, env=env)
            done = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install chromium failed:\n{done.stdout}\n{done.stderr}")
    found = _installed()
    if not found:
        raise RuntimeError("apt-get installed chromium but no chromium binary is on the PATH")
    return found


def _installed() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@contextlib.contextmanager
def open_browser() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``) for the block."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root (CI does), where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


def run_trio(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Runs an async function (library calls on the store) from a sync test."""
    return trio.run(function, *args)
