"""One ``--authz rego`` child process: ``python -m entroq_redis_server._authz_rego_child``.

Protocol, one ASCII JSON text per line both ways (``json.dumps`` escapes line breaks and every
non-ASCII character, so neither the pipes' encoding nor a lone surrogate in a queue name can
garble a message): the first line in is ``{"modules": [[name, source], ...], "data": "<data
JSON text>"}``; then each line in is one input document's JSON text as a JSON string, and each
line out answers it, ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. The
process ends when its input does.
"""

from __future__ import annotations

import json
import signal
import sys

from ._authz_decision import PolicyFailure
from ._authz_rego import _Compiled


def main() -> None:
    # Ctrl-C reaches the whole process group; the service decides when this child ends (by
    # closing its input), so a decision in progress is still answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup = json.loads(sys.stdin.readline())
    compiled = _Compiled([tuple(module) for module in setup["modules"]], setup["data"])
    for line in sys.stdin:
        try:
            answer = {"ok": True, "result": compiled.evaluate(json.loads(line))}
        except PolicyFailure as exc:
            answer = {"ok": False, "error": str(exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
