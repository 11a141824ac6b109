"""Installs of entroq-redis into fresh venvs: a wheel built once from a copy of the source, and
venvs that either resolve its dependencies with pip (as a user's install does) or borrow this
environment's packages (fast, for checks of the package itself)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable

REPO = pathlib.Path(__file__).resolve().parent.parent

# What a source tree may hold that is not source: version control, venvs, caches, build
# output, a built docs site, node modules, a store's data. Explicit, so that the suite needs no
# git (it runs from an unpacked source archive as from a checkout).
LITTER_DIRS = frozenset(
    {
        ".git", ".venv", "venv", "build", "dist", "site", "node_modules", "__pycache__",
        ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "entroq-data",
    }
)  # fmt: skip
LITTER_SUFFIXES = (".egg-info", ".pyc", ".pyo")


def is_litter(path: pathlib.Path) -> bool:
    """A directory or file that is not source (a venv: any directory with a pyvenv.cfg)."""
    if path.name in LITTER_DIRS or path.name.endswith(LITTER_SUFFIXES):
        return True
    return path.is_dir() and (path / "pyvenv.cfg").exists()


def source_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Every file under ``root`` that is source (relative paths, sorted), litter left out."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        here = pathlib.Path(directory)
        subdirectories[:] = [name for name in subdirectories if not is_litter(here / name)]
        found += [(here / name).relative_to(root) for name in files if not is_litter(here / name)]
    return sorted(found)


def copy_checkout(target: pathlib.Path) -> pathlib.Path:
    """Copies the source (not the litter) so builds never write into the repository."""
    for name in source_files(REPO):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name, follow_symlinks=False)
    return target


def shipped_files(source: pathlib.Path) -> set[str]:
    """What the wheel must hold, from a walk of the tree: every file of the three package
    directories, under the name pyproject.toml's package-dir mapping gives it."""
    mapping = {
        "entroq_redis": "entroq_redis",
        "lua": "entroq_redis/lua",
        "server/entroq_redis_server": "entroq_redis_server",
    }
    files = source_files(source)
    return {
        f"{installed}/{name.relative_to(tree).as_posix()}"
        for tree, installed in mapping.items()
        for name in files
        if name.is_relative_to(tree)
    }


def build_wheel(work: pathlib.Path) -> pathlib.Path:
    """The wheel of a copy of the source (built without network: this environment's setuptools)."""
    source = copy_checkout(work / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (work / "dist").glob("entroq_redis-*.whl")
    return wheel


def borrowed_dependencies(target: pathlib.Path, leave_out: Iterable[str] = ()) -> pathlib.Path:
    """This environment's installed packages, minus entroq_redis itself and ``leave_out`` (import
    names: their modules and distribution metadata), as a folder of links.

    The fresh venvs below borrow their dependencies from here instead of downloading them;
    the copy of entroq_redis under test must be the only one they can import.
    """
    skipped = tuple(n.lower() for n in ("entroq_redis", "entroq-redis", "__editable__", *leave_out))
    target.mkdir()
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(skipped) or name.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def site_packages(python: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )


def make_venv(path: pathlib.Path, *, borrow: bool = True, leave_out: Iterable[str] = ()) -> pathlib.Path:
    """A fresh venv without pip or setuptools of its own; this environment's pip installs into
    it (``pip --python``). With ``borrow`` it sees this environment's packages (minus
    ``leave_out``), and builds use the borrowed setuptools; without, it holds only what is
    installed into it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    if borrow:
        borrowed = borrowed_dependencies(path.parent / (path.name + "-borrowed"), leave_out)
        (site_packages(python) / "borrowed.pth").write_text(f"{borrowed}\n")
    return python


def pip_install(python: pathlib.Path, *args: str, deps: bool = False) -> None:
    """``pip install`` into the venv of ``python``, from the indexes pip is configured with (the
    local mirror) when ``deps``; otherwise the named packages only."""
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    done = subprocess.run([*command, *([] if deps else ["--no-deps"]), *args], capture_output=True, text=True)
    assert done.returncode == 0, f"pip install {' '.join(args)}: {done.stderr[-3000:]}"


def installed(python: pathlib.Path) -> set[str]:
    """The distributions installed in (not borrowed by) the venv of ``python``, normalized names."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "list",
            "--format=freeze",
            "--path",
            str(site_packages(python)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return {line.split("==")[0].lower().replace("_", "-") for line in done.stdout.split()}
