"""Every Redis key and channel name of a namespace, built here and nowhere else in Python.

The Lua scripts derive the same names from the key prefix they receive (they cannot
import this module); lua/README.md documents the layout and a test checks both agree.
"""

from __future__ import annotations

import dataclasses
import re

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclasses.dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one namespace. All share the hash tag ``{namespace}``, so one cluster slot."""

    namespace: str

    def __post_init__(self) -> None:
        if not _NAMESPACE.match(self.namespace):
            raise ValueError(
                f"namespace must be 1-64 characters from A-Z, a-z, 0-9, '_', '.', '-'; got {self.namespace!r}"
            )

    @property
    def prefix(self) -> str:
        """The prefix every key of the namespace starts with; the scripts' ARGV[1]."""
        return "{" + self.namespace + "}:"

    @property
    def queue_index(self) -> str:
        """ZSET of the names of non-empty queues (all scores 0, ordered by name)."""
        return self.prefix + "queues"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel on which modify announces newly available tasks."""
        return self.prefix + "wake"

    def task(self, task_id: str) -> str:
        """STRING holding one task's packed record."""
        return self.prefix + "t:" + task_id

    def queue(self, name: str) -> str:
        """ZSET of a queue's task IDs scored by arrival ms."""
        return self.prefix + "q:" + name

    def claimed(self, name: str) -> str:
        """ZSET of a queue's tasks with claims > 0 and a claimant, scored by arrival ms."""
        return self.prefix + "c:" + name

    def claim_histogram(self, name: str) -> str:
        """HASH claims count -> number of the queue's tasks with that count (counts > 0)."""
        return self.prefix + "h:" + name

    def claim_counts(self, name: str) -> str:
        """ZSET of the distinct claims counts present in the queue, for max_claims."""
        return self.prefix + "m:" + name
