"""The docker-compose sandbox, checked without a Docker engine.

- docker-compose.yml against the Compose Specification JSON schema. The schema is the copy of
  compose-spec's ``schema/compose-spec.json`` vendored by check-jsonschema (``--builtin-schema
  vendor.compose-spec``; check-jsonschema is in the test extra and refreshes the copy each release),
  so nothing here is hand-written and nothing is fetched at test time.
- What the issue asks of each service (AOF, noeviction, health checks, ports, volumes), and that the
  Prometheus and Grafana files the services mount exist and point at each other.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import yaml
from deploy_support import GRPC_PORT, assert_grpc_default

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def _check_jsonschema(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    try:
        importlib.import_module("check_jsonschema")
    except ImportError:
        pytest.fail(
            "check-jsonschema is not installed; it comes with the test extra: pip install '.[test]'",
            pytrace=False,
        )
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _published(service: dict[str, Any]) -> set[str]:
    return {str(port) for port in service.get("ports", [])}


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Host path -> container path of the service's bind mounts (short syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith((".", "/")):
            mounts[source] = target
    return mounts


def test_compose_file_matches_the_compose_specification() -> None:
    result = _check_jsonschema(COMPOSE)
    version = importlib.metadata.version("check-jsonschema")
    assert result.returncode == 0, f"check-jsonschema {version}:\n{result.stdout}{result.stderr}"


def test_the_schema_check_rejects_a_broken_file(tmp_path: pathlib.Path) -> None:
    """The validator really validates: a wrong type and an unknown key are reported."""
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["entroq"]["ports"] = {"api": 9100}
    broken["services"]["valkey"]["healthchek"] = {"test": ["CMD", "true"]}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = _check_jsonschema(path)
    assert result.returncode != 0
    assert "ports" in result.stdout and "healthchek" in result.stdout, result.stdout


def test_valkey_keeps_every_task(compose: dict[str, Any]) -> None:
    valkey = compose["services"]["valkey"]
    assert valkey["image"].startswith("valkey/valkey:")
    assert valkey["image"].split(":")[1] not in ("", "latest")
    command = [str(arg) for arg in valkey["command"]]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "valkey-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] in ("everysec", "always")
    assert options["--maxmemory-policy"] == "noeviction"
    assert "valkey-cli ping" in " ".join(valkey["healthcheck"]["test"])
    # Named volume (declared at the top level) on the data directory.
    volume, target = valkey["volumes"][0].split(":")[:2]
    assert volume in compose["volumes"] and target == options["--dir"] == "/data"
    # The store is reached over the compose network only.
    assert "ports" not in valkey


def test_service_is_built_here_and_talks_to_valkey(compose: dict[str, Any]) -> None:
    service = compose["services"]["entroq"]
    assert service["build"]["context"] == "."
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    assert service["command"] == ["--redis", "redis://valkey:6379/0"]
    assert service["depends_on"]["valkey"]["condition"] == "service_healthy"
    # The REST API and EntroQ's gRPC API (the image's default port, published as is).
    assert _published(service) == {"9100:9100", f"{GRPC_PORT}:{GRPC_PORT}"}
    # SIGTERM reaches the service (not PID 1 itself) and it gets longer than its graceful timeout.
    assert service["init"] is True
    assert int(service["stop_grace_period"].removesuffix("s")) > 10


def test_service_command_is_accepted_by_the_service(compose: dict[str, Any]) -> None:
    """The image's entrypoint plus the compose command parse with the real ``entroq-redis`` CLI."""
    from entroq_redis.cli import build_parser

    entrypoint = next(
        json.loads(line.split(None, 1)[1])
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("ENTRYPOINT ")
    )
    assert entrypoint[0] == "entroq-redis"
    argv = [*entrypoint[1:], *compose["services"]["entroq"]["command"]]
    args = build_parser().parse_args(argv)
    assert args.redis == "redis://valkey:6379/0"
    assert (args.host, args.port) == ("0.0.0.0", 9100)
    assert_grpc_default(argv)


def test_prometheus_scrapes_the_service(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert _published(prometheus) == {"9090:9090"}
    mounts = _bind_mounts(prometheus)
    config_target = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    source = next(src for src, target in mounts.items() if target == config_target)
    config = yaml.safe_load((ROOT / source).read_text())
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["entroq:9100"]


def test_grafana_provisioning_matches_the_compose_file(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert _published(grafana) == {"3000:3000"}
    mounts = {target: ROOT / source for source, target in _bind_mounts(grafana).items()}
    provisioning = mounts["/etc/grafana/provisioning"]

    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"

    (provider,) = yaml.safe_load((provisioning / "dashboards" / "entroq-redis.yml").read_text())["providers"]
    dashboards_dir = mounts[provider["options"]["path"]]
    assert (dashboards_dir / "entroq-redis.json").is_file()

    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_dir, _, home_file = home.rpartition("/")
    assert (mounts[home_dir] / home_file).is_file()


def test_every_bind_mount_exists_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source in _bind_mounts(service):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
