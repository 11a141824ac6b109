"""Child processes that evaluate ``--authz rego`` decisions, each replaced after a while.

Why processes: rego-cpp (regopy 1.5.2) leaks memory on every query that calls built-ins such as
``crypto.sha256`` or ``io.jwt.decode_verify`` (about 13 KB per decision of the example policy)
and never gives it back, not even when the interpreter is freed. Evaluated in the service's
own process, the leak would grow it without bound; in a child that is replaced after
``DECISIONS_PER_PROCESS`` decisions, it is bounded.

Why not a pool from the standard library: ``concurrent.futures.ProcessPoolExecutor`` with
``max_tasks_per_child`` can deadlock when it replaces a worker on Python 3.11-3.13 (cpython
issue 115634); ``multiprocessing.Pool(maxtasksperchild=...)`` routes every decision through two
handler threads (about 1.5 ms more per decision on this VM) and replaces its workers all at
once, which stalls decisions for the half second a new interpreter needs; and both start
children with multiprocessing's spawn, which re-runs the parent's ``__main__`` file (and fails
when there is none, as under ``python -c``). Here each child is a plain
``python -m entroq_redis_server._authz_rego_child`` (its protocol is documented there), a
decision goes straight over its pipes from the calling thread, and a successor starts warming
up before its predecessor retires.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from ._authz_decision import PolicyFailure

# A child retires after about this many decisions: at ~13 KB leaked per decision of the
# example policy it stays within ~65 MB of its start, and its replacement (a new interpreter
# that imports regopy and compiles the policy, about half a second of CPU) costs ~0.1 ms per
# decision.
DECISIONS_PER_PROCESS = 5_000
# The successor starts when this share of its predecessor's decisions is done.
SUCCESSOR_AT = 0.8
# A decision takes about a millisecond (a new child's first one: its start-up, under a second);
# one not back by then fails closed, and that child is stopped.
DECISION_TIMEOUT_S = 10.0


class _Child:
    """One child process: the policy compiled once, then one decision per line."""

    def __init__(self, setup_line: bytes) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "entroq_redis_server._authz_rego_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._input: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._output: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._output, selectors.EVENT_READ)
        self._input.write(setup_line)
        self._input.flush()
        self.decisions = 0
        # Children retire at different counts, so they are not all replaced at once.
        self.retire_after = int(DECISIONS_PER_PROCESS * random.uniform(0.75, 1.25))
        self.broken = False  # no answer came back: a late one would be read as the next decision's
        self.successor: _Child | None = None

    def evaluate(self, document_json: str) -> Any:
        self.decisions += 1
        try:
            self._input.write(json.dumps(document_json).encode() + b"\n")
            self._input.flush()
            if not self._selector.select(DECISION_TIMEOUT_S):
                self.broken = True
                raise PolicyFailure(f"the embedded policy engine gave no answer in {DECISION_TIMEOUT_S:g} s")
            line = self._output.readline()
        except OSError as exc:
            self.broken = True
            raise PolicyFailure(f"the embedded policy engine's process failed: {exc!r}") from None
        if not line:
            self.broken = True
            raise PolicyFailure(f"the embedded policy engine's process ended (exit {self.process.poll()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise PolicyFailure(answer["error"])
        return answer["result"]

    @property
    def usable(self) -> bool:
        return not self.broken and self.decisions < self.retire_after

    @property
    def wants_successor(self) -> bool:
        return self.successor is None and self.decisions >= SUCCESSOR_AT * self.retire_after

    def stop(self) -> None:
        self._selector.close()
        self._input.close()  # the child sees the end of its input and exits
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._output.close()


class DecisionProcesses:
    """Children used by one calling thread at a time: take one, send a decision, give it back."""

    def __init__(self, modules: Sequence[tuple[str, str]], data_json: str) -> None:
        self._setup_line = (
            json.dumps({"modules": [list(m) for m in modules], "data": data_json}).encode() + b"\n"
        )
        self._lock = threading.Lock()
        self._free: list[_Child] = []  # taken from the end
        self._all: set[_Child] = set()  # successors warming up included
        self._stopping: list[threading.Thread] = []  # retired children exiting
        self._closed = False

    def evaluate(self, document_json: str) -> Any:
        """The decision for ``document_json`` (the caller limits how many threads call at once)."""
        child = self._take()
        try:
            return child.evaluate(document_json)
        finally:
            self._give_back(child)

    def _take(self) -> _Child:
        with self._lock:
            if self._closed:
                raise PolicyFailure("the embedded policy engine is shut down")
            if self._free:
                return self._free.pop()
            return self._start()

    def _start(self) -> _Child:
        child = _Child(self._setup_line)
        self._all.add(child)
        return child

    def _give_back(self, child: _Child) -> None:
        retired = None
        with self._lock:
            if self._closed:
                return
            if child.usable:
                if child.wants_successor:
                    child.successor = self._start()
                self._free.append(child)
            else:
                retired = child
                self._all.discard(child)
                self._free.append(child.successor or self._start())
        if retired is not None:
            # Waiting for it to exit (a ~100 ms interpreter teardown) is not this decision's business.
            stopping = threading.Thread(target=retired.stop, name="entroq-authz-rego-stop", daemon=True)
            stopping.start()
            with self._lock:
                self._stopping = [t for t in self._stopping if t.is_alive()] + [stopping]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._all, self._free = list(self._all), set(), []
        for child in children:
            child.stop()
        for stopping in self._stopping:
            stopping.join()
