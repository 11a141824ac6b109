"""The dashboard (/ui) over plain HTTP against a real service: escaping of user data, --no-ui,
the security headers and cookies, the guards and bad input of actions, the shared queue feed
(one store read per interval for all open pages, filtered per caller), and the I/O-free parts
(previews, the queue table, selections, the action guards).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import trio
from authz_support import ALICE, BOB, REGO_FLAGS
from conftest import ServiceProcess, start_service
from entroq_redis_server.core.errors import ApiError
from entroq_redis_server.settings import ServiceSettings
from entroq_redis_server.ui import access, preview, quarantine, queue_table
from entroq_redis_server.ui.access import Refused

import entroq_redis
from entroq_redis import TaskData
from entroq_redis.cli import build_parser

CSRF = "c" * 43
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Cookie": f"eq_csrf={CSRF}"}


@pytest.fixture
async def store(store_url: str, namespace: str) -> AsyncIterator[entroq_redis.EntroQ]:
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        yield eq


@pytest.fixture(scope="module")
def authz_service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


async def test_queue_names_ids_values_and_errors_are_escaped(
    http: httpx.AsyncClient, store: entroq_redis.EntroQ
) -> None:
    hostile = "<script>alert(1)</script>"
    (task,) = (
        await store.modify([TaskData(hostile + "/err", value=b"<img src=x onerror=alert(1)>", err=hostile)])
    )[0]
    await store.modify([TaskData(hostile, value=b"v")])
    pages = {
        "/ui/": {"q": None},
        "/ui/queue": {"q": hostile},
        "/ui/quarantine": {"q": hostile + "/err"},
        "/ui/task": {"id": task.id},
        "/ui/find": {"id": task.id},
        "/ui/leases": {},
    }
    for path, params in pages.items():
        answer = await http.get(path, params={k: v for k, v in params.items() if v is not None})
        assert answer.status_code == 200, (path, answer.text)
        body = answer.text
        # The only script elements are the dashboard's own files.
        assert re.findall(r"<script[^>]*>", body) == [
            '<script src="/ui/static/htmx-2.0.11.min.js" defer>',
            '<script src="/ui/static/htmx-ext-sse-2.2.4.min.js" defer>',
            '<script src="/ui/static/dashboard.js" defer>',
        ], path
        assert "<img" not in body and "alert(1)</script>" not in body
    task_page = (await http.get("/ui/task", params={"id": task.id})).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in task_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in task_page


async def test_no_ui_answers_404_and_the_api_still_serves(store_url: str) -> None:
    service = start_service(store_url, "--no-ui")
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            for path in ("/ui", "/ui/", "/ui/quarantine", "/ui/static/dashboard.js", "/ui/events/queues"):
                assert (await client.get(path)).status_code == 404, path
            assert (await client.post("/ui/action", data={"q": "x"})).status_code == 404
            assert (await client.get("/api/v0/time")).status_code == 200
    finally:
        assert service.stop() == 0


def test_cli_defaults_are_the_service_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    defaults = ServiceSettings(store_url="redis://x")
    assert (args.ui, args.ui_refresh) == (defaults.ui, defaults.ui_refresh_s) == (True, 2.0)
    assert build_parser().parse_args(["serve", "--no-ui"]).ui is False


@pytest.mark.parametrize("refresh", ["0", "-1", "nan"])
def test_a_refresh_that_is_not_positive_is_a_usage_error(refresh: str, tmp_path: pathlib.Path) -> None:
    command = [sys.executable, "-m", "entroq_redis.cli", "serve", "--port", "0", "--data", str(tmp_path)]
    done = subprocess.run([*command, "--ui-refresh", refresh], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        2,
        "entroq-redis serve: --ui-refresh must be more than 0 seconds\n",
    )
    assert not any(tmp_path.iterdir())  # no store was started


async def test_pages_carry_a_strict_policy_and_strict_cookies(http: httpx.AsyncClient) -> None:
    answer = await http.get("/ui/")
    policy = answer.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy and "default-src 'none'" in policy and "'unsafe-inline'" not in policy
    )
    assert answer.headers["X-Frame-Options"] == "DENY"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("eq_csrf=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # Login: the token goes into an HttpOnly, SameSite=Strict cookie, never into the page.
    login = await http.post("/ui/login", data={"csrf": CSRF, "token": "secret-token"}, headers=SAME_ORIGIN)
    assert login.status_code == 303, login.text
    token_cookie = next(c for c in login.headers.get_list("Set-Cookie") if c.startswith("eq_token="))
    assert "HttpOnly" in token_cookie and "SameSite=Strict" in token_cookie and "Path=/ui" in token_cookie
    page = await http.get("/ui/", headers={"Cookie": "eq_token=secret-token"})
    assert "Log out" in page.text and "secret-token" not in page.text


async def test_bad_action_input_is_a_clear_400_and_nothing_changes(
    http: httpx.AsyncClient, store: entroq_redis.EntroQ
) -> None:
    (task,) = (await store.modify([TaskData("q/err", value=b"v", err="e")]))[0]
    cases = {
        "no tasks selected": {"q": "q/err", "action": "delete"},
        "malformed task field": {"q": "q/err", "action": "delete", "task": task.id},
        "unknown action": {"q": "q/err", "action": "explode", "task": f"{task.version}:{task.id}"},
        "only tasks of an error queue": {"q": "q", "action": "requeue", "task": f"{task.version}:{task.id}"},
    }
    for message, form in cases.items():
        answer = await http.post("/ui/action", data={"csrf": CSRF, **form}, headers=SAME_ORIGIN)
        assert answer.status_code == 400 and message in answer.text, (message, answer.text)
    missing = await http.get("/ui/queue")
    assert missing.status_code == 400 and "the query parameter &#39;q&#39; is required" in missing.text
    assert [(t.id, t.version) for t in await store.tasks("q/err")] == [(task.id, task.version)]


async def test_any_page_of_a_long_queue_in_either_order(
    http: httpx.AsyncClient, store: entroq_redis.EntroQ
) -> None:
    now = await store.time()
    ids: list[str] = []
    for start in range(0, 2600, 1000):  # beyond any window: pages are read by rank
        count = min(1000, 2600 - start)
        inserted, _ = await store.modify(
            [TaskData("long", at=now - 100_000 + start + i) for i in range(count)]
        )
        ids += [t.id for t in inserted]

    def listed(page: str) -> list[str]:
        return re.findall(r'<tr data-id="([^"]+)"', page)

    deep = (await http.get("/ui/queue", params={"q": "long", "page": "51"})).text
    assert listed(deep) == ids[2550:2600] and "page 52 of 52" in deep and ">next<" not in deep
    newest = (await http.get("/ui/queue", params={"q": "long", "order": "newest"})).text
    assert listed(newest) == ids[2550:2600][::-1] and ">next<" in newest
    oldest_last = (await http.get("/ui/queue", params={"q": "long", "order": "newest", "page": "51"})).text
    assert listed(oldest_last) == ids[:50][::-1]
    # A page past the end shows the last one.
    assert listed((await http.get("/ui/queue", params={"q": "long", "page": "999"})).text) == ids[2550:]


async def test_leases_find_and_throughput_pages(http: httpx.AsyncClient, store: entroq_redis.EntroQ) -> None:
    await store.modify([TaskData("work", value=b"job with needle inside"), TaskData("work", value=b"other")])
    held = await store.as_claimant("worker-7").claim("work", duration_ms=600_000)
    await store.modify([TaskData("flaky", value=b"f")])
    poison = None
    for _ in range(5):  # a lease of 0 ms: claimed again and again, as a crashing worker would
        poison = await store.as_claimant("crasher").claim("flaky", duration_ms=0)
    assert poison is not None and poison.claims == 5
    leases = (await http.get("/ui/leases")).text
    assert "worker-7" in leases and f'data-id="{held.id}"' in leases and 'class="countdown"' in leases
    assert re.search(r'class="poison"><a href="/ui/task\?id=[^"]+">' + poison.id, leases)
    assert re.search(r'class="expired"><a href="/ui/task\?id=[^"]+">' + poison.id, leases)
    by_id = (await http.get("/ui/find", params={"id": held.id})).text
    assert f'data-id="{held.id}"' in by_id
    search = await http.get("/ui/find", params={"q": "work", "text": "needle", "limit": "10"})
    assert "1 of the first 2 tasks (limit 10) hold" in search.text
    over = await http.get("/ui/find", params={"q": "work", "text": "x", "limit": "10001"})
    assert over.status_code == 400 and "limit must be a whole number from 1 to 10000" in over.text
    chart = (await http.get("/ui/throughput")).text
    assert "<svg" in chart and "claims" in chart and "dependency errors" in chart


async def test_the_largest_selection_is_one_modify_even_with_authorization_guards(
    authz_service: ServiceProcess, store: entroq_redis.EntroQ, namespace: str
) -> None:
    # Every change of an authorized modify carries a guard depend (authz.modify): 500 requeues
    # are 1,000 items, the most one modify may hold, and the page never offers more at once.
    inserted = []
    for _ in range(quarantine.MAX_SELECTED // 250):
        inserted += (await store.modify([TaskData("/alice/big/err", value=b"v", err="e")] * 250))[0]
    form = [("csrf", CSRF), ("q", "/alice/big/err"), ("action", "requeue")]
    form += [("task", f"{t.version}:{t.id}") for t in inserted]
    headers = {**SAME_ORIGIN, "EntroQ-Namespace": namespace, "Authorization": f"Bearer {ALICE}"}
    async with httpx.AsyncClient(base_url=authz_service.url, timeout=60) as client:
        page = await client.get("/ui/quarantine", params={"q": "/alice/big/err"}, headers=headers)
        answer = await client.post(
            "/ui/action",
            content=urllib.parse.urlencode(form),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
    assert page.text.count('class="pick"') == quarantine.MAX_SELECTED
    assert answer.status_code == 200 and f"Requeued {quarantine.MAX_SELECTED} tasks." in answer.text, (
        answer.text
    )
    assert len(await store.tasks("/alice/big")) == quarantine.MAX_SELECTED


async def test_unauthenticated_pages_ask_for_a_login(authz_service: ServiceProcess, namespace: str) -> None:
    async with httpx.AsyncClient(base_url=authz_service.url, timeout=30) as client:
        answer = await client.get("/ui/", headers={"EntroQ-Namespace": namespace})
        wrong = await client.get("/ui/", headers={"EntroQ-Namespace": namespace, "Cookie": "eq_token=nope"})
    assert answer.status_code == wrong.status_code == 401
    assert 'action="/ui/login"' in answer.text


async def _events(url: str, headers: dict[str, str], count: int) -> list[str]:
    """The first ``count`` messages (events or keep-alive comments) of the live queue table.

    Read over a raw HTTP/1.0 connection (the body then simply runs until the connection
    closes), so the test can stop reading an endless stream and just close the socket.
    """
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    lines = ["GET /ui/events/queues HTTP/1.0", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            head, _, body = data.partition(b"\r\n\r\n")
            messages = body.decode(errors="replace").split("\n\n")[:-1] if _ else []
            if len(messages) >= count:
                assert b"text/event-stream" in head.lower()
                return messages[:count]
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise AssertionError(f"the stream ended after {len(messages)} messages: {data[-500:]!r}")
            data += chunk


def _queue_stats_reads(metrics: str) -> float:
    found = re.search(r'entroq_store_roundtrip_seconds_count\{op="queue_stats"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


async def test_open_pages_share_one_store_read_per_interval(store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--test-any-namespace", "--ui-refresh", "0.1")
    pages, messages = 4, 8
    try:
        async with entroq_redis.connect(store_url, namespace=namespace) as eq:
            await eq.modify([TaskData("shared/feed", value=b"x")])
        headers = {"EntroQ-Namespace": namespace}
        received: list[list[str]] = []

        async def page() -> None:
            received.append(await _events(service.url, headers, messages))

        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            before = _queue_stats_reads((await client.get("/metrics")).text)
            async with trio.open_nursery() as nursery:
                for _ in range(pages):
                    nursery.start_soon(page)
            after = _queue_stats_reads((await client.get("/metrics")).text)
    finally:
        assert service.stop() == 0
    assert [len(m) for m in received] == [messages] * pages
    assert all('data-queue="shared/feed"' in m[0] for m in received)
    # Each page saw a message per read; reads were shared: far fewer than pages x messages.
    assert 1 <= after - before <= 2 * messages


async def test_the_live_table_is_filtered_per_caller(
    authz_service: ServiceProcess, store_url: str, namespace: str
) -> None:
    async with entroq_redis.connect(store_url, namespace=namespace) as eq:
        await eq.modify([TaskData("/alice/a", value=b"x"), TaskData("/bob/b", value=b"y")])
    first: dict[str, str] = {}

    async def watch(user: str, token: str) -> None:
        headers = {"EntroQ-Namespace": namespace, "Authorization": f"Bearer {token}"}
        first[user] = (await _events(authz_service.url, headers, 1))[0]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, "alice", ALICE)
        nursery.start_soon(watch, "bob", BOB)
    assert 'data-queue="/alice/a"' in first["alice"] and "/bob/" not in first["alice"]
    assert 'data-queue="/bob/b"' in first["bob"] and "/alice/" not in first["bob"]


# I/O-free parts.


def test_previews() -> None:
    assert preview.preview(b"").kind == "empty"
    assert preview.preview(b'{"a":1}').text == '{\n  "a": 1\n}'
    cut = preview.preview("é".encode() * 10, cap=5)  # cut inside a character: the whole ones stay
    assert (cut.kind, cut.text, cut.truncated) == ("text", "éé", True)
    assert preview.preview(b"\xff\xfe").kind == "binary"
    assert preview.preview(b"a\x00b").kind == "binary"  # NUL is not readable text
    big = preview.preview(bytes(10_000))
    assert big.kind == "binary" and big.truncated and len(big.text.split("\n")) == preview.HEX_CAP // 16
    large_json = preview.preview(b"[" + b"1," * 40_000 + b"1]")
    assert large_json.kind == "text" and large_json.truncated  # too large to parse: shown as text


def test_queue_table_tree_err_beside_inbox_filter_and_cap() -> None:
    from entroq_redis_server.core import schema

    def stats(name: str, tasks: int, available: int = 0, claimed: int = 0) -> object:
        return schema.QueueStats(name=name, num_tasks=tasks, num_available=available, num_claimed=claimed)

    listed = [
        stats("/a/x", 3, 2, 1),
        stats("/a/x/err", 2),
        stats("/a/y", 1, 1),
        stats("/b/err", 4),
        stats("z", 1),
    ]
    table = queue_table.build(listed)
    rows = [(type(r).__name__, getattr(r, "name", getattr(r, "prefix", ""))) for r in table.rows]
    assert rows == [
        ("GroupRow", "/a/"),
        ("QueueRow", "/a/x"),
        ("QueueRow", "/a/y"),
        ("GroupRow", "/b/"),
        ("QueueRow", "/b/err"),  # its inbox is empty: a row of its own
        ("QueueRow", "z"),
    ]
    x, y = table.rows[1], table.rows[2]
    assert isinstance(x, queue_table.QueueRow) and isinstance(y, queue_table.QueueRow)
    assert (x.err_queue, x.err_tasks, x.stuck, y.stuck) == ("/a/x/err", 2, False, True)
    assert (table.total, table.err_queues) == (5, 2)
    capped = queue_table.build([stats(f"q{i:05}", 1) for i in range(10_000)], "q0", max_rows=500)
    assert (capped.shown, capped.matching, capped.total, len(capped.rows)) == (500, 10_000, 10_000, 500)


def test_selections_and_guards() -> None:
    assert quarantine.parse_selection(["3:a:b"]) == [quarantine.Selected("a:b", 3)]
    for bad in (["x:a"], [":a"], ["3:"], ["3:a", "4:a"], ["1:a"] * (quarantine.MAX_SELECTED + 1)):
        with pytest.raises(ApiError):
            quarantine.parse_selection(bad)
    access.check_origin("GET", {"Sec-Fetch-Site": "cross-site"}, "http://h")
    access.check_origin("POST", {"Sec-Fetch-Site": "same-origin"}, "http://h")
    access.check_origin("POST", {"Origin": "http://h"}, "http://h")  # plain http: no Sec-Fetch-*
    for headers in ({"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "none"}, {"Origin": "http://x"}, {}):
        with pytest.raises(Refused):
            access.check_origin("POST", headers, "http://h")
    access.check_token(CSRF, CSRF)
    for cookie, field in ((CSRF, ""), ("", ""), (CSRF, "d" * 43)):
        with pytest.raises(Refused):
            access.check_token(cookie, field)
