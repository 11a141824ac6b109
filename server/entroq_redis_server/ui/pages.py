"""The dashboard's read-only pages: queues, a queue's tasks, a task, quarantine, leases, find,
throughput, and a task's raw value.

Every page is bounded whatever the store holds (10,000 queues, a million tasks in one queue):
queue lists come from the shared feed (``feed``) and draw at most ``queue_table.MAX_ROWS``
rows; a queue's task list reads one page by rank (the library's ``offset``), without values,
and then the values of the one page shown, by ID.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Response, request

from ..core import schema as _schema
from ..core.errors import NOT_FOUND, ApiError, bad_request
from . import preview as _preview
from . import quarantine, queue_table, throughput
from .dashboard import Dashboard

PAGE_SIZE = 50
# Pages are read by rank (offset), so any page of any queue costs the same; this only bounds
# the page number a URL may ask for (2^52 / PAGE_SIZE, the store's rank range).
MAX_PAGES = 2**52 // PAGE_SIZE
# The leases page reads at most this many tasks of each queue it looks into.
MAX_WINDOW = 2000
MAX_SEARCH = 10_000
DEFAULT_SEARCH = 1000
VALUE_BATCH = 100  # values read per call when searching
LEASE_QUEUES = 20  # the leases page looks into at most this many queues, the most claimed first
POISON_CLAIMS = 5


def register(dash: Dashboard) -> None:
    @dash.route("/ui", aliases=("/ui/",))
    async def queues() -> Response:
        namespace = await dash.namespace()
        name_filter = request.args.get("filter", "")
        snapshot = await dash.feed.latest(namespace)
        visible = await dash.visible(snapshot)
        table = queue_table.build(visible, name_filter)
        return dash.render("queues.html", table=table, filter=name_filter, snapshot=snapshot)

    @dash.route("/ui/queue")
    async def queue() -> Response:
        name = _required("q")
        newest_first = request.args.get("order") == "newest"
        stats = await _queue_stats(dash, name)
        size = stats.num_tasks if stats is not None else 0
        pages = max(1, (size + PAGE_SIZE - 1) // PAGE_SIZE)
        page = min(_int_arg("page", 0, 0, MAX_PAGES), pages - 1)
        # One page by rank in arrival order (the store reads O(log n + page) whatever the depth);
        # newest first is the same window counted from the end, read and then reversed.
        start = page * PAGE_SIZE
        if newest_first:
            start = max(0, size - (page + 1) * PAGE_SIZE)
        count = min(PAGE_SIZE, size - page * PAGE_SIZE) if newest_first else PAGE_SIZE
        shown = await dash.tasks(name, limit=count, offset=start, omit_values=True) if size else []
        if newest_first:
            shown.reverse()
        values = await _values(dash, name, [t.id for t in shown])
        now_ms = await dash.now_ms()
        return dash.render(
            "queue.html",
            queue=name,
            stats=stats,
            tasks=shown,
            previews={i: _preview.short(v) for i, v in values.items()},
            page=page,
            pages=pages,
            more=page + 1 < pages,
            newest_first=newest_first,
            now_ms=now_ms,
            err_inbox=queue_table.err_inbox(name),
        )

    @dash.route("/ui/task")
    async def task() -> Response:
        found = await _task(dash, _required("id"), with_value=True)
        now_ms = await dash.now_ms()
        inbox = queue_table.err_inbox(found.queue)
        may_requeue = inbox is not None and await dash.permits(
            "Modify", quarantine.probe_request("requeue", found.queue)
        )
        may_delete = await dash.permits("Modify", quarantine.probe_request("delete", found.queue))
        held = bool(found.claimant_id) and found.at_ms > now_ms
        return dash.render(
            "task.html",
            task=found,
            value=_preview.preview(found.value),
            now_ms=now_ms,
            inbox=inbox,
            may_requeue=may_requeue,
            may_delete=may_delete,
            held=held,
            selected=quarantine.Selected(found.id, found.version),
        )

    @dash.route("/ui/task/raw")
    async def raw() -> Response:
        found = await _task(dash, _required("id"), with_value=True)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", found.id)[:64] or "task"
        return Response(
            found.value,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{safe}.bin"'},
        )

    @dash.route("/ui/quarantine")
    async def quarantine_page() -> Response:
        name = request.args.get("q", "")
        namespace = await dash.namespace()
        if not name:
            snapshot = await dash.feed.latest(namespace)
            visible = await dash.visible(snapshot)
            sizes = {s.name: s.num_tasks for s in visible}
            err_queues = [
                (n, size, inbox, sizes.get(inbox, 0))
                for n, size in sizes.items()
                if (inbox := queue_table.err_inbox(n)) is not None
            ]
            return dash.render("quarantine_index.html", err_queues=err_queues, snapshot=snapshot)
        inbox = queue_table.err_inbox(name)
        if inbox is None:
            raise bad_request(f"{name!r} is not an error queue (<queue>/err)")
        listed = await dash.tasks(name, limit=quarantine.MAX_SELECTED, omit_values=True)
        stats = await _queue_stats(dash, name)
        return dash.render(
            "quarantine.html",
            queue=name,
            inbox=inbox,
            groups=quarantine.group_by_err(listed),
            shown=len(listed),
            total=stats.num_tasks if stats is not None else len(listed),
            now_ms=await dash.now_ms(),
            may_requeue=await dash.permits("Modify", quarantine.probe_request("requeue", name)),
            may_delete=await dash.permits("Modify", quarantine.probe_request("delete", name)),
            Selected=quarantine.Selected,
        )

    @dash.route("/ui/leases")
    async def leases() -> Response:
        namespace = await dash.namespace()
        snapshot = await dash.feed.latest(namespace)
        visible = await dash.visible(snapshot)
        # Queues holding leases, or a task claimed often (max_claims is exact in the stats).
        busy = sorted(
            (s for s in visible if s.num_claimed > 0 or s.max_claims >= POISON_CLAIMS),
            key=lambda s: (-s.num_claimed, -s.max_claims, s.name),
        )
        now_ms = await dash.now_ms()
        held: dict[str, list[Any]] = {}
        expired, poison = [], []
        # Held tasks arrive last (their arrival is the lease's end): they are the ranks from
        # num_available on, read from there; expired leases are available tasks, read from the
        # oldest. Each read is one window, so a queue with more leases than that is cut (the
        # page shows how many it found next to the stats' count).
        found: list[tuple[Any, int]] = []
        for stats in busy[:LEASE_QUEUES]:
            listed = 0
            window = await dash.tasks(
                stats.name, limit=MAX_WINDOW, offset=stats.num_available, omit_values=True
            )
            if stats.num_available:
                window += await dash.tasks(stats.name, limit=MAX_WINDOW, omit_values=True)
            for t in window:
                if t.claimant_id and t.at_ms > now_ms and t.claims > 0:
                    held.setdefault(t.claimant_id, []).append(t)
                    listed += 1
                elif t.claimant_id and t.claims > 0:
                    expired.append(t)
                if t.claims >= POISON_CLAIMS:
                    poison.append(t)
            found.append((stats, listed))
        return dash.render(
            "leases.html",
            held=sorted(held.items()),
            expired=expired,
            poison=poison,
            now_ms=now_ms,
            busy=len(busy),
            found=found,
            max_window=MAX_WINDOW,
            poison_claims=POISON_CLAIMS,
        )

    @dash.route("/ui/find")
    async def find() -> Response:
        await dash.namespace()
        task_id = request.args.get("id", "").strip()
        name = request.args.get("q", "")
        text = request.args.get("text", "")
        limit = _int_arg("limit", DEFAULT_SEARCH, 1, MAX_SEARCH)
        by_id: list[Any] | None = None
        matches: list[Any] | None = None
        searched = 0
        if task_id:
            by_id = await dash.tasks(ids=[task_id], omit_values=True)
        elif name and text:
            listed = await dash.tasks(name, limit=limit, omit_values=True)
            searched = len(listed)
            matches = await _search(dash, name, listed, text)
        now_ms = await dash.now_ms()
        return dash.render(
            "find.html",
            task_id=task_id,
            queue=name,
            text=text,
            limit=limit,
            max_search=MAX_SEARCH,
            by_id=by_id,
            matches=matches,
            searched=searched,
            now_ms=now_ms,
        )

    @dash.route("/ui/throughput")
    async def throughput_page() -> Response:
        await dash.namespace()
        drawn = throughput.chart(dash.throughput.rates())
        return dash.render(
            "throughput.html",
            chart=drawn,
            series=throughput.SERIES,
            width=throughput.WIDTH,
            height=throughput.HEIGHT,
            every=throughput.SAMPLE_EVERY_S,
        )


async def _queue_stats(dash: Dashboard, name: str) -> Any:
    response = await dash.call("QueueStats", _schema.QueuesRequest(match_exact=[name]))
    return next((s for s in response.queues if s.name == name), None)


async def _task(dash: Dashboard, task_id: str, with_value: bool) -> Any:
    found = await dash.tasks(ids=[task_id], omit_values=not with_value)
    if not found:
        raise ApiError(404, NOT_FOUND, f"no task {task_id!r} in a queue you may read", "not_found")
    return found[0]


async def _values(dash: Dashboard, queue: str, ids: list[str]) -> dict[str, bytes]:
    if not ids:
        return {}
    return {t.id: t.value for t in await dash.tasks(queue, ids=ids)}


async def _search(dash: Dashboard, queue: str, listed: list[Any], text: str) -> list[Any]:
    """The listed tasks whose value or err holds ``text``; values read by ID in batches, so a
    search never holds more than one batch of values."""
    wanted = text.encode()
    found = []
    for start in range(0, len(listed), VALUE_BATCH):
        batch = listed[start : start + VALUE_BATCH]
        values = await _values(dash, queue, [t.id for t in batch])
        found += [t for t in batch if wanted in values.get(t.id, b"") or text in t.err]
    return found


def _required(name: str) -> str:
    value = request.args.get(name, "")
    if not value:
        raise bad_request(f"the query parameter {name!r} is required")
    return value


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"{name} must be a whole number from {low} to {high}, got {raw[:20]!r}")
    return int(raw)
