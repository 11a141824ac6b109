"""Child processes that evaluate ``--authz rego`` decisions, each replaced after a while.

Why processes: rego-cpp (regopy 1.5.2) leaks memory on every query that calls built-ins such as
``crypto.sha256`` or ``io.jwt.decode_verify`` (about 13 KB per decision of the example policy)
and never gives it back, not even when the interpreter is freed; a decision over a large input
can also leave a child hundreds of MB larger. Evaluated in the service's own process, that
memory would grow it without bound; in a child that is replaced after
``DECISIONS_PER_PROCESS`` decisions, or as soon as it holds more than ``MAX_RSS_MB``, it is
bounded.

A child is also replaced at once when it fails a decision in any way other than the policy
itself failing: no answer within ``DECISION_TIMEOUT_S``, an answer that is not the one asked
for, its process gone (``authz.rego_channel`` says how answers are matched to requests).
That decision fails closed; the next one goes to a fresh child.

Why not a pool from the standard library: ``concurrent.futures.ProcessPoolExecutor`` with
``max_tasks_per_child`` can deadlock when it replaces a worker on Python 3.11-3.13
(https://github.com/python/cpython/issues/115634); ``multiprocessing.Pool(maxtasksperchild=...)``
routes every decision through two handler threads (about 1.5 ms more per decision on this VM)
and replaces its workers all at once, which stalls decisions for the half second a new
interpreter needs; and both start children with multiprocessing's spawn, which re-runs the
parent's ``__main__`` file (and fails when there is none, as under ``python -c``). Here each
child is a plain
``python -m entroq_redis_server.authz.rego_child`` (its protocol is documented there), a
decision goes straight over its pipes from the calling thread, and a successor starts warming
up before its predecessor retires.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Sequence
from typing import Any

from .decision import PolicyFailure
from .rego_channel import DecisionChild

log = logging.getLogger(__name__)

# A child retires after about this many decisions: at ~13 KB leaked per decision of the
# example policy it stays within ~65 MB of its start, and its replacement (a new interpreter
# that imports regopy and compiles the policy, about half a second of CPU) costs ~0.1 ms per
# decision.
DECISIONS_PER_PROCESS = 5_000
# The successor starts when this share of its predecessor's decisions is done.
SUCCESSOR_AT = 0.8
# A decision of the example policy takes about a millisecond, a listing's batch of 500 queue
# names about 0.2 s; 2 s (the OPA sidecar's default limit too) is ten times that, and caps how
# long one request can hold a child. One not answered by then fails closed (503) and its child
# is killed. A new child's start-up does not count: the limit starts when the child is ready.
DECISION_TIMEOUT_S = 2.0
# A child starts at about 45 MB and reaches about 130 MB by the count above; one that holds
# more than this (a decision over a large input leaves rego-cpp's memory behind) is replaced
# after that decision, so the children's memory stays bounded whatever callers send. Its
# resident size is read from /proc after each decision (about a microsecond); where /proc is
# missing, children retire by count only.
MAX_RSS_MB = 256


class _Child(DecisionChild):
    """A decision child with its place in the rotation."""

    def __init__(self, setup_line: bytes) -> None:
        super().__init__(setup_line)
        # Children retire at different counts, so they are not all replaced at once.
        self.retire_after = int(DECISIONS_PER_PROCESS * random.uniform(0.75, 1.25))
        self.too_large = False
        self.successor: _Child | None = None

    @property
    def usable(self) -> bool:
        return not self.broken and not self.too_large and self.decisions < self.retire_after

    @property
    def wants_successor(self) -> bool:
        return self.successor is None and self.decisions >= SUCCESSOR_AT * self.retire_after


class DecisionProcesses:
    """Children used by one calling thread at a time: take one, send a decision, give it back."""

    def __init__(
        self,
        modules: Sequence[tuple[str, str]],
        data_json: str,
        *,
        time_limit_s: float = DECISION_TIMEOUT_S,
        max_rss_mb: float = MAX_RSS_MB,
    ) -> None:
        self._setup_line = (
            json.dumps({"modules": [list(m) for m in modules], "data": data_json}).encode() + b"\n"
        )
        self._time_limit_s = time_limit_s
        self._max_rss = max_rss_mb * 2**20
        self._lock = threading.Lock()
        self._free: list[_Child] = []  # taken from the end
        self._all: set[_Child] = set()  # successors warming up included
        self._in_use: set[_Child] = set()
        self._stopping: list[threading.Thread] = []  # retired children exiting
        self._closed = False

    def evaluate(self, document_json: str) -> Any:
        """The decision for ``document_json`` (the caller limits how many threads call at once).

        Raises:
            PolicyFailure: the policy failed, or its child gave no usable answer (that child is
                then replaced).
        """
        child = self._take()
        try:
            return child.decide(document_json, self._time_limit_s)
        finally:
            if not child.broken:
                resident = child.resident_bytes()
                child.too_large = resident is not None and resident > self._max_rss
            self._give_back(child)

    def _take(self) -> _Child:
        gone = []
        try:
            with self._lock:
                if self._closed:
                    raise PolicyFailure("the embedded policy engine is shut down")
                while self._free:
                    child = self._free.pop()
                    if child.process.poll() is None and not child.broken:
                        break
                    # Ended while idle (the OOM killer, an operator), or never reachable: not
                    # worth a failed decision.
                    gone.append(child)
                    self._all.discard(child)
                else:
                    child = self._start()
                self._in_use.add(child)
                return child
        finally:
            for child in gone:
                self._retire(child)

    def _start(self) -> _Child:
        child = _Child(self._setup_line)
        self._all.add(child)
        return child

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            self._in_use.discard(child)
            closed = self._closed
            if closed:
                retired = None
            elif child.usable:
                retired = None
                if child.wants_successor:
                    child.successor = self._start_quietly()
                self._free.append(child)
            else:
                retired = child
                self._all.discard(child)
                replacement = child.successor or self._start_quietly()
                if replacement is not None:
                    self._free.append(replacement)
        if closed:
            child.stop()  # close() left it to this thread
        elif retired is not None:
            if retired.broken or retired.too_large:
                log.warning(
                    "retiring an embedded policy engine process (pid %d, %s)",
                    retired.process.pid,
                    "it failed a decision" if retired.broken else "above its memory limit",
                )
            self._retire(retired)

    def _start_quietly(self) -> _Child | None:
        """A child started ahead of need (None if it cannot start now: the next decision tries)."""
        try:
            return self._start()
        except PolicyFailure as exc:
            log.warning("%s", exc)
            return None

    def _retire(self, child: _Child) -> None:
        # Waiting for it to exit (a ~100 ms interpreter teardown) is not this decision's business.
        stopping = threading.Thread(target=child.stop, name="entroq-authz-rego-stop", daemon=True)
        stopping.start()
        with self._lock:
            self._stopping = [t for t in self._stopping if t.is_alive()] + [stopping]

    def close(self) -> None:
        """Stops every child; one still deciding is stopped by its thread when it gives it back."""
        with self._lock:
            self._closed = True
            idle = [child for child in self._all if child not in self._in_use]
            self._all, self._free = set(), []
        for child in idle:
            child.stop()
        for stopping in list(self._stopping):
            stopping.join()
