"""Secrets off the command line: store URLs and tokens from the environment or a file, warnings
for a secret given as an argument, and passwords masked wherever a URL is printed or logged.

Every local user can read every process's arguments (``ps``, ``/proc/PID/cmdline``). The
service runs as a real process against the session's store, reached through a user of its
own with a password (``ACL SETUSER``, removed afterwards), so the URL really holds a secret.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
import redis
from authz_support import ALICE, REGO_FLAGS
from conftest import ServiceProcess, start_service

from entroq_redis._masked_url import masked_url, url_has_secret


@pytest.fixture(scope="module")
def password() -> str:
    return "pw-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def password_url(store_url: str, sync_redis: redis.Redis, password: str) -> Iterator[str]:
    """The session's store as a user of its own whose password is ``password``."""
    user = "entroq-test-" + secrets.token_hex(4)
    sync_redis.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    parts = urllib.parse.urlsplit(store_url)
    host = parts.netloc.rpartition("@")[2]
    try:
        yield urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))
    finally:
        sync_redis.execute_command("ACL", "DELUSER", user)


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ENTROQ_ setting, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}, **extra}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "entroq_redis.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env or _clean_env())


def _command_lines(pid: int) -> dict[int, str]:
    """The command line of ``pid`` and of each of its descendants (service workers, policy
    children), as /proc shows them to any local user."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    lines, pending = {}, [pid]
    while pending:
        current = pending.pop()
        try:
            lines[current] = (
                (pathlib.Path("/proc") / str(current) / "cmdline").read_bytes().decode(errors="replace")
            )
        except OSError:
            continue
        pending.extend(children.get(current, []))
    return lines


def _serves_on_that_store(service: ServiceProcess, sync_redis: redis.Redis) -> None:
    """The service inserts through the store the test named (the task is there)."""
    namespace = "t" + secrets.token_hex(6)
    headers = {"EntroQ-Namespace": namespace, "User-Agent": "entroq-redis-tests"}
    response = httpx.post(
        f"{service.url}/api/v0/modify", json={"inserts": [{"queue": "/q", "value": "aGk="}]}, headers=headers
    )
    assert response.status_code == 200, response.text
    keys = list(sync_redis.scan_iter(match="{" + namespace + "}:*"))
    assert keys
    sync_redis.delete(*keys)


def _stop(service: ServiceProcess) -> str:
    assert service.stop() == 0
    return service.log()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:p:w@h/2", "rediss://user:***@h/2"),
        ("redis://lonely@h", "redis://***@h"),
        ("unix://:pw@/run/valkey.sock", "unix://:***@/run/valkey.sock"),
        ("unix:///run/v.sock?db=1&password=pw", "unix:///run/v.sock?db=1&password=***"),
        ("redis+cluster://u:pw@node:7000", "redis+cluster://u:***@node:7000"),
        ("https://u:pw@svc/x?q=a@b", "https://u:***@svc/x?q=a@b"),
        ("redis://:p/w@h:1", "redis://***@h:1"),  # unescaped '/' in the password
        ("redis://:p?w@h:1", "redis://***@h:1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("http://127.0.0.1:9100", "http://127.0.0.1:9100"),
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown
    assert url_has_secret(url) == (url != shown)


def test_serve_reads_the_store_url_from_the_environment(
    password_url: str, password: str, sync_redis: redis.Redis
) -> None:
    # start_service hands the store URL over in $ENTROQ_REDIS_URL, never on the command line.
    service = start_service(password_url, "--test-any-namespace", "--workers", "2")
    try:
        _serves_on_that_store(service, sync_redis)
        lines = _command_lines(service.process.pid)
        assert len(lines) >= 3  # the parent and its two workers
        assert not [line for line in lines.values() if password in line], lines
    finally:
        log = _stop(service)
    assert password not in log and "warning" not in log


def test_serve_reads_the_store_url_from_a_file(
    password_url: str, password: str, sync_redis: redis.Redis, tmp_path: pathlib.Path
) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text(password_url + "\n")  # as `echo` writes it
    service = start_service(None, "--test-any-namespace", "--redis-file", str(url_file))
    try:
        _serves_on_that_store(service, sync_redis)
        lines = _command_lines(service.process.pid)
        assert not [line for line in lines.values() if password in line], lines
    finally:
        log = _stop(service)
    assert password not in log and "warning" not in log


def test_a_password_on_the_command_line_still_works_with_one_masked_warning(
    password_url: str, password: str, sync_redis: redis.Redis
) -> None:
    service = start_service(None, "--redis", password_url, "--test-any-namespace")
    try:
        _serves_on_that_store(service, sync_redis)
    finally:
        log = _stop(service)
    warnings = [line for line in log.splitlines() if "every local user can read command lines" in line]
    assert len(warnings) == 1 and "ENTROQ_REDIS_URL or --redis-file" in warnings[0], log
    assert password not in log


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_store_urls_in_the_service_log_are_masked(
    password_url: str, password: str, tmp_path: pathlib.Path
) -> None:
    """A store the service cannot use yet is logged by its URL, password masked: a wrong
    password, and a store that is not there."""
    user = urllib.parse.urlsplit(password_url).username
    wrong = password_url.replace(f":{password}@", f":{password}-wrong@")
    gone = f"redis://{user}:{password}@127.0.0.1:{_closed_port()}/0"
    for url in (wrong, gone):
        url_file = tmp_path / "redis-url"
        url_file.write_text(url)
        log = _stop(start_service(None, "--redis-file", str(url_file), wait_ready=False))
        assert "the store is not reachable yet" in log, log
        assert masked_url(url) in log and password not in log, log


def test_the_environment_url_and_data_are_one_too_many(tmp_path: pathlib.Path) -> None:
    done = _cli(
        "serve", "--port", "0", "--data", str(tmp_path), env=_clean_env(ENTROQ_REDIS_URL="redis://:x@h:1")
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "entroq-redis serve: a store URL (--redis, from the environment) and --data (from the command "
        "line) name two stores: set one"
    ]
    assert not (tmp_path / "appendonlydir").exists()


def test_unreadable_secret_files_are_usage_errors(tmp_path: pathlib.Path) -> None:
    empty, token = tmp_path / "empty", tmp_path / "token"
    empty.write_text("\n")
    token.write_text("t")
    missing = str(tmp_path / "missing")
    for args, message in (
        (("serve", "--redis-file", missing), f"argument --redis-file: cannot read {missing}"),
        (("serve", "--redis-file", str(empty)), f"argument --redis-file: {empty} is empty"),
        (("qs", "--url-file", str(empty)), f"argument --url-file: {empty} is empty"),
        (("qs", "--token-file", missing), f"argument --token-file: cannot read {missing}"),
        (
            ("qs", "--token", "t", "--token-file", str(token)),
            "--token-file: not allowed with argument --token",
        ),
    ):
        done = _cli(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_client_url_from_a_file_the_environment_or_an_argument(
    password_url: str, password: str, tmp_path: pathlib.Path
) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(password_url)
    namespace = ("--namespace", "t" + secrets.token_hex(6))
    from_file = _cli("qs", *namespace, "--json", "--url-file", str(url_file))
    from_env = _cli("qs", *namespace, "--json", env=_clean_env(ENTROQ_URL=password_url))
    for done in (from_file, from_env):
        assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
        assert done.stderr == ""
    as_argument = _cli("qs", *namespace, "--json", "--url", password_url)
    assert as_argument.returncode == 0 and as_argument.stdout.strip() == "[]"
    (warning,) = as_argument.stderr.splitlines()
    assert "--url" in warning and "ENTROQ_URL or --url-file" in warning and password not in warning
    # The help shows the default's source, never the URL the environment holds.
    helped = _cli("qs", "--help", env=_clean_env(ENTROQ_URL=password_url))
    assert helped.returncode == 0 and password not in helped.stdout


def test_client_errors_name_the_store_without_its_password(password: str) -> None:
    url = f"redis://someone:{password}@127.0.0.1:{_closed_port()}/0"
    done = _cli("qs", env=_clean_env(ENTROQ_URL=url))
    assert done.returncode != 0
    assert masked_url(url) in done.stderr and password not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def authz_service(store_url: str) -> Iterator[ServiceProcess]:
    service = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield service
    assert service.stop() == 0


def test_client_token_from_a_file(authz_service: ServiceProcess, tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(ALICE + "\n")
    common = ("--url", authz_service.url, "--namespace", "t" + secrets.token_hex(6))
    inserted = _cli("ins", *common, "--token-file", str(token_file), "/alice/secrets", "x")
    assert inserted.returncode == 0 and inserted.stderr == "", inserted.stderr
    listed = _cli("qs", *common, "--json", "--token-file", str(token_file))
    assert listed.returncode == 0 and "/alice/secrets" in listed.stdout
    as_argument = _cli("qs", *common, "--json", "--token", ALICE)
    assert as_argument.returncode == 0 and "/alice/secrets" in as_argument.stdout
    (warning,) = as_argument.stderr.splitlines()
    assert "--token" in warning and "ENTROQ_TOKEN or --token-file" in warning and ALICE not in warning


def test_the_opa_url_is_logged_masked(store_url: str, password: str) -> None:
    opa_url = f"http://proxy-user:{password}@127.0.0.1:{_closed_port()}"
    log = _stop(start_service(store_url, "--authz", "opahttp", "--opa-url", opa_url))
    assert f"authorization: opahttp ({masked_url(opa_url)}, document" in log, log
    assert password not in log
