"""The Worker taking docs with its tasks (``take_docs``, EntroQ's ``WithTakeDocs``), against a
real store and, through ``eq``/``other``, every backend in BACKENDS."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys

import pytest
import trio
from process_support import read_line

import entroq_redis
from entroq_redis import (
    Backoff,
    DependencyError,
    DocChange,
    DocData,
    DocNeed,
    DocSet,
    Finish,
    TakenDocs,
    Task,
    TaskData,
    Worker,
    WorkerEvent,
)


def account_of(task: Task) -> list[DocNeed]:
    """The tasks here name an account: its docs are the set ("accounts", account)."""
    account = json.loads(task.value)["account"]
    return [DocNeed("accounts", account, ids=(f"balance-{account}",))]


async def seed_account(eq: entroq_redis.EntroQ, account: str, balance: int) -> None:
    await eq.modify(
        doc_inserts=[
            DocData(
                "accounts",
                id=f"balance-{account}",
                key=account,
                secondary_key="balance",
                content=str(balance).encode(),
            ),
            DocData("accounts", id=f"owner-{account}", key=account, secondary_key="owner", content=b"ann"),
        ]
    )


async def set_is_free(eq: entroq_redis.EntroQ, namespace: str, key: str) -> bool:
    """True when ``eq`` can take the set now (and gives it back at once)."""
    try:
        claimed = await eq.claim_doc_sets([DocSet(namespace, key, omit_members=True)], 1_000)
    except DependencyError:
        return False
    [held] = claimed.sets
    await eq.modify(doc_changes=[DocChange(namespace, "", held.version, key=key, mode="lease")])
    return True


async def run_until(worker: Worker, done: trio.Event, timeout_s: float = 20) -> None:
    with trio.fail_after(timeout_s):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await done.wait()
            worker.stop()


async def test_docs_are_handed_in_and_committed_with_the_task(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await seed_account(eq, "a1", 10)
    await seed_account(eq, "a2", 10)
    await eq.modify(
        inserts=[
            TaskData("pay", value=json.dumps({"account": "a1", "amount": 5}).encode()),
            # Its Finish names a stale doc version: the whole commit must be refused.
            TaskData("pay", value=json.dumps({"account": "a2", "amount": 7, "stale": True}).encode()),
        ]
    )
    seen: dict[str, TakenDocs] = {}
    refused_meanwhile: list[str] = []
    events: list[WorkerEvent] = []
    settled = trio.Event()

    async def pay(task: Task, taken: TakenDocs) -> Finish:
        request = json.loads(task.value)
        account = request["account"]
        seen[account] = taken
        # While the worker holds the set, nobody else may take it or touch its docs.
        try:
            await other.claim_doc_sets([DocSet("accounts", account)], 1_000)
        except DependencyError as exc:
            refused_meanwhile.append(exc.doc_failures[0].kind)
        balance = taken.get("accounts", f"balance-{account}")
        assert balance is not None
        try:
            await other.modify(doc_changes=[balance.as_change(content=b"0")])
        except DependencyError as exc:
            refused_meanwhile.append(exc.doc_failures[0].kind)
        # A version the doc never had (nor the set's lock, which a holder may also name).
        version = balance.version + 1000 if request.get("stale") else balance.version
        return Finish(
            inserts=[TaskData("receipts", value=account.encode())],
            doc_changes=[
                DocChange(
                    "accounts",
                    balance.id,
                    version,
                    key=account,
                    secondary_key="balance",
                    content=str(int(balance.content) - request["amount"]).encode(),
                )
            ],
            doc_inserts=[DocData("accounts", key=account, secondary_key="payment", content=b"5")],
        )

    def record(event: WorkerEvent) -> None:
        events.append(event)
        if len(events) == 2:
            settled.set()

    worker = Worker(
        eq,
        "pay",
        pay,
        take_docs=account_of,
        lease_ms=5_000,
        concurrency=2,
        backoff=Backoff.fixed(60_000),
        on_event=record,
    )
    await run_until(worker, settled)

    kinds = {json.loads(e.task.value)["account"]: e.kind for e in events}
    assert kinds == {"a1": "done", "a2": "retried"}
    # Handed in: the set lock held by the worker (tied to the task's lease), its members.
    a1 = seen["a1"]
    [a1_set] = a1.sets
    # Each slot is a claimant of its own, so two slots can never share a set lock.
    assert (a1_set.namespace, a1_set.key) == ("accounts", "a1")
    assert a1_set.claimant in {f"{worker.claimant_id}/0", f"{worker.claimant_id}/1"}
    assert [(d.id, d.content) for d in a1.docs] == [("balance-a1", b"10"), ("owner-a1", b"ann")]
    assert refused_meanwhile == ["CLAIM"] * 4

    # a1: task deleted, doc changed, doc inserted and a task inserted, all in one modify.
    assert [t.value for t in await eq.tasks("receipts")] == [b"a1"]
    a1_docs = {d.secondary_key: d for d in await eq.docs("accounts", key_start="a1", key_end="a2")}
    assert set(a1_docs) == {"balance", "owner", "payment"}
    # A member written while its set is held goes above the set's lock version (lua/README.md
    # section 6, the two counters of a set in one order).
    assert (a1_docs["balance"].content, a1_docs["balance"].version, a1_docs["balance"].claimant) == (
        b"5",
        a1_set.version + 1,
        "",
    )
    # a2: the stale doc change refused the whole commit: nothing of it was written.
    a2_docs = await eq.docs("accounts", key_start="a2", key_end="a3")
    assert [(d.secondary_key, d.content, d.version) for d in a2_docs] == [
        ("balance", b"10", 0),
        ("owner", b"ann", 0),
    ]
    [retried] = await eq.tasks("pay")
    assert (
        retried.attempt == 1
        and "doc balance-a2 in doc namespace 'accounts' is at version 0, not 1000" in retried.err
    )
    # Both sets were released in the modify of their task's outcome.
    assert await set_is_free(other, "accounts", "a1")
    assert await set_is_free(other, "accounts", "a2")


@pytest.mark.parametrize("style", ["async handler", "sync handler"])
async def test_renewal_keeps_the_sets_through_a_handler_longer_than_the_lease(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ, style: str
) -> None:
    lease_ms = 600
    await seed_account(eq, "a1", 10)
    await eq.modify(inserts=[TaskData("slow", value=json.dumps({"account": "a1"}).encode())])
    started, finish_now = trio.Event(), trio.Event()

    async def slow_async(task: Task, taken: TakenDocs) -> Finish:
        started.set()
        await finish_now.wait()
        [balance] = [d for d in taken.docs if d.secondary_key == "balance"]
        return Finish(doc_changes=[balance.as_change(content=b"11")])

    def slow_sync(task: Task, taken: TakenDocs) -> Finish:
        trio.from_thread.run_sync(started.set)
        trio.from_thread.run(finish_now.wait)
        [balance] = [d for d in taken.docs if d.secondary_key == "balance"]
        return Finish(doc_changes=[balance.as_change(content=b"11")])

    events: list[WorkerEvent] = []
    worker = Worker(
        eq,
        "slow",
        slow_async if style == "async handler" else slow_sync,
        take_docs=account_of,
        lease_ms=lease_ms,
        max_tasks=1,
        on_event=events.append,
    )
    set_versions: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            # For four leases another claimant keeps trying the set and the task: renewal of
            # both in one modify must keep it out, and the set's version moves with each renewal.
            with trio.move_on_after(4 * lease_ms / 1000):
                while True:
                    try:
                        await other.claim_doc_sets([DocSet("accounts", "a1")], 10_000)
                        break  # taken: the assertion below reports it
                    except DependencyError as exc:
                        set_versions.append(exc.doc_failures[0].current_version)
                    assert await other.try_claim("slow", 10_000) is None
                    await trio.sleep(lease_ms / 6000)
            finish_now.set()
    assert [e.kind for e in events] == ["done"]
    assert len(set(set_versions)) >= 3, set_versions  # claimed, then renewed at least twice
    assert set_versions == sorted(set_versions)
    [balance, _] = await eq.docs("accounts")
    # Written once, above every version its set's lock had (lua/README.md section 6).
    assert balance.content == b"11" and balance.version > max(set_versions)
    assert await eq.tasks("slow") == []
    # The final commit named the renewed set version (a stale one would have been refused).
    assert await set_is_free(other, "accounts", "a1")


async def test_lost_lease_cancels_the_handler_and_commits_nothing(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await seed_account(eq, "a1", 10)
    [task], _ = await eq.modify(inserts=[TaskData("jobs", value=json.dumps({"account": "a1"}).encode())])
    started, cancelled = trio.Event(), trio.Event()

    async def handle(task: Task, taken: TakenDocs) -> Finish:
        started.set()
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled.set()
            raise
        return Finish(doc_changes=[taken.docs[0].as_change(content=b"must never appear")])

    events: list[WorkerEvent] = []
    worker = Worker(
        eq, "jobs", handle, take_docs=account_of, lease_ms=400, max_tasks=1, on_event=events.append
    )
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            # An operator force-releases the task as its holder and another worker claims it.
            [held] = await eq.tasks(ids=[task.id])
            await other.modify(changes=[held.as_change(at=None)], unsafe_claimant_id=held.claimant)
            await other.claim("jobs", 60_000, timeout_s=5)
            await cancelled.wait()
    assert [e.kind for e in events] == ["lost"]
    assert [(d.content, d.version) for d in await eq.docs("accounts")] == [(b"10", 0), (b"ann", 0)]
    # The loser gave the set back rather than holding it until its lease ran out.
    assert await set_is_free(other, "accounts", "a1")


async def test_contention_puts_the_task_back_without_counting_an_attempt(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await seed_account(eq, "a1", 10)
    await eq.modify(inserts=[TaskData("jobs", value=json.dumps({"account": "a1"}).encode())])
    blocker = (await other.claim_doc_sets([DocSet("accounts", "a1", omit_members=True)], 60_000)).sets[0]
    ran: list[int] = []
    events: list[WorkerEvent] = []
    put_back, done = trio.Event(), trio.Event()

    async def handle(task: Task, taken: TakenDocs) -> None:
        ran.append(task.attempt)

    def record(event: WorkerEvent) -> None:
        events.append(event)
        if event.kind == "retried":
            put_back.set()
        if event.kind == "done":
            done.set()

    worker = Worker(
        eq,
        "jobs",
        handle,
        take_docs=account_of,
        lease_ms=5_000,
        on_event=record,
        doc_contention_backoff=Backoff.fixed(50),
        max_attempts=1,
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await put_back.wait()
            [waiting] = await eq.tasks("jobs")
            assert (waiting.attempt, waiting.err) == (0, "")
            assert ran == []
            # The other holder lets go; the worker gets the task and its docs next time.
            await other.modify(
                doc_changes=[DocChange("accounts", "", blocker.version, key="a1", mode="lease")]
            )
            await done.wait()
            worker.stop()
    contention = [e for e in events if e.kind == "retried"]
    assert contention and all(e.message.startswith("doc contention: ") for e in contention)
    assert "doc set 'a1'" in contention[0].message
    # Not a failed attempt: with max_attempts=1 a counted one would have quarantined it.
    assert ran == [0] and await eq.tasks("jobs/err") == []
    assert await eq.tasks("jobs") == []


async def test_missing_doc_quarantines_the_task_and_empty_sets_are_handed_in(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await seed_account(eq, "a1", 10)
    await eq.modify(
        inserts=[
            TaskData("jobs", value=b"ghost"),  # names a doc that does not exist
            TaskData("jobs", value=b"nonempty"),  # needs at least one doc in an empty set
            TaskData("jobs", value=b"create"),  # an empty set, no requirement: handler runs
            TaskData("jobs", value=b"bad take"),  # take_docs raises
        ]
    )

    def needs(task: Task) -> list[DocNeed | DocSet | tuple[str, str]]:
        if task.value == b"ghost":
            return [("accounts", "zz"), DocNeed("accounts", "a1", ids=("balance-a1", "ghost"))]
        if task.value == b"nonempty":
            return [DocNeed("accounts", "nobody", nonempty=True)]
        if task.value == b"create":
            return [("accounts", "new")]
        raise ValueError("cannot tell which docs")

    ran: list[bytes] = []

    def handle(task: Task, taken: TakenDocs) -> Finish:  # a plain handler, run in a thread
        ran.append(task.value)
        [new_set] = taken.sets
        assert (new_set.key, taken.docs) == ("new", [])
        return Finish(doc_inserts=[DocData("accounts", id="first", key="new", content=b"created")])

    settled = trio.Event()
    events: list[WorkerEvent] = []

    def record(event: WorkerEvent) -> None:
        events.append(event)
        if len(events) == 4:
            settled.set()

    worker = Worker(eq, "jobs", handle, take_docs=needs, lease_ms=5_000, max_attempts=1, on_event=record)
    await run_until(worker, settled)

    assert ran == [b"create"]
    assert sorted((e.task.value, e.kind) for e in events) == [
        (b"bad take", "quarantined"),
        (b"create", "done"),
        (b"ghost", "quarantined"),
        (b"nonempty", "quarantined"),
    ]
    quarantined = {t.value: t for t in await eq.tasks("jobs/err")}
    assert quarantined[b"ghost"].err == "missing doc 'ghost' in doc namespace 'accounts', key 'a1'"
    assert quarantined[b"nonempty"].err == "missing any doc in doc namespace 'accounts', key 'nobody'"
    assert quarantined[b"bad take"].err == "ValueError: cannot tell which docs"
    assert all(t.attempt == 1 for t in quarantined.values())
    assert [(d.id, d.content) for d in await eq.docs("accounts", key_start="new")] == [("first", b"created")]
    # Every set taken was released with its task's outcome, the quarantines' included.
    for key in ("a1", "zz", "nobody", "new"):
        assert await set_is_free(other, "accounts", key), key


async def test_stop_releases_the_task_and_its_sets(
    eq: entroq_redis.EntroQ, other: entroq_redis.EntroQ
) -> None:
    await seed_account(eq, "a1", 10)
    await eq.modify(inserts=[TaskData("jobs", value=json.dumps({"account": "a1"}).encode())])
    started = trio.Event()

    async def handle(task: Task, taken: TakenDocs) -> None:
        started.set()
        await trio.sleep(60)

    worker = Worker(eq, "jobs", handle, take_docs=account_of, lease_ms=10_000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            worker.stop(grace_s=0)
    assert worker.counts["released"] == 1
    [task] = await eq.tasks("jobs")
    assert task.claimant == "" and task.at_ms <= await eq.time() and task.attempt == 0
    assert await set_is_free(other, "accounts", "a1")


# One worker process taking docs: each task names an account; the handler adds one to the
# account's counter doc and commits that change with the task's delete.
COUNTING_WORKER = """
import signal, sys, trio, entroq_redis
from entroq_redis import Backoff, DocNeed, Finish, Worker

