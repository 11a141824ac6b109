"""Wakes blocking claims when the store announces available tasks (docs/design.md 2.5).

One pub/sub subscription per store client (WakeSubscription), carrying the wake channel of
every namespace the process uses; each namespace's messages go to its own WakeHub.
modify.lua publishes "<n_available>:<wait_ms>:<queue>" for each queue that gained available
tasks or a new earliest future arrival. For n available tasks the hub wakes at most n local waiters of
that queue (not all of them: a herd of claim scripts for one task is wasted store CPU);
a woken waiter that leaves without trying hands its wake on. Waiters also sleep no longer
than the earliest future arrival the claim script reported, so leases that run out and
delayed tasks are picked up on time without any polling.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import anyio.abc
import coredis.exceptions
from coredis.retry import (
    CompositeRetryPolicy,
    ConstantRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryPolicy,
)

from ._sharded import sharded_subscription

log = logging.getLogger(__name__)


def _resubscribe_policy() -> RetryPolicy:
    """How the subscription reconnects after the store went away: coredis's default, with the
    backoff capped at 1 s instead of 16 s.

    Wake messages published while the subscription is down are lost (the resubscribe wakes
    every waiter to look again, so none is missed for good), but until it is back a blocking
    claim hears of no insert. With coredis's 16 s cap, a store back after a long outage
    served requests at once while blocking claims slept through inserts for up to 16 s more
    (tests/test_battery_store_outage.py). One connection attempt a second per client is
    cheap; the cluster subscription (_sharded.py) uses the same bounds.
    """
    return CompositeRetryPolicy(
        ExponentialBackoffRetryPolicy(
            (coredis.exceptions.ConnectionError,), retries=None, base_delay=0.1, max_delay=1, jitter=True
        ),
        ConstantRetryPolicy((TimeoutError,), retries=2, delay=0.1),
    )


class Waiter:
    """One blocking claim's registration: the queues it waits on and its wake-up event."""

    __slots__ = ("event", "handoff", "queues")

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = tuple(queues)
        self.event = anyio.Event()
        self.handoff: str | None = None

    def rearm(self) -> str | None:
        """Called before each claim attempt, so a wake that arrives during it is not lost.

        Returns the queue of the wake being consumed (if any): if the attempt does not
        complete, the caller must hand that wake on.
        """
        consumed = self.handoff
        if self.event.is_set():
            self.event = anyio.Event()
        self.handoff = None
        return consumed

    def wake(self, handoff: str | None) -> bool:
        if self.event.is_set():
            return False
        self.handoff = handoff
        self.event.set()
        return True


