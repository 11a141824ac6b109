"""A worker process the test freezes between claim and commit (battery row d).

Usage: python pauser.py URL NAMESPACE HISTORY EFFECTS

Reads commands on stdin, answers one JSON line each on stdout:

- ``claim QUEUE N LEASE_MS``: claims N tasks from QUEUE, runs their side effect, and renews
  them all in one modify to a lease of LEASE_MS from now (so they run out together);
  answers ``{"claimed": [[id, version], ...]}``;
- ``commit``: commits each held task alone (delete it, insert its commit marker) and
  answers ``{"results": [[id, version, outcome, http_status], ...]}`` with outcome ``ok``,
  ``refused:<KIND>/<reason>`` (DependencyError) or ``error:<class>``; http_status is the
  last HTTP status the commit got (0 over the Redis backend);
- ``exit``.

Between the two the test stops the whole process (SIGSTOP), like a long GC pause: the
process cannot renew, cannot notice its lease running out, and commits as soon as it runs
again.
"""

from __future__ import annotations

import json
import pathlib
import secrets
import sys

import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import entroq_redis
from battery.history import EffectLog, HistoryWriter, claimed, task_out
from entroq_redis import DependencyError, EntroQError, TaskData


async def main(url: str, namespace: str, history_path: str, effects_path: str) -> None:
    history = HistoryWriter(history_path, "pauser")
    effects = EffectLog(effects_path, "pauser")
    statuses: list[int] = []
    stdin = trio.wrap_file(sys.stdin)
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        client = getattr(eq.backend, "client", None)
        if client is not None:  # the HTTP backend: note each response's status

            async def note(response: object) -> None:
                statuses.append(int(getattr(response, "status_code", 0)))

            client.event_hooks["response"].append(note)
        held: list[entroq_redis.Task] = []
        while True:
            words = (await stdin.readline()).split()
            if not words or words[0] == "exit":
                break
            if words[0] == "claim":
                queue, count, lease_ms = words[1], int(words[2]), int(words[3])
                while len(held) < count:
                    # A long lease while taking the round (a busy machine may need seconds)...
                    with history.op("claim", queues=[queue], claimant=eq.claimant_id) as record:
                        task = await eq.try_claim(queue, 60_000)
                        if task is not None:
                            record["task"] = claimed(task)
                    if task is None:
                        break
                    effects.effect(task)
                    held.append(task)
                # ... then one renewal sets every lease to LEASE_MS from now, all at once.
                changes = [[t.id, t.version, t.queue] for t in held]
                with history.op(
                    "modify", batch=f"renew-{held[0].id}", claimant=eq.claimant_id, chg=changes
                ) as record:
                    held = await eq.renew_all_for(held, lease_ms)
                    record["out"] = [task_out(t) for t in held]
                answer: dict[str, object] = {"claimed": [[t.id, t.version] for t in held]}
            elif words[0] == "commit":
                results = []
                for task in held:
                    marker = json.dumps({"src": task.id, "v": task.version, "stage": "done", "p": "pauser"})
                    result = TaskData("done", id="r-" + secrets.token_hex(12), value=marker.encode())
                    statuses.clear()
                    try:
                        with history.op(
                            "modify",
                            batch=result.id,
                            claimant=eq.claimant_id,
                            ins=[[result.id, "done"]],
                            dels=[[task.id, task.version]],
                        ) as record:
                            inserted, _ = await eq.modify(inserts=[result], deletes=[task.as_id()])
                            record["out"] = [task_out(t) for t in inserted]
                        effects.committed(task)
                        outcome = "ok"
                    except DependencyError as exc:
                        outcome = "refused:" + ",".join(f"{f.kind}/{f.reason}" for f in exc.failures)
                    except EntroQError as exc:
                        outcome = f"error:{type(exc).__name__}"
                    results.append([task.id, task.version, outcome, statuses[-1] if statuses else 0])
                held.clear()
                answer = {"results": results}
            else:
                answer = {"error": f"unknown command {words[0]!r}"}
            print(json.dumps(answer), flush=True)
    history.close()
    effects.close()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:5])