url, namespace, log_path = sys.argv[1:4]

async def main():
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        with open(log_path, "a") as log:
            async def count(task, taken):
                [counter] = taken.docs
                log.write(task.id + "\\n")
                log.flush()
                await trio.sleep(0.001)
                return Finish(doc_changes=[counter.as_change(content=str(int(counter.content) + 1).encode())])

            def needs(task):
                return [DocNeed("counters", task.value.decode(), ids=("n-" + task.value.decode(),))]

            worker = Worker(eq, "count", count, take_docs=needs, lease_ms=3_000, concurrency=4,
                            doc_contention_backoff=Backoff.fixed(20, jitter=0.5))
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker.run)
                    print("ready", flush=True)
                    async for _ in signals:
                        worker.stop(grace_s=5)
                        break

trio.run(main)
"""


async def test_two_processes_contending_for_doc_sets_lose_no_update(
    backend_url: str, namespace: str, eq: entroq_redis.EntroQ, tmp_path: pathlib.Path
) -> None:
    accounts = ["x", "y", "z"]
    tasks_per_account = 30
    await eq.modify(doc_inserts=[DocData("counters", id=f"n-{a}", key=a, content=b"0") for a in accounts])
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    procs = [
        await trio.lowlevel.open_process(
            [sys.executable, "-c", COUNTING_WORKER, backend_url, namespace, str(log)], stdout=subprocess.PIPE
        )
        for log in logs
    ]
    try:
        with trio.fail_after(120):
            for proc in procs:
                assert proc.stdout is not None
                assert await read_line(proc.stdout) == b"ready\n"
            inserted, _ = await eq.modify(
                inserts=[
                    TaskData("count", value=a.encode()) for a in accounts for _ in range(tasks_per_account)
                ]
            )
            while True:
                if not await eq.queues(exact=["count"]):
                    break
                await trio.sleep(0.05)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()

    # Eight handlers at once over three sets: the locks made them take turns, and every
    # increment was committed with its task, none on a stale read.
    counters = {d.key: (int(d.content), d.claimant) for d in await eq.docs("counters")}
    assert counters == {a: (tasks_per_account, "") for a in accounts}
    # Each increment moved the version at least once (more when it also passed a lock version).
    assert all(d.version >= tasks_per_account for d in await eq.docs("counters"))
    handled = [log.read_text().split() for log in logs]
    assert all(handled), "both processes should have taken part"
    assert sorted(handled[0] + handled[1]) == sorted(t.id for t in inserted)  # each ran once
    assert await eq.tasks("count/err") == []


async def test_lease_adopts_its_own_applied_renewal_of_task_and_sets(eq: entroq_redis.EntroQ) -> None:
    # A renewal whose reply is lost leaves the holder one version behind on the task and on
    # each set: the next renewal must find both still ours and carry on, not declare a loss.
    await seed_account(eq, "a1", 10)
    await eq.modify(inserts=[TaskData("jobs", value=b"v")])
    task = await eq.claim("jobs", 300, timeout_s=5)
    claimed = await eq.claim_doc_sets([DocSet("accounts", "a1", omit_members=True)], 300, task_to_match=task)
    with trio.fail_after(10):
        async with entroq_redis.hold_lease(eq, task, 300, sets=claimed.sets) as lease:
            behind_our_back = await eq.modify(
                changes=[
                    entroq_redis.TaskChange(task.id, task.version, task.queue, delay_ms=300, mode="lease")
                ],
                doc_changes=[
                    DocChange("accounts", "", claimed.sets[0].version, key="a1", delay_ms=300, mode="lease")
                ],
            )
            await trio.sleep(0.5)
            assert lease.task.version > behind_our_back.changed[0].version
            assert lease.sets[0].version > behind_our_back.changed_docs[0].version
    assert lease.lost is None
    await eq.modify(
        deletes=[lease.task.as_id()],
        doc_changes=[DocChange("accounts", "", lease.sets[0].version, key="a1", mode="lease")],
    )
