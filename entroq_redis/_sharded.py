"""The wake subscription on a cluster: coredis's sharded pub/sub, made to survive failovers.

Two things in coredis 6.9's ``ShardedPubSub`` are fixed here, found by killing a primary
under a waiting claim (tests/test_cluster_failover.py):

- it reconnects to the primaries of the client's cached cluster layout, but only commands
  report their errors to that layout. A subscription on an otherwise idle client (a service
  waiting for work) never learned that a primary died and retried the dead node, so waiting
  claims woke only at the backend's 30 s safety re-check. Reporting each failure as commands
  do makes coredis re-read the layout (after two errors), so the next attempt subscribes on
  the promoted replica. The backoff is capped at 1 s (coredis: 16 s).
- each connection attempt acquires the shard connections in an ``AsyncExitStack`` that is
  never exited. After a failed attempt the leased connections were released only when the
  garbage collector finalized the generators, possibly after the pool closed (a KeyError
  "exception ignored" at shutdown). Here the stack is exited.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import anyio.abc
import coredis
import coredis.exceptions
from coredis.patterns.pubsub import ShardedPubSub
from coredis.retry import ExponentialBackoffRetryPolicy


class _LayoutReportingRetry(ExponentialBackoffRetryPolicy):
    """Retries connection failures forever (backoff 0.1 to 1 s), reporting each to the layout."""

    def __init__(self, layout: Any) -> None:
        super().__init__(
            (coredis.exceptions.ConnectionError, TimeoutError),
            retries=None,
            base_delay=0.1,
            max_delay=1,
            jitter=True,
        )
        self._layout = layout

    async def call_with_retries(self, func: Any, before_hook: Any = None, failure_hook: Any = None) -> Any:
        return await super().call_with_retries(func, before_hook, failure_hook=self._report)

    def _report(self, error: BaseException) -> None:
        # As a ConnectionError: the layout counts only connection and cluster errors, not the
        # exception groups or subscription timeouts a subscription fails with.
        self._layout.report_errors(None, coredis.exceptions.ConnectionError(f"wake subscription: {error}"))


class _ShardedSubscription(ShardedPubSub[bytes]):
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # ShardedPubSub.run of coredis 6.9, with the connection stack exited on every attempt.
        started = False

        async def attempt() -> None:
            nonlocal started
            async with contextlib.AsyncExitStack() as stack:
                layout = self.connection_pool.cluster_layout
                nodes = layout.replicas if self._read_from_replicas else layout.primaries
                self.shard_connections = {
                    node.node_id: await stack.enter_async_context(self.connection_pool.acquire(node=node))
                    for node in nodes
                    if node.node_id
                }
                try:
                    async with anyio.create_task_group() as tg:
                        self._current_scope = tg.cancel_scope
                        for connection in self.shard_connections.values():
                            tg.start_soon(self._consume_shard_push_messages, connection)
                            tg.start_soon(self._shard_keepalive, connection)
                        if not started:
                            task_status.started()
                            started = True
                        elif self.channels:  # a reconnect: subscribe again
                            await self.subscribe(*self.channels.keys())
                finally:
                    if self._current_scope.cancel_called:
                        with anyio.CancelScope(shield=True):
                            await self._cleanup()

        await self._retry_policy.call_with_retries(attempt)


def sharded_subscription(redis: coredis.RedisCluster[bytes]) -> ShardedPubSub[bytes]:
    """A sharded pub/sub on ``redis`` that follows failovers (use as an async context manager)."""
    pool = redis.connection_pool
    return _ShardedSubscription(pool, retry_policy=_LayoutReportingRetry(pool.cluster_layout))
