"""The package works installed from a wheel and as an editable install (scripts included)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import zipfile

import pytest
from install_support import REPO, copy_checkout, make_venv, pip_install, shipped_files, site_packages

SMOKE = pathlib.Path(__file__).parent / "programs" / "smoke.py"


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
def test_wheel_install_carries_the_scripts(
    tmp_path: pathlib.Path, entroq_wheel: pathlib.Path, store_url: str, namespace: str
) -> None:
    # Every file of the package directories in the tree is in the wheel, and nothing else is.
    with zipfile.ZipFile(entroq_wheel) as archive:
        packaged = {name for name in archive.namelist() if ".dist-info/" not in name}
    assert packaged == shipped_files(REPO)
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(entroq_wheel))
    result = smoke(python, store_url, namespace, cwd=tmp_path)
    venv = str(tmp_path / "venv")
    assert str(result["package"]).startswith(venv)
    assert str(result["lua"]).startswith(venv) and str(result["lua"]).endswith("entroq_redis/lua")
    assert result["value"] == "\x00smoke" and result["left"] == {}
    # No generic top-level "server" module lands in site-packages.
    site = site_packages(python)
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
