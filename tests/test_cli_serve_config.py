"""``serve``'s configuration as an operator gives it: flags, ENTROQ_* variables, a TOML file
(--config), in that order of precedence; secrets from files; defaults and variables in --help;
--log-level/--log-format; test-only switches hidden; every setting checked at startup.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from conftest import ServiceProcess, start_service

from entroq_redis.cli import build_parser

TIMEOUT_S = 60


def clean_env(**extra: str) -> dict[str, str]:
    """No ENTROQ_* from the test session (its gRPC port and testing switch) unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    return {**env, **extra}


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entroq_redis.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )


def parse(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name in [n for n in os.environ if n.startswith("ENTROQ_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_parser().parse_args(["serve", *argv])


def test_flag_beats_environment_beats_file_beats_default(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('port = 7001\nmax_body_mb = 3.5\nnamespace = ["a", "b"]\nh2c = true\nworkers = 3\n')
    from_file = parse(["--config", str(config)], monkeypatch)
    assert (from_file.port, from_file.max_body_mb, from_file.namespace, from_file.h2c) == (
        7001,
        3.5,
        ["a", "b"],
        True,
    )
    env = {
        "ENTROQ_CONFIG": str(config),
        "ENTROQ_PORT": "7002",
        "ENTROQ_NAMESPACE": "c,d",
        "ENTROQ_H2C": "off",
    }
    from_env = parse([], monkeypatch, **env)
    assert (from_env.port, from_env.namespace, from_env.h2c, from_env.workers) == (7002, ["c", "d"], False, 3)
    flags = parse(["--port", "7003", "--namespace", "e", "--h2c"], monkeypatch, **env)
    assert (flags.port, flags.namespace, flags.h2c) == (7003, ["e"], True)
    assert flags.setting_sources["port"] == "command line"
    assert flags.setting_sources["workers"] == "config file"
    defaults = parse([], monkeypatch)
    assert (defaults.port, defaults.namespace, defaults.workers, defaults.log_level) == (
        9100,
        None,
        1,
        "info",
    )


def test_help_names_every_variable_and_default() -> None:
    done = serve("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for shown in (
        "--workers N service processes sharing the port [env ENTROQ_WORKERS; default 1]",
        "[env ENTROQ_FSYNC; default everysec]",
        "[env ENTROQ_MAX_BODY_MB; default 10]",
        "[env ENTROQ_METRICS_INTERVAL; default 15.0]",
        "[env ENTROQ_GRACEFUL_TIMEOUT; default 10.0]",
        "[env ENTROQ_DATA]",
        "[env ENTROQ_REDIS_URL]",
        "[env ENTROQ_REDIS_URL_FILE]",
        "[env ENTROQ_NAMESPACE (commas between values)]",
        "[env ENTROQ_REDIS_GRPC_PORT]",
        "--log-format {text,json}",
        "[env ENTROQ_UI]",
        "[env ENTROQ_UI_REFRESH]",
        "--config FILE",
    ):
        assert shown in text, shown
    assert "test-any-namespace" not in text and "TESTING" not in text


@pytest.mark.parametrize(
    "args, env, message",
    [
        (
            ["--redis", "http://127.0.0.1:6379/5"],
            {},
            "--redis http://127.0.0.1:6379/5: not a store URL (the scheme must be one of redis://, "
            "rediss://, unix://, redis+cluster://, rediss+cluster://)",
        ),
        (["--redis", "redis://127.0.0.1:99999/0"], {}, "the port is not a number from 0 to 65535"),
        (["--redis", "redis://127.0.0.1:6379/x"], {}, "the path must be a database number"),
        ([], {"ENTROQ_REDIS_URL": "https://:secret@h/0"}, "--redis https://:***@h/0: not a store URL"),
        ([], {"ENTROQ_PORT": "abc"}, "$ENTROQ_PORT: invalid int value: 'abc'"),
        ([], {"ENTROQ_FSYNC": "never"}, "$ENTROQ_FSYNC: 'never' is not one of everysec, always"),
        ([], {"ENTROQ_H2C": "maybe"}, "$ENTROQ_H2C: 'maybe' is not true or false"),
        ([], {"ENTROQ_UI": "maybe"}, "$ENTROQ_UI: 'maybe' is not true or false"),
        ([], {"ENTROQ_UI_REFRESH": "0"}, "--ui-refresh must be more than 0 seconds"),
        (["--port", "70000"], {}, "--port 70000: not a port number"),
        (["--opa-url", "localhost:8181"], {}, "--opa-url localhost:8181: not an http:// or https:// URL"),
        (["--max-body-mb", "0"], {}, "--max-body-mb must be positive"),
        (["--test-any-namespace"], {}, "--test-any-namespace is for the test suite only"),
        (["--config", "/no/such/file.toml"], {}, "--config /no/such/file.toml: No such file or directory"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], message: str, tmp_path: pathlib.Path
) -> None:
    done = serve("--port", "0", "--grpc-port", "0", *args, env=clean_env(**env))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("entroq-redis serve: ") and message in line, line
    assert "secret" not in line


def test_a_bad_config_file_is_one_line(tmp_path: pathlib.Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('port = 1\nshards = 3\nmax-body = "x"\n')
    done = serve("--config", str(unknown))
    assert (done.returncode, done.stderr) == (
        2,
        f"entroq-redis serve: --config {unknown}: no such option: max-body, shards (keys are serve's "
        "option names)\n",
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    done = serve("--config", str(broken))
    assert done.returncode == 2 and done.stderr.startswith(f"entroq-redis serve: --config {broken}: not TOML")
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('workers = "many"\n')
    done = serve("--config", str(wrong_type))
    assert (done.returncode, done.stderr) == (
        2,
        f"entroq-redis serve: {wrong_type}: workers: invalid int value: 'many'\n",
    )


def _namespace_served(service: ServiceProcess, name: str) -> bool:
    request = urllib.request.Request(service.url + "/api/v0/time", headers={"EntroQ-Namespace": name})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False


def test_a_service_configured_by_file_environment_and_flag(
    store_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real service: the store URL from a secret file named in the TOML file, JSON logs from
    the environment, namespaces from the command line."""
    url_file = tmp_path / "store-url"
    url_file.write_text(store_url + "\n")
    config = tmp_path / "serve.toml"
    config.write_text(f'redis-file = "{url_file}"\nnamespace = ["from-file"]\nlog-format = "text"\n')
    monkeypatch.setenv("ENTROQ_LOG_FORMAT", "json")
    service = start_service(None, "--config", str(config), "--namespace", "from-flag")
    try:
        assert _namespace_served(service, "from-flag")
        assert not _namespace_served(service, "from-file")
    finally:
        assert service.stop() == 0
    lines = [line for line in service.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert "info" in {r["level"] for r in records}


def test_the_dashboard_switch_and_refresh_from_file_environment_and_flag(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("ui = false\nui-refresh = 0.5\n")
    from_file = parse(["--config", str(config)], monkeypatch)
    assert (from_file.ui, from_file.ui_refresh) == (False, 0.5)
    env = {"ENTROQ_CONFIG": str(config), "ENTROQ_UI": "on", "ENTROQ_UI_REFRESH": "1.5"}
    from_env = parse([], monkeypatch, **env)
    assert (from_env.ui, from_env.ui_refresh) == (True, 1.5)
    assert from_env.setting_sources["ui"] == "environment"
    flags = parse(["--no-ui", "--ui-refresh", "3"], monkeypatch, **env)
    assert (flags.ui, flags.ui_refresh) == (False, 3.0)
    assert (flags.setting_sources["ui"], flags.setting_sources["ui_refresh"]) == ("command line",) * 2


def _dashboard_served(service: ServiceProcess) -> bool:
    try:
        with urllib.request.urlopen(service.url + "/ui", timeout=TIMEOUT_S):
            return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False


def test_a_service_without_the_dashboard_by_environment_and_with_it_by_flag(
    store_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTROQ_UI", "off")
    off = start_service(store_url)
    try:
        assert not _dashboard_served(off)
        assert _namespace_served(off, "eq")
    finally:
        assert off.stop() == 0
    config = tmp_path / "serve.toml"
    config.write_text("ui = false\n")
    on = start_service(store_url, "--config", str(config), "--ui")
    try:
        assert _dashboard_served(on)
    finally:
        assert on.stop() == 0


def test_log_level_warning_leaves_info_out(store_url: str) -> None:
    chatty = start_service(store_url)
    assert chatty.stop() == 0
    assert " INFO " in chatty.log()
    quiet = start_service(store_url, "--log-level", "warning")
    assert quiet.stop() == 0
    assert " INFO " not in quiet.log()


def test_cli_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's built-in defaults are ServiceSettings' (the service's own), one by one."""
    from entroq_redis_server import ServiceSettings

    args = parse([], monkeypatch)
    settings = ServiceSettings(store_url="")
    assert (args.host, args.port, args.workers) == (settings.host, settings.port, settings.workers)
    assert int(args.max_body_mb * 1024 * 1024) == settings.max_body_bytes
    assert (args.claim_wait_cap, args.allow_evicting_store) == (
        settings.claim_wait_cap_s,
        settings.allow_evicting_store,
    )
    assert (args.metrics_interval, args.metrics_max_queues, args.graceful_timeout) == (
        settings.metrics_interval_s,
        settings.metrics_max_queues,
        settings.graceful_timeout_s,
    )
    assert (args.value_encoding_default, args.log_level, args.log_format) == (
        settings.value_encoding_default,
        settings.log_level,
        settings.log_format,
    )
    assert (args.test_any_namespace, tuple(args.namespace or ["eq"])) == (
        settings.test_any_namespace,
        settings.namespaces,
    )
    assert (args.ui, args.ui_refresh) == (settings.ui, settings.ui_refresh_s)
