"""One ``--authz rego`` child process as the service sees it: requests in, answers matched by ID.

The child (``python -m entroq_redis_server.authz.rego_child``; its protocol is documented
there) reads requests on its stdin and writes answers on a pipe of their own, passed to it as
an extra file descriptor. rego-cpp writes error text to the process's stdout (a JWT whose
``exp`` is a string, a number written with an exponent, a policy's ``print()``): the child sends
its stdout to the service's log before it loads the engine, so only its answer loop writes to
the answer pipe.

Each request carries an ID and its answer must echo it. An answer that is late, not JSON, for
another request, malformed or missing (the process ended) fails that decision closed and
marks the child ``broken``: it is never asked again and is killed, so one bad answer cannot
shift later answers onto the wrong requests.

Every write and read has a deadline. A new child's start-up (a new interpreter importing
regopy and compiling the policy, about half a second, longer on a loaded machine) has its
own, generous limit; a decision's time limit starts once the child has said it is ready.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import IO, Any

from .decision import PolicyFailure

# A new child has this long to compile the policy and say it is ready. Only the operator's
# policy and data are compiled, nothing a caller sends, so this is no lever for an attacker.
STARTUP_TIMEOUT_S = 30.0
_READ_SIZE = 1 << 16
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _pipe_above_stdio() -> tuple[int, int]:
    """``os.pipe()`` with both ends above 2. A service started without stdin, stdout or stderr
    would get those numbers for it, and the child's stdout would then be its answer pipe."""
    ends = []
    for end in os.pipe():
        if end < 3:
            moved = fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(end)
            end = moved
        ends.append(end)
    return ends[0], ends[1]


class DecisionChild:
    """One child process: the policy compiled once, then one request at a time.

    Used by one thread at a time; ``stop`` is called once, when nobody uses it any more.
    """

    def __init__(self, setup_line: bytes) -> None:
        answers, answers_end = _pipe_above_stdio()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "entroq_redis_server.authz.rego_child", str(answers_end)],
                stdin=subprocess.PIPE,
                pass_fds=(answers_end,),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            os.close(answers)
            raise PolicyFailure(f"the embedded policy engine's process cannot start: {exc!r}") from None
        finally:
            # The child holds the only writing end, so its exit is the end of this pipe.
            os.close(answers_end)
        self._started = time.monotonic()
        try:
            # Held open: re-reading it costs about a microsecond, opening it again about seven.
            self._statm: int | None = os.open(f"/proc/{self.process.pid}/statm", os.O_RDONLY)
        except OSError:
            self._statm = None
        self._requests: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._answers = answers
        os.set_blocking(self._requests.fileno(), False)
        os.set_blocking(self._answers, False)
        self._writable = selectors.DefaultSelector()
        self._writable.register(self._requests.fileno(), selectors.EVENT_WRITE)
        self._readable = selectors.DefaultSelector()
        self._readable.register(self._answers, selectors.EVENT_READ)
        self._received = bytearray()
        self._last_id = 0
        self._ready = False
        self.decisions = 0
        self.broken = False  # a request went unanswered or was answered wrongly: never ask again
        # As much of the setup as the pipe takes now (all of it, for a policy of a few KB): the
        # child compiles while it waits to be used. The rest goes with the first decision.
        self._setup = memoryview(setup_line)
        try:
            self._setup = self._setup[os.write(self._requests.fileno(), self._setup) :]
        except BlockingIOError:
            pass
        except OSError as exc:
            self._fail(f"cannot be reached ({exc.strerror or exc!r})")  # marks it; the pool skips it

    def decide(self, document_json: str, time_limit_s: float) -> Any:
        """The policy's result for one input document (its JSON text).

        Raises:
            PolicyFailure: the policy failed, or the child gave no usable answer in time (then
                the child is ``broken``).
        """
        if self.broken:
            raise PolicyFailure("the embedded policy engine's process is being replaced")
        if not self._ready:
            deadline = self._started + STARTUP_TIMEOUT_S
            late = f"did not start within {STARTUP_TIMEOUT_S:g} s"
            self._send(self._setup, deadline, late)
            self._expect(0, deadline, late)
            self._ready = True
        self.decisions += 1
        self._last_id += 1
        deadline = time.monotonic() + time_limit_s
        late = f"gave no answer within the decision time limit ({time_limit_s:g} s)"
        request = {"id": self._last_id, "input": document_json}
        self._send(memoryview(json.dumps(request).encode() + b"\n"), deadline, late)
        return self._expect(self._last_id, deadline, late)

    def resident_bytes(self) -> int | None:
        """The child's resident memory (None where /proc is not there to tell it cheaply)."""
        if self._statm is None:
            return None
        try:
            return int(os.pread(self._statm, 256, 0).split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Ends the child: a working one when it sees the end of its input, a broken one at once."""
        if self.broken:
            self.process.kill()  # it may be stuck in a decision, or saying things nobody asked
        with contextlib.suppress(OSError):  # it had already gone
            self._requests.close()
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._writable.close()
        self._readable.close()
        os.close(self._answers)
        if self._statm is not None:
            os.close(self._statm)

    def _send(self, view: memoryview, deadline: float, late: str) -> None:
        try:
            while view:
                try:
                    view = view[os.write(self._requests.fileno(), view) :]
                except BlockingIOError:
                    if not self._writable.select(max(0.0, deadline - time.monotonic())):
                        raise self._fail(late) from None
        except OSError as exc:
            raise self._fail(f"cannot be reached ({exc.strerror or exc!r})") from None

    def _expect(self, request_id: int, deadline: float, late: str) -> Any:
        answer = self._read_answer(deadline, late)
        if not isinstance(answer, dict) or type(answer.get("id")) is not int:
            raise self._fail("gave an answer without a request ID")
        if answer["id"] != request_id:
            raise self._fail(f"answered request {answer['id']} when {request_id} was asked")
        ok, error = answer.get("ok"), answer.get("error")
        if not (ok is True and "result" in answer) and not (ok is False and isinstance(error, str)):
            raise self._fail("gave a malformed answer")
        if self._received:
            # Only one request is ever outstanding: more is as wrong as a garbled answer.
            raise self._fail("answered more than it was asked")
        if answer.get("retire") is True:
            # The child hit something unexpected; it says so, and is not asked again.
            self.broken = True
        if ok:
            return answer["result"]
        raise PolicyFailure(error)

    def _read_answer(self, deadline: float, late: str) -> Any:
        try:
            while b"\n" not in self._received:
                if not self._readable.select(max(0.0, deadline - time.monotonic())):
                    raise self._fail(late)
                try:
                    chunk = os.read(self._answers, _READ_SIZE)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise self._fail(f"ended ({self._how_it_ended()})")
                self._received += chunk
        except OSError as exc:
            raise self._fail(f"cannot be read ({exc.strerror or exc!r})") from None
        line, _, rest = self._received.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            raise self._fail("answered something that is not JSON") from None
        self._received = rest
        return answer

    def _how_it_ended(self) -> str:
        try:
            code = self.process.wait(0.5)  # its pipe closed as it exited: a moment at most
        except subprocess.TimeoutExpired:
            return "still exiting"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit {code}"

    def _fail(self, why: str) -> PolicyFailure:
        self.broken = True
        return PolicyFailure(f"the embedded policy engine's process {why}; it is replaced")
