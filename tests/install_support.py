"""Installs of entroq-redis into fresh venvs: a wheel built once from a copy of the source, and
venvs that either resolve its dependencies with pip (as a user's install does) or borrow this
environment's packages (fast, for checks of the package itself)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable

REPO = pathlib.Path(__file__).resolve().parent.parent

# What a source tree outside git may hold that is not source (build litter, venvs, caches).
LITTER = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "entroq-data",
)


def copy_checkout(target: pathlib.Path) -> pathlib.Path:
    """Copies the tracked and new files (not build litter) so builds never write into the repo.

    In a git checkout git says which files those are; in an unpacked source archive (no
    ``.git``) the tree is copied without the usual litter.
    """
    if not (REPO / ".git").exists():
        shutil.copytree(REPO, target, ignore=LITTER, dirs_exist_ok=True, symlinks=True)
        return target
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in listed:
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


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
