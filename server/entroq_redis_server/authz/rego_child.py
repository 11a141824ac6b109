"""One ``--authz rego`` child process: ``python -m entroq_redis_server.authz.rego_child FD``.

Channels: requests come in on stdin; answers go out on file descriptor ``FD``, a pipe the
service made for them alone. Before anything else (before regopy is loaded) the child points
its own file descriptor 1 at its stderr, which is the service's log: rego-cpp writes error
text to stdout (a JWT whose ``exp`` is a string, a number written with an exponent) and so
does a policy's ``print()``, and none of it may ever be read as an answer.

Protocol, one ASCII JSON text per line both ways (``json.dumps`` escapes line breaks and every
non-ASCII character, so neither the pipes' encoding nor a lone surrogate in a queue name can
garble a message):

- the first line in is ``{"modules": [[name, source], ...], "data": "<data JSON text>"}``; the
  child compiles the policy and answers ``{"id": 0, "ok": true, "result": null}`` (ready);
- then each line in is a request ``{"id": N, "input": "<input document JSON text>"}`` (N counts
  up from 1), and each answer echoes its ID: ``{"id": N, "ok": true, "result": ...}`` or
  ``{"id": N, "ok": false, "error": "..."}``.

Any exception other than the policy failing (:class:`PolicyFailure`) is answered too, with
``"retire": true`` added: the service fails that decision closed and replaces the child. A
setup that fails is answered the same way (ID 0), and a request that cannot be read is
answered with ``"id": null``; after either the child ends. The process ends when its input
does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from typing import Any


def main() -> None:
    # Ctrl-C reaches the whole process group; the service decides when this child ends (by
    # closing its input), so a decision in progress is still answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = int(sys.argv[1])
    os.set_inheritable(answers, False)
    # At the file-descriptor level, so that C++ code writing to stdout lands in the log too
    # (or nowhere, when the service runs without a stderr).
    try:
        os.dup2(2, 1)
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    # Loaded only now, with stdout already pointing at the log.
    from .decision import PolicyFailure
    from .rego import _Compiled

    try:
        setup = json.loads(sys.stdin.buffer.readline())
        compiled = _Compiled([tuple(module) for module in setup["modules"]], setup["data"])
    except Exception as exc:
        traceback.print_exc()
        _answer(answers, {"id": 0, "ok": False, "error": _unexpected(exc), "retire": True})
        return
    _answer(answers, {"id": 0, "ok": True, "result": None})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            request_id, document_json = request["id"], request["input"]
            if type(request_id) is not int or not isinstance(document_json, str):
                raise ValueError("a request is {'id': int, 'input': str}")
        except Exception:
            traceback.print_exc()
            _answer(answers, {"id": None, "ok": False, "error": "unreadable request", "retire": True})
            return
        try:
            text = json.dumps({"id": request_id, "ok": True, "result": compiled.evaluate(document_json)})
        except PolicyFailure as exc:
            text = json.dumps({"id": request_id, "ok": False, "error": str(exc)})
        except Exception as exc:
            traceback.print_exc()
            text = json.dumps({"id": request_id, "ok": False, "error": _unexpected(exc), "retire": True})
        try:
            _write(answers, text)
        except BrokenPipeError:
            return  # the service stopped listening: it replaced this child


def _unexpected(exc: BaseException) -> str:
    # The exception's text stays in the log: it may quote the request, and this message is
    # the HTTP answer's.
    return f"the embedded policy engine failed ({type(exc).__name__})"


def _answer(answers: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(BrokenPipeError):
        _write(answers, json.dumps(message))


def _write(answers: int, text: str) -> None:
    view = memoryview(text.encode() + b"\n")
    while view:
        view = view[os.write(answers, view) :]


if __name__ == "__main__":
    main()
