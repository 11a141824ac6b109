"""The package works installed from a wheel and as an editable install (scripts included)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SMOKE = pathlib.Path(__file__).parent / "programs" / "smoke.py"


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


def borrowed_dependencies(target: pathlib.Path) -> pathlib.Path:
    """This environment's installed packages, minus entroq_redis itself, as a folder of links.

    The fresh venvs below borrow their dependencies from here instead of downloading them;
    the copy of entroq_redis under test must be the only one they can import.
    """
    target.mkdir()
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(("entroq_redis", "entroq-redis", "__editable__")) or name.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def make_venv(path: pathlib.Path) -> pathlib.Path:
    """A fresh venv without pip or setuptools of its own, borrowing this environment's packages.

    This environment's pip installs into it (``pip --python``), and builds use the
    borrowed setuptools.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    borrowed = borrowed_dependencies(path.parent / (path.name + "-borrowed"))
    pathlib.Path(own_site, "borrowed.pth").write_text(f"{borrowed}\n")
    return python


def pip_install(python: pathlib.Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", *args],
        check=True,
        capture_output=True,
    )


def smoke(python: pathlib.Path, store_url: str, namespace: str, cwd: pathlib.Path) -> dict[str, object]:
    done = subprocess.run(
        [str(python), str(SMOKE), store_url, namespace],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(300)
def test_wheel_install_carries_the_scripts(tmp_path: pathlib.Path, store_url: str, namespace: str) -> None:
    source = copy_checkout(tmp_path / "src")
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
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("entroq_redis-*.whl")
    # Every file of the package directories in the tree is in the wheel, and nothing else is.
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if ".dist-info/" not in name}
    assert packaged == shipped_files(source)
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(wheel))
    result = smoke(python, store_url, namespace, cwd=tmp_path)
    venv = str(tmp_path / "venv")
    assert str(result["package"]).startswith(venv)
    assert str(result["lua"]).startswith(venv) and str(result["lua"]).endswith("entroq_redis/lua")
    assert result["value"] == "\x00smoke" and result["left"] == {}
    # No generic top-level "server" module lands in site-packages.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert not pathlib.Path(site, "server").exists()
    assert pathlib.Path(site, "entroq_redis_server").is_dir()
    # The dashboard's templates and vendored scripts ship as package data (server/entroq_redis_server/ui).
    ui = pathlib.Path(site, "entroq_redis_server", "ui")
    for shipped in ("templates/base.html", "static/dashboard.js", "static/vendor/htmx-2.0.11.min.js"):
        assert (ui / shipped).is_file(), shipped


@pytest.mark.timeout(300)
def test_editable_install_finds_the_scripts(tmp_path: pathlib.Path, store_url: str, namespace: str) -> None:
    source = copy_checkout(tmp_path / "src")
    python = make_venv(tmp_path / "venv")
    pip_install(python, "--no-build-isolation", "-e", str(source))
    result = smoke(python, store_url, namespace, cwd=tmp_path)
    assert str(result["package"]).startswith(str(source))
    assert pathlib.Path(str(result["lua"])).resolve() == (source / "lua").resolve()
    assert result["value"] == "\x00smoke" and result["left"] == {}
