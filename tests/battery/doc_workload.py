"""One worker process of the battery's document workloads (commit once for docs; kill -9 with docs).

Usage: python doc_workload.py CONFIG_JSON   (fields: see :class:`Config`)

Each of ``coroutines`` loops picks a key of the doc namespace, claims every doc of that key
(``claim_docs``) and commits one modify that, all or nothing:

- changes each claimed doc at the version the claim returned: its content is the JSON
  ``{"n": <counter + 1>, "last": <batch>}`` (the counter it read, plus one) and it is released;
- inserts a *receipt* doc (doc namespace ``receipts``, ID = the batch) naming the task and the
  doc versions the commit was built on;
- moves the source task it claimed first to the ``done`` queue with the batch as its value
  (with ``source`` set), or else inserts a marker task holding the batch.

So every accepted commit leaves three traces that must appear together or not at all (a
receipt, a done task, each doc's counter one higher), and every accepted change builds on the
counter of the version it names: two accepted changes writing the same counter of one doc
would be a lost update (doc_checker.py).

On purpose, some commits are stale: a handler overruns its lease (another worker may claim
the docs meanwhile), a commit is replayed after it was accepted (``stale``: the versions it
names are gone, so it must be refused), and some changes are made without a claim at the
versions a listing showed (``optimistic``: refused if the doc moved or is held meanwhile).

Store failures (a crash test kills the store) are retried within ``retry_s``: an unanswered
attempt is an ``info`` operation, the retry names the same versions, and a retry refused
after an unanswered attempt is resolved by reading the receipt (did the first one land?).

History records (history.py's conventions; doc_checker.py reads them):

- ``dclaim``: ``ns``, ``key``, ``claimant``; when ok ``out`` [[id, version, at_ms, modified_ms,
  claimant, n]];
- ``dread``: ``ns``, ``key``; ``seen`` [[id, version, n]] (one listing call);
- ``dmodify``: ``batch``, ``claimant``, ``how`` (claimed | optimistic | stale), ``dchg``
  [[id, version, n_read]], ``task`` [id, version] or null; when ok ``out`` [[id, version,
  at_ms, modified_ms, claimant, n]];
- ``receipt``: ``batch``, ``found`` (the read that resolves an unanswered commit).
The effects file gets one ``{"phase": "committed"}`` line per accepted commit (the crash
nemesis paces its kills by them).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import random
import secrets
import sys
import time
from typing import Any

import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import entroq_redis
from battery.history import HistoryWriter, claimed
from battery.workload import run_connected
from entroq_redis import DependencyError, Doc, DocChange, DocData, Task, TaskChange, TaskData

UNCERTAIN = (entroq_redis.StoreUnavailableError, entroq_redis.OutcomeUnknownError, entroq_redis.StoreError)
RECEIPTS = "receipts"


@dataclasses.dataclass
class Config:
    url: str
    namespace: str
    proc: str
    history: str
    effects: str
    keys: list[str]
    doc_namespace: str = "acct"
    # A queue of source tasks: each commit moves one to ``done``. "" = no tasks to claim (each
    # commit inserts a marker task instead) and each loop stops after ``commits`` attempts.
    source: str = ""
    done: str = "done"
    commits: int = 50
    lease_ms: int = 300
    coroutines: int = 2
    overrun_p: float = 0.05
    overrun_factor: float = 1.5
    stale_p: float = 0.1
    optimistic_p: float = 0.1
    deadline_s: float = 120.0
    retry_s: float = 0.0
    seed: int = 0
    summary: str = ""


def counter(doc: Doc) -> int:
    return int(json.loads(doc.content)["n"])


def doc_out(doc: Doc) -> list[Any]:
    return [doc.id, doc.version, doc.at_ms, doc.modified_ms, doc.claimant, counter(doc)]


class DocWorkload:
    def __init__(self, config: Config, eq: entroq_redis.EntroQ) -> None:
        self.config = config
        self.eq = eq
        self.rng = random.Random(config.seed)
        self.history = HistoryWriter(config.history, config.proc)
        self.effects = open(config.effects, "a", buffering=1)  # noqa: SIM115 (closed by close())
        self.deadline = time.monotonic() + config.deadline_s
        self.counts = {"attempts": 0, "committed": 0, "refused": 0, "claims_refused": 0, "stale": 0}

    def close(self) -> None:
        self.history.close()
        self.effects.close()
        if self.config.summary:
            pathlib.Path(self.config.summary).write_text(json.dumps(self.counts))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for n in range(self.config.coroutines):
                nursery.start_soon(self.loop, n)

    async def retrying(self, call: Any) -> Any:
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

    async def sources_left(self) -> bool:
        try:
            sizes = await self.retrying(lambda: self.eq.queues(exact=[self.config.source]))
        except UNCERTAIN:
            return True
        return bool(sizes)

    # --- one loop ------------------------------------------------------------------------

    async def loop(self, n: int) -> None:
        config = self.config
        eq = self.eq.as_claimant(f"{config.proc}.{n}.{secrets.token_hex(4)}")
        attempts = 0
        while time.monotonic() < self.deadline:
            if not config.source and attempts >= config.commits:
                return
            attempts += 1
            task: Task | None = None
            if config.source:
                task = await self.claim_task(eq)
                if task is None:
                    if not await self.sources_left():
                        return
                    continue
            key = self.rng.choice(config.keys)
            if task is None and self.rng.random() < config.optimistic_p:
                seen = await self.read(eq, key)
                if seen:
                    await self.commit(eq, key, seen, None, "optimistic")
                continue
            docs = await self.claim_docs(eq, key)
            for _ in range(5 if task is not None else 0):
                if docs is not None:
                    break
                # Holding a task: try other keys before letting its lease run out.
                await trio.sleep(0.005)
                key = self.rng.choice(config.keys)
                docs = await self.claim_docs(eq, key)
            if not docs:
                await trio.sleep(0.002)
                continue
            if self.rng.random() < config.overrun_p:
                # Past the lease: another worker may claim these docs (and the task) meanwhile.
                await trio.sleep(config.lease_ms * config.overrun_factor / 1000)
            accepted = await self.commit(eq, key, docs, task, "claimed")
            if accepted and self.rng.random() < config.stale_p:
                # The same change again, at the versions just replaced: must be refused.
                await self.commit(eq, key, docs, task, "stale")

    async def claim_task(self, eq: entroq_redis.EntroQ) -> Task | None:
        try:
            with self.history.op("claim", queues=[self.config.source], claimant=eq.claimant_id) as record:
                task = await eq.claim(self.config.source, self.config.lease_ms * 4, timeout_s=0.3)
                record["task"] = claimed(task)
                return task
        except entroq_redis.ClaimTimeoutError:
            return None
        except UNCERTAIN:
            await trio.sleep(0.05)
            return None

    async def claim_docs(self, eq: entroq_redis.EntroQ, key: str) -> list[Doc] | None:
        """The docs of ``key`` now held by this loop, or None if refused or unanswered."""
        ns = self.config.doc_namespace
        try:
            with self.history.op("dclaim", ns=ns, key=key, claimant=eq.claimant_id) as record:
                docs: list[Doc] = await eq.claim_docs(ns, key, self.config.lease_ms)
                record["out"] = [doc_out(d) for d in docs]
                return docs
        except DependencyError:
            self.counts["claims_refused"] += 1
            return None
        except UNCERTAIN:
            await trio.sleep(0.05)
            return None

    async def read(self, eq: entroq_redis.EntroQ, key: str) -> list[Doc]:
        ns = self.config.doc_namespace
        try:
            with self.history.op("dread", ns=ns, key=key) as record:
                docs: list[Doc] = await eq.docs(ns, key_start=key, key_end=key + "\x00")
                record["seen"] = [[d.id, d.version, counter(d)] for d in docs]
                return docs
        except UNCERTAIN:
            await trio.sleep(0.05)
            return []

    async def commit(
        self, eq: entroq_redis.EntroQ, key: str, docs: list[Doc], task: Task | None, kind: str
    ) -> bool:
        """One all-or-nothing modify (module doc); True when it was applied."""
        config = self.config
        batch = secrets.token_hex(8)
        doc_changes = [
            DocChange(
                d.namespace,
                d.id,
                d.version,
                key=d.key,
                secondary_key=d.secondary_key,
                content=json.dumps({"n": counter(d) + 1, "last": batch}).encode(),
                at=None,  # released by the commit
            )
            for d in docs
        ]
        receipt = {"task": task.id if task else "", "docs": [[d.id, d.version] for d in docs], "key": key}
        doc_inserts = [DocData(RECEIPTS, id=batch, key=key, content=json.dumps(receipt).encode())]
        inserts: list[TaskData] = []
        changes: list[TaskChange] = []
        if task is not None:
            changes.append(TaskChange(task.id, task.version, config.done, value=batch.encode()))
        else:
            inserts.append(TaskData(config.done, id="m-" + batch, value=batch.encode()))
        fields = {
            "batch": batch,
            "how": kind,
            "dchg": [[d.id, d.version, counter(d)] for d in docs],
            "task": [task.id, task.version] if task else None,
        }
        self.counts["attempts"] += 1
        self.counts["stale"] += kind == "stale"
        give_up = time.monotonic() + config.retry_s
        uncertain = False
        delay = 0.02
        while True:
            try:
                with self.history.op("dmodify", claimant=eq.claimant_id, **fields) as record:
                    result = await eq.modify(
                        inserts=inserts, changes=changes, doc_inserts=doc_inserts, doc_changes=doc_changes
                    )
                    record["out"] = [doc_out(d) for d in result.changed_docs]
                self.committed(batch)
                return True
            except DependencyError:
                if uncertain and await self.landed(eq, batch):
                    self.committed(batch)
                    return True
                self.counts["refused"] += 1
                return False
            except UNCERTAIN:
                uncertain = True
                if time.monotonic() > min(give_up, self.deadline):
                    return False
                await trio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def committed(self, batch: str) -> None:
        self.counts["committed"] += 1
        line = {"p": self.config.proc, "batch": batch, "phase": "committed", "t": time.monotonic()}
        self.effects.write(json.dumps(line, separators=(",", ":")) + "\n")

    async def landed(self, eq: entroq_redis.EntroQ, batch: str) -> bool:
        """After an unanswered attempt and a refused retry: is the first attempt's receipt there?"""
        try:
            with self.history.op("receipt", batch=batch) as record:
                found = await self.retrying(lambda: eq.docs(RECEIPTS, ids=[batch]))
                record["found"] = bool(found)
        except entroq_redis.EntroQError:
            return False
        return bool(found)


async def main(config: Config) -> None:
    await run_connected(config.url, config.namespace, config.retry_s, lambda eq: DocWorkload(config, eq))


if __name__ == "__main__":
    trio.run(main, Config(**json.loads(sys.argv[1])))
