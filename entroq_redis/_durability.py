"""Acknowledged-write durability for replicated stores (WAIT / WAITAOF after each mutation)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Durability:
    """How sure a mutation must be before the client reports success.

    Args:
        replicas: Replica acknowledgements to wait for after each claim or modify.
        timeout_ms: How long to wait; past it the call raises OutcomeUnknownError.
        fsync: Also wait until the primary (and those replicas) fsynced the write to
            their AOF (WAITAOF; Redis >= 7.2 or Valkey). Without it, WAIT: the replicas
            received the write, which survives a primary crash but not a power loss of all.
    """

    replicas: int = 1
    timeout_ms: int = 1000
    fsync: bool = False

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if self.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0 (0 would wait forever), got {self.timeout_ms}")
        if self.replicas == 0 and not self.fsync:
            raise ValueError("Durability with 0 replicas and no fsync waits for nothing")
