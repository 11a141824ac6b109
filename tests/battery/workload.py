"""One worker process of the battery's commit-once workload (row a, and the load of b and c).

Usage: python workload.py CONFIG_JSON   (fields: see :class:`Config`)

Each of ``coroutines`` loops claims a task from the input queues (or the second stage),
runs its "side effect" (a line in the side-effect log naming the claimed version), may
overrun its lease on purpose, then commits: one modify that deletes the task (or moves it
to the second stage) and inserts a commit marker (history.py, checker.py) naming the source
and the version it committed. Some commits take a second task along (a two-task modify).
A reader loop snapshots modifies while they are in flight (C7). Everything lands in the
history and side-effect logs; the process exits when the input and second-stage queues are
empty (all tasks committed by someone) or at its deadline.

Store or service failures (a crash test kills them) are retried until ``retry_s`` passes:
an unanswered attempt is an ``info`` operation, and a retried modify that is then refused
is checked with a read (did the first attempt land?).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import random
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import entroq_redis
from battery.history import EffectLog, HistoryWriter, claimed, task_out
from entroq_redis import DependencyError, EntroQError, Finish, Task, TaskChange, TaskData, Worker, WorkerEvent

# Errors after which a call may or may not have happened; retried in crash tests.
UNCERTAIN = (entroq_redis.StoreUnavailableError, entroq_redis.OutcomeUnknownError, entroq_redis.StoreError)


@dataclasses.dataclass
class Config:
    url: str
    namespace: str
    proc: str
    history: str
    effects: str
    queues: list[str]
    done: str = "done"
    stage2: str = ""
    lease_ms: int = 500
    coroutines: int = 2
    overrun_p: float = 0.05
    overrun_factor: float = 1.5
    pair_p: float = 0.1
    move_p: float = 0.1
    reads: bool = True
    deadline_s: float = 120.0
    retry_s: float = 0.0
    seed: int = 0
    # "raw": claim and modify calls of its own; "worker": the library's Worker (renewals,
    # its own commit), whose handler sleeps past the lease (renewed) or is frozen (not).
    mode: str = "raw"
    summary: str = ""


class Workload:
    def __init__(self, config: Config, eq: entroq_redis.EntroQ) -> None:
        self.config = config
        self.eq = eq
        self.rng = random.Random(config.seed)
        self.history = HistoryWriter(config.history, config.proc)
        self.effects = EffectLog(config.effects, config.proc)
        self.deadline = time.monotonic() + config.deadline_s
        self.in_flight: dict[str, list[str]] = {}
        self.finished = False

    def close(self) -> None:
        self.history.close()
        self.effects.close()

    async def run(self) -> None:
        if self.config.mode == "worker":
            await self.run_worker()
            return
        async with trio.open_nursery() as nursery:
            if self.config.reads:
                nursery.start_soon(self.reader)
            async with trio.open_nursery() as loops:
                for n in range(self.config.coroutines):
                    loops.start_soon(self.loop, n)
            self.finished = True
            nursery.cancel_scope.cancel()

    async def run_worker(self) -> None:
        """The library's Worker does the claiming, renewing and committing.

        Only the side effects and the commits it reports are logged: a commit is logged as
        deleting the task at an unknown version (the Worker renews, so the version it
        names is not the one it claimed) and inserting the task's commit marker.
        """
        config = self.config
        queues = [*config.queues, *([config.stage2] if config.stage2 else [])]
        events: dict[str, int] = {}
        markers: dict[tuple[str, int], str] = {}

        def on_event(event: WorkerEvent) -> None:
            events[event.kind] = events.get(event.kind, 0) + 1
            if event.kind == "done":
                marker = markers.pop((event.task.id, event.task.version))
                self.history.write(
                    {
                        "op": "modify",
                        "ti": time.monotonic(),
                        "td": time.monotonic(),
                        "type": "ok",
                        "batch": marker,
                        "ins": [[marker, config.done]],
                        "dels": [[event.task.id, None]],
                    }
                )
                self.effects.committed(event.task, config.proc)

        async def handle(task: Task) -> Finish:
            self.effects.effect(task, config.proc)
            if self.rng.random() < config.overrun_p:
                # Past the lease: the Worker renews it meanwhile (unless the process is frozen).
                await trio.sleep(config.lease_ms * config.overrun_factor / 1000)
            marker = {"src": task.id, "v": task.version, "stage": "done", "p": config.proc}
            marker_id = "r-" + secrets.token_hex(12)
            markers[(task.id, task.version)] = marker_id
            return Finish(inserts=[TaskData(config.done, id=marker_id, value=json.dumps(marker).encode())])

        worker = Worker(
            self.eq,
            queues,
            handle,
            lease_ms=config.lease_ms,
            concurrency=config.coroutines,
            on_event=on_event,
            claim_error_delay_s=0.1,
            grace_s=config.lease_ms / 1000,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            # Only the store knows when every process's tasks are done.
            while time.monotonic() < self.deadline and not await self.all_done():  # noqa: ASYNC110
                await trio.sleep(0.3)
            worker.stop()
        if config.summary:
            await trio.Path(config.summary).write_text(json.dumps(events))

    async def retrying(self, call: Any) -> Any:
        """Runs ``call`` until it returns, retrying uncertain failures within retry_s."""
        give_up = time.monotonic() + self.config.retry_s
        delay = 0.02
        while True:
            try:
                return await call()
            except UNCERTAIN:
                if time.monotonic() > min(give_up, self.deadline):
                    raise
                await trio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def all_done(self) -> bool:
        watched = [*self.config.queues, *([self.config.stage2] if self.config.stage2 else [])]
        try:
            sizes = await self.retrying(lambda: self.eq.queues(exact=watched))
        except UNCERTAIN:
            return False
        return not sizes

    async def claim(self, eq: entroq_redis.EntroQ, queues: list[str], wait: bool) -> Task | None:
        try:
            with self.history.op("claim", queues=queues, claimant=eq.claimant_id) as record:
                if wait:
                    task = await eq.claim(queues, self.config.lease_ms, timeout_s=0.3)
                else:
                    found = await eq.try_claim(queues, self.config.lease_ms)
                    if found is None:
                        return None
                    task = found
                record["task"] = claimed(task)
                return task
        except entroq_redis.ClaimTimeoutError:
            return None
        except UNCERTAIN:
            await trio.sleep(0.05)
            return None

    async def loop(self, n: int) -> None:
        config = self.config
        eq = self.eq.as_claimant(f"{config.proc}.{n}.{secrets.token_hex(4)}")
        proc = f"{config.proc}.{n}"
        queues = [*config.queues, *([config.stage2] if config.stage2 else [])]
        while time.monotonic() < self.deadline:
            task = await self.claim(eq, queues, wait=True)
            if task is None:
                if await self.all_done():
                    return
                continue
            held = [task]
            self.effects.effect(task, proc)
            if self.rng.random() < config.overrun_p:
                # A handler that runs past its lease: the task may be claimed again meanwhile.
                await trio.sleep(config.lease_ms * config.overrun_factor / 1000)
            if self.rng.random() < config.pair_p:
                second = await self.claim(eq, queues, wait=False)
                if second is not None:
                    self.effects.effect(second, proc)
                    if second.id == task.id:
                        # Our own task again: its lease ran out during an overrun and we took
                        # it anew. Only the newer claim can commit it.
                        held = [second]
                    else:
                        held.append(second)
            await self.commit(eq, proc, held)

    async def commit(self, eq: entroq_redis.EntroQ, proc: str, held: list[Task]) -> None:
        config = self.config
        batch = secrets.token_hex(8)
        inserts: list[TaskData] = []
        changes: list[TaskChange] = []
        deletes = []
        for task in held:
            move = (
                len(held) == 1
                and config.stage2
                and task.queue != config.stage2
                and self.rng.random() < config.move_p
            )
            stage = "move" if move else "done"
            marker = {"src": task.id, "v": task.version, "stage": stage, "batch": batch, "p": proc}
            inserts.append(
                TaskData(config.done, id="r-" + secrets.token_hex(12), value=json.dumps(marker).encode())
            )
            if move:
                # Moved to the second stage and released at once (at = now).
                changes.append(TaskChange(task.id, task.version, config.stage2, value=task.value))
            else:
                deletes.append(task.as_id())
        stages = [json.loads(d.value)["stage"] for d in inserts]
        fields = {
            "batch": batch,
            "ins": [[d.id, d.queue] for d in inserts],
            "chg": [[c.id, c.version, c.queue] for c in changes],
            "dels": [[d.id, d.version] for d in deletes],
        }
        self.in_flight[batch] = [d.id or "" for d in inserts] + [t.id for t in held]
        give_up = time.monotonic() + config.retry_s
        uncertain = False
        delay = 0.02
        try:
            while True:
                try:
                    with self.history.op("modify", claimant=eq.claimant_id, **fields) as record:
                        inserted, changed = await eq.modify(inserts=inserts, changes=changes, deletes=deletes)
                        record["out"] = [task_out(t) for t in inserted + changed]
                    for task, stage in zip(held, stages, strict=True):
                        self.effects.committed(task, proc, stage)
                    return
                except DependencyError:
                    if uncertain and await self.landed(eq, inserts):
                        for task, stage in zip(held, stages, strict=True):
                            self.effects.committed(task, proc, stage)
                    return
                except UNCERTAIN:
                    uncertain = True
                    if time.monotonic() > min(give_up, self.deadline):
                        return
                    await trio.sleep(delay)
                    delay = min(delay * 2, 0.5)
        finally:
            self.in_flight.pop(batch, None)

    async def landed(self, eq: entroq_redis.EntroQ, inserts: list[TaskData]) -> bool:
        """After an unanswered attempt and a refused retry: did the first attempt apply?"""
        ids = [d.id or "" for d in inserts]
        try:
            with self.history.op("read", ids=ids) as record:
                found = await self.retrying(lambda: eq.tasks(ids=ids))
                record["seen"] = [[t.id, t.version, t.queue] for t in found]
        except EntroQError:
            return False
        return bool(found)

    async def reader(self) -> None:
        """Snapshots in-flight modifies: all of one modify is visible, or none of it (C7)."""
        while not self.finished:
            if not self.in_flight:
                await trio.sleep(0.005)
                continue
            ids = self.rng.choice(list(self.in_flight.values()))
            try:
                with self.history.op("read", ids=ids) as record:
                    found = await self.eq.tasks(ids=ids)
                    record["seen"] = [[t.id, t.version, t.queue] for t in found]
            except EntroQError:
                await trio.sleep(0.05)
            await trio.sleep(0.002)


class Runnable(Protocol):
    async def run(self) -> None: ...

    def close(self) -> None: ...


async def run_connected(
    url: str, namespace: str, retry_s: float, make: Callable[[entroq_redis.EntroQ], Runnable]
) -> None:
    """Connects (retrying while the store is down, for up to ``retry_s``) and runs one workload."""
    give_up = time.monotonic() + retry_s
    while True:
        try:
            async with entroq_redis.connect(url, namespace=namespace) as eq:
                workload = make(eq)
                try:
                    await workload.run()
                finally:
                    workload.close()
            return
        except entroq_redis.StoreUnavailableError:
            # connect() checks the store; a crash test may have it down right now.
            if time.monotonic() > give_up:
                raise
            await trio.sleep(0.1)


async def main(config: Config) -> None:
    await run_connected(config.url, config.namespace, config.retry_s, lambda eq: Workload(config, eq))


if __name__ == "__main__":
    trio.run(main, Config(**json.loads(sys.argv[1])))