class WakeHub:
    """One namespace's waiting claims in this process, woken by its wake channel's messages.

    Every view of the namespace in the process (``EntroQ.for_namespace``, the service's
    requests) shares this hub, so ``n`` available tasks wake at most ``n`` of the process's
    waiters of that queue, whichever view they came through.
    """

    def __init__(self) -> None:
        # queue -> waiters in arrival order (a dict is an ordered set).
        self._waiters: dict[str, dict[Waiter, None]] = {}
        self.messages = 0

    @property
    def waiting(self) -> int:
        return len({w for waiters in self._waiters.values() for w in waiters})

    @contextlib.contextmanager
    def watching(self, queues: Sequence[str]) -> Iterator[Waiter]:
        """Registers a waiter on the queues for the duration of the block."""
        waiter = Waiter(queues)
        for queue in waiter.queues:
            self._waiters.setdefault(queue, {})[waiter] = None
        try:
            yield waiter
        finally:
            for queue in waiter.queues:
                waiters = self._waiters.get(queue)
                if waiters is not None:
                    waiters.pop(waiter, None)
                    if not waiters:
                        del self._waiters[queue]
            if waiter.event.is_set() and waiter.handoff is not None:
                # Woken for an available task but leaving without trying: pass it on.
                self.wake(waiter.handoff, 1)

    def wake(self, queue: str, count: int) -> None:
        """Wakes up to ``count`` waiters of ``queue`` that are not already awake."""
        waiters = self._waiters.get(queue)
        if not waiters:
            return
        woken = []
        for waiter in waiters:
            if waiter.wake(queue):
                woken.append(waiter)
                if len(woken) >= count:
                    break
        for waiter in woken:
            # Move to the back so the next wake goes to someone else first.
            del waiters[waiter]
            waiters[waiter] = None

    def wake_everyone(self) -> None:
        """Every waiter looks again (the subscription was (re)made: messages may be lost)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake(None)

    def dispatch(self, data: bytes) -> None:
        """Acts on one wake message of the namespace."""
        self.messages += 1
        try:
            available_text, wait_text, queue_raw = data.split(b":", 2)
            available, wait = int(available_text), int(wait_text)
        except ValueError:
            log.warning("ignoring malformed wake message %r", data[:200])
            return
        queue = queue_raw.decode("utf-8", "surrogateescape")
        if available > 0:
            self.wake(queue, available)
        if wait >= 0:
            # A new earliest arrival: everyone sleeping on this queue re-reads its deadline.
            for waiter in list(self._waiters.get(queue, ())):
                waiter.wake(None)


class WakeSubscription:
    """The one pub/sub subscription of a store client, carrying every namespace's wake channel.

    One connection (on a cluster: one per primary, sharded pub/sub) however many namespaces
    the process serves: each namespace in use adds its channel to the subscription
    (SUBSCRIBE, or SSUBSCRIBE on the node owning its slot) and messages are dispatched by
    channel to that namespace's :class:`WakeHub` only, so an insert in one namespace never
    wakes another's waiters. A namespace's channel is subscribed before its first blocking
    claim looks at the store (``join`` returns after the store acknowledged it), so no
    announcement after that look is missed; it is unsubscribed when the last view of the
    namespace that joined leaves.
    """

    def __init__(self, redis: Any, *, sharded: bool = False) -> None:
        self._redis = redis
        # On a cluster: sharded pub/sub (SSUBSCRIBE), served by the node that owns each
        # namespace's slot and followed by coredis when the slot moves.
        self._sharded = sharded
        self._pubsub: Any = None
        self._stop = anyio.CancelScope()
        self._stopped = anyio.Event()
        # channel (as the store sends it) -> the namespace's hub and how many views joined it.
        self._hubs: dict[bytes, WakeHub] = {}
        self._users: dict[bytes, int] = {}
        # SUBSCRIBE and UNSUBSCRIBE of one channel must not overtake each other.
        self._lock = anyio.Lock()

    @property
    def channels(self) -> int:
        """How many namespaces' channels are subscribed."""
        return len(self._hubs)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connects, reports started, then dispatches messages until stopped."""
        subscriber: Any = (
            sharded_subscription(self._redis)
            if self._sharded
            else self._redis.pubsub(retry_policy=_resubscribe_policy())
        )
        try:
            async with subscriber as pubsub:
                self._pubsub = pubsub
                task_status.started()
                # Stopped by our own scope, so the pub/sub context exits normally: coredis's
                # sharded pub/sub leaves a connection generator behind when cancelled from
                # outside while it waits for a message.
                with self._stop:
                    while True:
                        message = await pubsub.get_message()
                        if message is None:
                            continue
                        hub = self._hubs.get(message["channel"])
                        if hub is None:
                            continue  # a channel just left (or an unsubscribe notice)
                        if message["type"] in ("subscribe", "ssubscribe"):
                            # Also sent after coredis reconnects and resubscribes: anything
                            # published while we were away is unknown, so every waiter looks again.
                            hub.wake_everyone()
                        elif message["type"] in ("message", "smessage"):
                            hub.dispatch(message["data"])
        finally:
            self._pubsub = None
            self._stopped.set()

    async def join(self, channel: str) -> WakeHub:
        """The hub of ``channel``'s namespace, subscribed (and acknowledged) before it returns.

        Raises:
            TimeoutError, coredis.exceptions.ConnectionError: the store did not acknowledge.
        """
        key = channel.encode()
        async with self._lock:
            hub = self._hubs.get(key)
            if hub is None:
                if self._pubsub is None:
                    raise coredis.exceptions.ConnectionError("the wake subscription is not running")
                await self._pubsub.subscribe(channel)
                hub = self._hubs[key] = WakeHub()
                self._users[key] = 0
            self._users[key] += 1
            return hub

    async def leave(self, channel: str) -> None:
        """Undoes one ``join``; the last one out unsubscribes the channel."""
        key = channel.encode()
        async with self._lock:
            users = self._users.get(key, 0) - 1
            if users > 0:
                self._users[key] = users
                return
            self._users.pop(key, None)
            self._hubs.pop(key, None)
            if self._pubsub is None:
                return
            try:
                await self._pubsub.unsubscribe(channel)
            except (coredis.exceptions.ConnectionError, TimeoutError) as exc:
                # Disconnected: a resubscribe may bring the channel back, whose messages are
                # then dropped here (no hub); nothing is lost.
                log.debug("could not unsubscribe %s: %r", channel, exc)

    async def stop(self) -> None:
        """Ends ``run`` and waits (briefly) until its subscription is closed."""
        self._stop.cancel()
        with anyio.move_on_after(2):
            await self._stopped.wait()
