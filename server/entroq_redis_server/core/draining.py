"""Graceful shutdown of waiting claims: on shutdown every blocking claim returns at once.

Hypercorn lets in-flight requests finish during its graceful timeout, but a long-poll claim
may wait for minutes; so the service cancels each waiting claim first (it answers 503, and
the client retries elsewhere) and refuses new waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio

from .errors import unavailable

SHUTTING_DOWN = "the service is shutting down; retry on another instance"


class Draining:
    """Tracks the cancel scopes of waiting claims so shutdown can end them."""

    def __init__(self) -> None:
        self.started = False
        self._scopes: set[trio.CancelScope] = set()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Runs a wait that shutdown may cut short; raises a 503 ApiError if it did."""
        if self.started:
            raise unavailable(SHUTTING_DOWN)
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                yield
        finally:
            self._scopes.discard(scope)
        if scope.cancelled_caught:
            raise unavailable(SHUTTING_DOWN)

    def begin(self) -> None:
        """Refuses new waits and cancels the current ones."""
        self.started = True
        for scope in list(self._scopes):
            scope.cancel()
