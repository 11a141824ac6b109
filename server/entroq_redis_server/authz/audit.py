"""The optional audit log (``--audit-log PATH``, ``-`` for stderr): one JSON line per
authorized call.

Each line says when (``time``, UTC, RFC 3339), which request (``request_id``, the value of
the response's ``X-Request-Id``), who (``user`` when the policy's answer names one, else
``credentials``: a short keyed fingerprint of the ``Authorization`` header, the same for the
same header within one service process and not reversible from the log, never the token
itself), what (``method``, ``namespace``, and ``queues``: each queue or prefix the decision
was about with its actions, at most MAX_LOGGED_QUEUES of them plus ``queues_omitted``), and
the outcome: ``allow``, ``deny`` (403), ``unauthenticated`` (401), ``unavailable`` (503: the
engine failed), ``too_large`` (413: the input limit) or, for listings, ``filtered`` (some
names hidden; ``shown`` and ``hidden`` count them).

A call that never reaches a decision (a store failure while looking a task up) writes no
line. A write that fails (a full disk) is logged as a warning; the call is answered anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from .input import QueueEntry

log = logging.getLogger(__name__)

MAX_LOGGED_QUEUES = 50
FINGERPRINT_BYTES = 8


@dataclasses.dataclass
class Trail:
    """What one call's authorization found, filled in as it goes."""

    user: str | None = None
    entries: list[QueueEntry] = dataclasses.field(default_factory=list)
    # The doc namespace entries of a document-store call (logged as "doc_namespaces").
    namespaces: list[QueueEntry] = dataclasses.field(default_factory=list)
    outcome: str | None = None
    shown: int | None = None
    hidden: int | None = None

    def decided(self, outcome: str, user: str | None = None) -> None:
        self.outcome = outcome
        self.user = user or self.user


class AuditLog:
    """Writes audit lines to a file (appending) or to stderr."""

    def __init__(self, stream: IO[str], owned: bool) -> None:
        self._stream = stream
        self._owned = owned
        # Fingerprints are keyed per process: equal headers match within one log, and a
        # guessable token cannot be found by hashing guesses.
        self._key = os.urandom(32)

    @classmethod
    def open(cls, path: str) -> AuditLog:
        """``-`` is stderr; any other path is opened for appending (created 0600).

        Raises:
            OSError: the file cannot be opened.
        """
        if path == "-":
            return cls(sys.stderr, owned=False)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return cls(os.fdopen(descriptor, "a", encoding="utf-8", buffering=1), owned=True)

    def fingerprint(self, header: str) -> str:
        return hashlib.blake2b(header.encode(), key=self._key, digest_size=FINGERPRINT_BYTES).hexdigest()

    def record(
        self, *, request_id: str, method: str, namespace: str, header: str | None, trail: Trail
    ) -> None:
        if trail.outcome is None:
            return
        line: dict[str, Any] = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
        }
        if trail.user is not None:
            line["user"] = trail.user
        else:
            line["credentials"] = self.fingerprint(header) if header else None
        line |= {"method": method, "namespace": namespace, "outcome": trail.outcome}
        queues = _queues(trail.entries)
        line["queues"] = queues[:MAX_LOGGED_QUEUES]
        if len(queues) > MAX_LOGGED_QUEUES:
            line["queues_omitted"] = len(queues) - MAX_LOGGED_QUEUES
        if trail.namespaces:
            namespaces = _queues(trail.namespaces)
            line["doc_namespaces"] = namespaces[:MAX_LOGGED_QUEUES]
            if len(namespaces) > MAX_LOGGED_QUEUES:
                line["doc_namespaces_omitted"] = len(namespaces) - MAX_LOGGED_QUEUES
        if trail.shown is not None:
            line |= {"shown": trail.shown, "hidden": trail.hidden}
        try:
            self._stream.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:
            log.warning("cannot write the audit log: %s", exc)

    def close(self) -> None:
        if self._owned:
            self._stream.close()


def _queues(entries: Iterable[QueueEntry]) -> list[dict[str, Any]]:
    """One item per queue (or prefix), its actions merged, in first-seen order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for item in entries:
        actions = merged.setdefault((item.exact, item.prefix), [])
        actions += [a for a in item.actions if a not in actions]
    return [
        {"prefix": prefix, "actions": actions} if prefix else {"queue": exact, "actions": actions}
        for (exact, prefix), actions in merged.items()
    ]
