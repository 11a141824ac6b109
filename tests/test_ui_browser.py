"""The dashboard (/ui) in a real headless Chromium (tests/browser_support.py), against a real
``entroq-redis serve`` on the session's store (embedded Valkey, or ENTROQ_TEST_REDIS_URL).

The issue's list: the queue table updates live after an insert made elsewhere; a quarantined
task requeued from the page; a bulk requeue where one task changed meanwhile; the value
preview of JSON, text and binary; a read-only user; a forged cross-site POST refused (a plain
HTTP request: no browser would send one without its cookies' SameSite protection).

Waits for the page use Playwright's bounded waits for a state (a row, a notice), never a fixed
time; what the store holds afterwards is read from the store itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authz_support import ALICE, OPS, REGO_FLAGS
from browser_support import open_browser, run_trio
from conftest import ServiceProcess, start_service

import entroq_redis
from entroq_redis import TaskChange, TaskData

# Chromium may be installed with apt by the first test (browser_support): minutes on a fresh machine.
pytestmark = pytest.mark.timeout(900)
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with open_browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def authz_service(store_url: str) -> Iterator[ServiceProcess]:
    process = start_service(store_url, "--test-any-namespace", *REGO_FLAGS)
    yield process
    assert process.stop() == 0


class Page:
    """A browser page logged in to the dashboard in one namespace, recording CSP violations."""

    def __init__(self, browser: Any, url: str, namespace: str, token: str = "") -> None:
        self.url = url
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.violations: list[str] = []
        self.page.on("console", self._console)
        self.goto("/ui/login")
        self.page.fill("input[name=namespace]", namespace)
        if token:
            self.page.fill("input[name=token]", token)
        self.page.click("form.login button[type=submit]")
        self.page.wait_for_url(f"{url}/ui/")

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.violations.append(message.text)

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.url + path)
        assert response is not None
        return response

    def close(self) -> None:
        assert self.violations == [], "the pages broke their own Content-Security-Policy"
        self.context.close()


@pytest.fixture
def page(browser: Any, http_service: ServiceProcess, namespace: str) -> Iterator[Page]:
    opened = Page(browser, http_service.url, namespace)
    yield opened
    opened.close()


def _store(store_url: str, namespace: str, call: Any) -> Any:
    async def run() -> Any:
        async with entroq_redis.connect(store_url, namespace=namespace) as eq:
            return await call(eq)

    return run_trio(run)


def _insert(store_url: str, namespace: str, *data: TaskData) -> list[entroq_redis.Task]:
    async def call(eq: entroq_redis.EntroQ) -> list[entroq_redis.Task]:
        inserted, _ = await eq.modify(list(data))
        return inserted

    result: list[entroq_redis.Task] = _store(store_url, namespace, call)
    return result


def _tasks(store_url: str, namespace: str, queue: str) -> list[entroq_redis.Task]:
    async def call(eq: entroq_redis.EntroQ) -> list[entroq_redis.Task]:
        return await eq.tasks(queue)

    result: list[entroq_redis.Task] = _store(store_url, namespace, call)
    return result


def test_queue_table_updates_live_after_an_insert_elsewhere(
    page: Page, store_url: str, namespace: str
) -> None:
    _insert(store_url, namespace, TaskData("live/before", value=b"x"))
    page.goto("/ui/")
    row = page.page.locator('tr[data-queue="live/jobs"]')
    # The page may be drawn from the shared read of up to one interval ago; the feed catches up.
    page.page.locator('tr[data-queue="live/before"]').wait_for()
    assert row.count() == 0
    # Typed but not submitted: still there after the update, so the table changed in place.
    page.page.fill("input[name=filter]", "typed, not sent")
    _insert(store_url, namespace, TaskData("live/jobs", value=b"1"), TaskData("live/jobs", value=b"2"))
    row.locator("td.tasks").filter(has_text="2").wait_for()
    assert row.locator("td.available").inner_text() == "2"
    assert "stuck" in (row.get_attribute("class") or "")  # available, nobody claiming
    assert page.page.input_value("input[name=filter]") == "typed, not sent"


def test_quarantined_task_requeued_from_the_page(page: Page, store_url: str, namespace: str) -> None:
    (task,) = _insert(
        store_url,
        namespace,
        TaskData("mail/err", value=b'{"to": "x@example.com"}', attempt=3, err="SMTP 550\nstack"),
    )
    page.goto("/ui/quarantine?q=mail/err")
    group = page.page.locator("section.err-group").filter(has_text="SMTP 550")
    assert group.locator(".count").inner_text() == "1"
    page.page.check(f'input.pick[value="{task.version}:{task.id}"]')
    page.page.click("button[value=requeue]")
    assert page.page.locator("#done-notice").inner_text() == "Requeued 1 task."
    assert _tasks(store_url, namespace, "mail/err") == []
    (moved,) = _tasks(store_url, namespace, "mail")
    assert (moved.id, moved.version, moved.value) == (task.id, task.version + 1, task.value)
    assert (moved.attempt, moved.err, moved.claims) == (0, "", 0)


def test_bulk_requeue_where_one_task_changed_meanwhile(page: Page, store_url: str, namespace: str) -> None:
    tasks = _insert(
        store_url, namespace, *(TaskData("bulk/err", value=b"%d" % i, err="boom") for i in range(4))
    )
    page.goto("/ui/quarantine?q=bulk/err")
    boxes = page.page.locator("input.pick")
    assert boxes.count() == 4
    page.page.check("input.pick-all[data-group=all]")
    assert [boxes.nth(i).is_checked() for i in range(4)] == [True] * 4
    page.page.uncheck("input.pick-all[data-group=all]")
    # A shift-click range: the first three rows.
    boxes.nth(0).click()
    boxes.nth(2).click(modifiers=["Shift"])
    assert [boxes.nth(i).is_checked() for i in range(4)] == [True, True, True, False]
    shown = {b.get_attribute("value") for b in boxes.all()[:3]}
    chosen = [t for t in tasks if f"{t.version}:{t.id}" in shown]
    changed = chosen[1]

    async def change(eq: entroq_redis.EntroQ) -> None:
        await eq.modify(
            changes=[TaskChange(changed.id, changed.version, "bulk/err", value=b"edited", err="boom")]
        )

    _store(store_url, namespace, change)  # meanwhile, elsewhere
    page.page.click("button[value=requeue]")
    assert "changed since you looked" in page.page.locator("#changed-notice").inner_text()
    assert page.page.locator("ul.changed li").all_inner_texts()[0].startswith(changed.id)
    assert page.page.locator("ul.changed li").count() == 1
    # Nothing was touched: all four are still in quarantine, at the versions they had.
    before = sorted((t.id, t.version) for t in tasks if t.id != changed.id)
    after = _tasks(store_url, namespace, "bulk/err")
    assert sorted((t.id, t.version) for t in after if t.id != changed.id) == before
    assert _tasks(store_url, namespace, "bulk") == []
    # The rest, as the page showed them, in a second action the user confirms.
    page.page.click("#retry-form button")
    assert page.page.locator("#done-notice").inner_text() == "Requeued 2 tasks."
    moved = {t.id for t in _tasks(store_url, namespace, "bulk")}
    assert moved == {t.id for t in chosen} - {changed.id}
    left = {t.id: t for t in _tasks(store_url, namespace, "bulk/err")}
    assert left.keys() == {changed.id} | {t.id for t in tasks if t not in chosen}
    assert left[changed.id].value == b"edited"


def test_value_preview_of_json_text_and_binary(page: Page, store_url: str, namespace: str) -> None:
    binary = bytes(range(256)) * 2
    as_json, as_text, as_binary = _insert(
        store_url,
        namespace,
        TaskData("values", value=json.dumps({"name": "x", "n": [1, 2]}).encode()),
        TaskData("values", value="naïve text\nsecond line".encode()),
        TaskData("values", value=binary),
    )
    page.goto(f"/ui/task?id={as_json.id}")
    assert page.page.locator("#value-kind").inner_text() == "json"
    assert page.page.locator("#value").inner_text() == '{\n  "name": "x",\n  "n": [\n    1,\n    2\n  ]\n}'
    page.goto(f"/ui/task?id={as_text.id}")
    assert page.page.locator("#value-kind").inner_text() == "text"
    assert page.page.locator("#value").inner_text() == "naïve text\nsecond line"
    page.goto(f"/ui/task?id={as_binary.id}")
    assert page.page.locator("#value-kind").inner_text() == "binary"
    dump = page.page.locator("#value").inner_text().split("\n")
    assert dump[0] == "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|"
    assert dump[4] == "00000040  40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f  |@ABCDEFGHIJKLMNO|"
    assert len(dump) == 32
    raw = page.page.request.get(page.url + page.page.locator("#raw-link").get_attribute("href"))
    assert (raw.status, raw.body()) == (200, binary)
    # The queue's list shows a one-line preview of each (tasks of one insert arrive together,
    # in no set order: found by ID).
    page.goto("/ui/queue?q=values")

    def cell(task: entroq_redis.Task) -> str:
        text: str = page.page.locator(f'tr[data-id="{task.id}"] td.value').inner_text()
        return text

    assert cell(as_json) == 'json {"name":"x","n":[1,2]}'
    assert cell(as_text) == "text naïve text second line"
    assert cell(as_binary).startswith("binary 00 01 02 03")


def test_read_only_user(browser: Any, authz_service: ServiceProcess, store_url: str, namespace: str) -> None:
    (task,) = _insert(store_url, namespace, TaskData("/alice/jobs/err", value=b"v", err="failed"))
    _insert(store_url, namespace, TaskData("/alice/jobs", value=b"w"), TaskData("/bob/jobs", value=b"b"))
    # ops may READ everything and nothing else (deploy/authz/data.json).
    ops = Page(browser, authz_service.url, namespace, OPS)
    try:
        ops.goto("/ui/quarantine?q=/alice/jobs/err")
        assert ops.page.locator(f'tr[data-id="{task.id}"]').count() == 1
        assert ops.page.locator("button[name=action]").count() == 0
        assert ops.page.locator("input.pick").count() == 0
        ops.goto(f"/ui/task?id={task.id}")
        assert ops.page.locator("#task-id").inner_text() == task.id
        assert ops.page.locator("button[name=action]").count() == 0
        # The action sent anyway, past both CSRF guards: the authorizer refuses it.
        csrf = next(c["value"] for c in ops.context.cookies() if c["name"] == "eq_csrf")
        refused = ops.page.request.post(
            ops.url + "/ui/action",
            form={
                "csrf": csrf,
                "q": "/alice/jobs/err",
                "action": "requeue",
                "task": f"{task.version}:{task.id}",
            },
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        assert refused.status == 403
        assert "denied" in refused.text()
    finally:
        ops.close()
    assert [t.id for t in _tasks(store_url, namespace, "/alice/jobs/err")] == [task.id]
    # alice sees her queues with their buttons, and not bob's queues at all.
    alice = Page(browser, authz_service.url, namespace, ALICE)
    try:
        alice.goto("/ui/")
        assert alice.page.locator('tr[data-queue="/alice/jobs"] a.err-count').inner_text() == "1"
        assert alice.page.locator('tr[data-queue="/bob/jobs"]').count() == 0
        assert "/bob/" not in alice.page.content()
        alice.goto("/ui/quarantine?q=/alice/jobs/err")
        assert alice.page.locator("button[name=action]").count() == 2
    finally:
        alice.close()


def test_forged_cross_site_post_refused(http_service: ServiceProcess, store_url: str, namespace: str) -> None:
    (task,) = _insert(store_url, namespace, TaskData("forged/err", value=b"v", err="e"))
    form = {"q": "forged/err", "action": "delete", "task": f"{task.version}:{task.id}"}
    headers = {
        "EntroQ-Namespace": namespace,
        "Sec-Fetch-Site": "cross-site",
        "Origin": "https://evil.example",
    }
    with httpx.Client(base_url=http_service.url, timeout=30) as client:
        forged = client.post("/ui/action", data=form, headers=headers)
        # Even with a token pair the attacker made up, a cross-site request is refused.
        paired = client.post(
            "/ui/action",
            data={**form, "csrf": "x" * 43},
            headers={**headers, "Cookie": "eq_csrf=" + "x" * 43},
        )
        # Same-origin but without this browser's token: refused too.
        no_token = client.post(
            "/ui/action", data=form, headers={"EntroQ-Namespace": namespace, "Sec-Fetch-Site": "same-origin"}
        )
    assert (forged.status_code, paired.status_code, no_token.status_code) == (403, 403, 403)
    assert "Sec-Fetch-Site" in forged.text and "token" in no_token.text
    assert [t.id for t in _tasks(store_url, namespace, "forged/err")] == [task.id]
