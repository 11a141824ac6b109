"""Screenshots of the dashboard with real data, for the docs: docs/screenshots/*.png.

Starts ``entroq-redis serve`` on an embedded store in a temporary directory, fills it through
the service's HTTP API (queues with backlogs, workers holding leases, error queues with
grouped failures), and saves the queues page, a task page and a quarantine page as seen by
Debian's chromium (tests/browser_support.py installs it with apt when missing).

Run from the repository root:  python tests/programs/ui_screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import tempfile

import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from browser_support import open_browser

import entroq_redis
from entroq_redis import TaskData

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
TRACEBACK = """PaymentGatewayTimeout: upstream did not answer in 30 s
Traceback (most recent call last):
  File "/srv/billing/worker.py", line 88, in charge
    receipt = await gateway.capture(invoice.payment_id, timeout=30)
  File "/srv/billing/gateway.py", line 41, in capture
    raise PaymentGatewayTimeout(f"upstream did not answer in {timeout} s")"""


def invoice(n: int) -> bytes:
    return json.dumps(
        {
            "invoice": f"INV-2026-{n:05d}",
            "customer_id": 4700 + n % 97,
            "amount": {"currency": "EUR", "value": f"{(n * 37) % 900 + 19}.90"},
            "lines": [{"sku": "PLAN-PRO", "qty": 1}, {"sku": "SEAT", "qty": n % 7 + 1}],
        }
    ).encode()


async def fill(url: str) -> str:
    """Fills the store through the service; returns the ID of the task page to show."""
    async with entroq_redis.connect(url) as eq:
        for start in range(0, 1240, 200):
            await eq.modify(
                [TaskData("/billing/invoices", value=invoice(n)) for n in range(start, start + 200)]
            )
        await eq.modify(
            [TaskData("/email/send", value=b"to=ops@example.com&template=weekly") for _ in range(310)]
        )
        await eq.modify([TaskData("/images/resize", value=b"s3://media/raw/%d.jpg" % n) for n in range(42)])
        await eq.modify([TaskData("/reports/daily", value=b'{"day": "2026-12-08"}', delay_ms=3_600_000)] * 1)
        failures = (
            [(TRACEBACK, 3)] * 9
            + [("ValueError: invoice total is negative (-12.50)", 1)] * 4
            + [("KeyError: 'customer_id'", 2)]
        )
        inserted, _ = await eq.modify(
            [
                TaskData("/billing/invoices/err", value=invoice(900 + i), err=e, attempt=a)
                for i, (e, a) in enumerate(failures)
            ]
        )
        await eq.modify(
            [
                TaskData(
                    "/email/send/err",
                    value=b"to=bad@@example&template=weekly",
                    err="SMTP 550 5.1.1 no such user",
                )
            ]
            * 3
        )
        for worker in ("billing-worker-1#a1f3", "billing-worker-2#9c07"):
            claimant = eq.as_claimant(worker)
            for _ in range(4):
                await claimant.claim("/billing/invoices", duration_ms=120_000)
        resizer = eq.as_claimant("resize-7#55e2")
        for _ in range(6):
            await resizer.claim("/images/resize", duration_ms=45_000)
        return inserted[0].id


def main() -> None:
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="entroq-screens-") as data:
        command = [sys.executable, "-m", "entroq_redis.cli", "serve", "--data", data, "--port", "0"]
        command += ["--grpc-port", "0", "--ui-refresh", "1"]
        service = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert service.stdout is not None
            url = ""
            for line in service.stdout:
                found = re.search(r"listening on (http://\S+)", line)
                if found:
                    url = found.group(1)
                    break
            task_id = trio.run(fill, url)
            with open_browser() as browser:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url + "/ui/")
                page.locator('tr[data-queue="/billing/invoices"]').wait_for()
                page.screenshot(path=str(out / "queues.png"))
                page.goto(url + f"/ui/task?id={task_id}")
                page.screenshot(path=str(out / "task.png"), full_page=True)
                page.goto(url + "/ui/quarantine?q=/billing/invoices/err")
                page.locator("input.pick").nth(0).click()
                page.locator("input.pick").nth(3).click(modifiers=["Shift"])
                page.screenshot(path=str(out / "quarantine.png"))
        finally:
            service.terminate()
            service.wait(30)
    for name in ("queues.png", "task.png", "quarantine.png"):
        print(f"{out / name}: {(out / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
