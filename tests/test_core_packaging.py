"""The package works installed from a wheel and as an editable install (scripts included)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SMOKE = pathlib.Path(__file__).parent / "programs" / "smoke.py"


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
