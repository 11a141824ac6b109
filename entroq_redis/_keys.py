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

    # --- The document store (contract 2, lua/README.md section 2) --------------------------
    # A doc namespace and a doc ID (or a set's key) both may hold any bytes, so where both
    # stand in one key name the namespace is length-prefixed ("<bytes>:<namespace>") rather
    # than escaped: "a" + "bc" and "ab" + "c" can never build the same key.

    @property
    def doc_namespaces(self) -> str:
        """ZSET of the doc namespaces holding at least one doc (all scores 0, ordered by name)."""
        return self.prefix + "dn"

    def doc(self, doc_namespace: str, doc_id: str) -> str:
        """STRING holding one doc's packed record."""
        return self.prefix + "d:" + _length_prefixed(doc_namespace) + doc_id

    def doc_index(self, doc_namespace: str) -> str:
        """ZSET of a doc namespace's docs ordered by (key, secondary key, ID), all scores 0."""
        return self.prefix + "dk:" + doc_namespace

    def doc_claimed(self, doc_namespace: str) -> str:
        """ZSET of a doc namespace's docs with a claimant, member = doc ID, score = at_ms."""
        return self.prefix + "dc:" + doc_namespace

    def doc_set(self, doc_namespace: str, key: str) -> str:
        """STRING holding the lock record of the doc set (doc namespace, key)."""
        return self.prefix + "ds:" + _length_prefixed(doc_namespace) + key


def _length_prefixed(text: str) -> str:
    """``<length in UTF-8 bytes>:<text>``, as the scripts build it from raw bytes."""
    return f"{len(text.encode('utf-8', 'surrogateescape'))}:{text}"
