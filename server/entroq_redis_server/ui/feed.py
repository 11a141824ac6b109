"""The queue stats every open dashboard page shows: one store read per interval and namespace,
however many pages are open.

There is no background poller to start or stop: a page that wants fresh stats asks
:meth:`QueueFeed.latest`, which reads the store only when the last read is older than the
interval, one reader at a time per namespace; every other page waiting at that moment gets
the same read. Pages wait for the next read with :meth:`QueueFeed.wait_next`, so N open
pages make one read per interval, not N.

A read costs the store about 40 ms per 1,000 queues (a namespace of 10,000 queues: 0.4 s of
the store's one thread). So the interval stretches to COST_FACTOR times the last read's
duration when that is longer: open pages never keep the store busy more than about a tenth
of the time, however many queues there are.

The read is every queue's stats, not authorized for anyone: it is never sent as it is.
Each page gets it through ``Calls.run(..., answer=...)``, so the service's authorizer
filters it for that page's own credentials exactly as it filters ``GET /api/v0/queues``
(``authz.listing``); one caller's rights never change what another receives. Pages with
the same credentials (one user's tabs) share that filtering too: it is kept with the read,
keyed by the exact ``Authorization`` header, and made again with the next read.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import trio

import entroq_redis

from ..core import schema as _schema
from ..core.calls import Calls
from ..core.errors import ApiError
from ..core.hooks import HeaderMap

log = logging.getLogger(__name__)

# The feed covers at most this many queues (the first by name); the pages say so when it is cut.
POLL_LIMIT = 10_000
# The next read waits at least this many times as long as the last one took.
COST_FACTOR = 10
# At most this many credentials' views are kept with one read (more are filtered each time).
MAX_VIEWS = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of every queue's stats (``api.QueuesResponse``), or why the last read failed."""

    stats: Any
    taken_at: float
    error: str = ""
    cost_s: float = 0.0  # how long the read took
    # The read filtered per credentials (the exact Authorization header): one user's tabs
    # ask the authorizer once per read.
    views: dict[str, list[Any]] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def complete(self) -> bool:
        return len(self.stats.queues) < POLL_LIMIT


class QueueFeed:
    """Shared queue stats per namespace (see the module docstring)."""

    def __init__(self, calls: Calls, interval_s: float) -> None:
        self.calls = calls
        self.interval_s = interval_s
        self.reads = 0  # store reads made, for the tests and the throughput page
        self._snapshots: dict[str, Snapshot] = {}
        self._locks: dict[str, trio.Lock] = {}

    async def latest(self, namespace: str) -> Snapshot:
        """The namespace's stats, read now only if the last read is older than the interval."""
        lock = self._locks.setdefault(namespace, trio.Lock())
        async with lock:
            now = trio.current_time()
            known = self._snapshots.get(namespace)
            if known is not None and now < self.next_read_at(known):
                return known
            self.reads += 1
            try:
                stats = await self.calls.queue_stats_snapshot(namespace, POLL_LIMIT)
                known = Snapshot(stats, now, cost_s=trio.current_time() - now)
            except (entroq_redis.EntroQError, ApiError) as exc:
                log.warning("the dashboard cannot read queue stats: %s", exc)
                previous = known.stats if known is not None else _schema.QueuesResponse()
                known = Snapshot(previous, now, f"the store did not answer: {exc}", trio.current_time() - now)
            self._snapshots[namespace] = known
            return known

    def next_read_at(self, snapshot: Snapshot) -> float:
        """When the read after ``snapshot`` is due (trio's clock)."""
        return snapshot.taken_at + max(self.interval_s, COST_FACTOR * snapshot.cost_s)

    async def wait_next(self, namespace: str, after: Snapshot) -> Snapshot:
        """The first read due after ``after``."""
        await trio.sleep_until(self.next_read_at(after))
        return await self.latest(namespace)

    async def visible(self, snapshot: Snapshot, headers: HeaderMap, request_id: str) -> list[Any]:
        """The snapshot's queues the caller may read (its credentials in ``headers``), by name;
        refused as ``GET /api/v0/queues`` would be (401, 503)."""

        async def shared(_: Any) -> Any:
            # A copy: the authorizer filters the response it gets in place.
            copy = _schema.QueuesResponse()
            copy.CopyFrom(snapshot.stats)
            return copy

        credentials = headers.get("Authorization") or ""
        known = snapshot.views.get(credentials)
        if known is not None:
            return known
        request = _schema.QueuesRequest()
        response = await self.calls.run("QueueStats", request, headers, None, request_id, answer=shared)
        view = list(response.queues)
        if len(snapshot.views) < MAX_VIEWS:
            snapshot.views[credentials] = view
        return view
