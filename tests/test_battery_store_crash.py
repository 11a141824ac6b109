"""Battery row b: kill -9 the store during a stream of modifies.

The row is docs/reference/reliability-battery.md 3.

The commit-once workload (tests/battery/workload.py) runs against an embedded Valkey of
its own; at fractions of the work done (spread over its first 80%) the store is SIGKILLed
and restarted at once on the same port and data directory, and the workers carry on (an unanswered call is an
``info`` operation, retried with the same versions). Afterwards:

- every modify a client saw acknowledged is there, no acknowledged delete came back, no
  acknowledged claim or change went backwards (C1); no modify is visible in part (C7),
  neither in the history's snapshots nor in the store's own indexes (store_check.py);
- every AOF load succeeded: a torn MULTI/EXEC at the tail may be reverted (logged), the
  store never refuses to start;
- commit once holds across the crashes (C3-C6 = 0); executions repeated because a lease
  outlived a crash or a reply was lost (C8) are reported.

With ``appendfsync always`` nothing acknowledged may be lost. With ``everysec`` a process
kill normally loses nothing either (the AOF write(2) precedes the reply; only fsync is
deferred): the test reports what was lost and the window it covered, and asserts the
commit-once checks, not durability. The strace test checks the ordering behind the
``always`` promise directly (every reply after the fdatasync of its write), and measures
how far apart ``everysec``'s fsyncs are: the window an OS crash or power loss could lose.
"""

from __future__ import annotations

import collections
import itertools
import json
import pathlib
import re
import shutil
import subprocess
import time
from typing import Any

import pytest
import redis
import trio
from battery.checker import Report, check
from battery.crash import CrashableStore
from battery.doc_checker import consistency
from battery.doc_harness import DOC_WORKLOAD, doc_keys, finish_docs, seed_docs, seed_tasks, state
from battery.harness import Run, crash_nemesis, finish, seed, snapshot, start_workers, wait_workers
from battery.history import EffectLog, HistoryWriter, claimed, final_record, load, task_out
from battery.store_check import read_namespace

import entroq_redis
from entroq_redis import TaskData

QUEUES = ["in0", "in1", "in2", "in3"]
NAMESPACE = "crash"
# (worker processes, tasks, kills, least seconds between kills, ballast tasks in another namespace)
SIZES = {
    "ci": (3, 1_500, 3, 0.5, 10_000),
    "full": (4, 60_000, 20, 2.0, 100_000),
}


async def fill_ballast(url: str, count: int) -> None:
    """Tasks the restart has to load too (so restart times mean something), untouched by the run."""
    async with entroq_redis.connect(url, namespace="ballast") as eq:
        for start in range(0, count, 1000):
            await eq.modify(
                inserts=[TaskData("ballast", value=b"b" * 100) for _ in range(min(1000, count - start))]
            )


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)])]
)
@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_kill_9_of_the_store_loses_no_acknowledged_modify(
    fsync: str, size: str, tmp_path: pathlib.Path
) -> None:
    procs, tasks, kills, min_gap_s, ballast = SIZES[size]
    store = CrashableStore(tmp_path / "data", fsync)  # type: ignore[arg-type]
    store.start()
    run = Run(tmp_path)
    kill_times: list[float] = []
    delayed_fsyncs = 0
    try:
        await fill_ballast(store.url, ballast)
        async with entroq_redis.connect(store.url, namespace=NAMESPACE) as eq:
            await seed(eq, run, tasks, QUEUES)
        start_workers(
            run,
            store.url,
            NAMESPACE,
            procs,
            queues=QUEUES,
            stage2="stage2",
            coroutines=3,
            lease_ms=1000,
            overrun_p=0.02,
            retry_s=60,
            deadline_s=500 if size == "full" else 100,
        )
        async with trio.open_nursery() as nursery:

            def crash() -> None:
                nonlocal delayed_fsyncs
                delayed_fsyncs += int(store.info("persistence")["aof_delayed_fsync"])  # type: ignore[call-overload]
                store.kill()
                store.start()

            nursery.start_soon(crash_nemesis, run, crash, kills, tasks, min_gap_s, kill_times)
            await wait_workers(run, 600 if size == "full" else 110)
            nursery.cancel_scope.cancel()
        async with entroq_redis.connect(store.url, namespace=NAMESPACE) as eq:
            report = await finish(eq, run)
        client = redis.Redis.from_url(store.url)
        try:
            _, index_problems = read_namespace(client, NAMESPACE)
            ballast_left, ballast_problems = read_namespace(client, "ballast")
        finally:
            client.close()
    finally:
        store.stop()

    restarts = store.starts[1:]
    records = load(run.history_paths())
    # The loss window: how long before its kill the oldest lost acknowledged write completed.
    window = _loss_window(report, records, kill_times)
    print(
        f"\n[battery b/{fsync}/{size}] {len(kill_times)} kills in {run.elapsed_s:.1f} s; restarts "
        f"{[round(s.seconds, 2) for s in restarts]} s (AOF load {[s.aof_load_s for s in restarts]} s), "
        f"reverted {sum(s.reverted for s in restarts)}, truncated {sum(s.truncated for s in restarts)}; "
        f"aof_delayed_fsync {delayed_fsyncs}; acknowledged writes lost "
        f"{report.lost.count + report.acked_undone.count} (window {window}); {report.summary()}"
    )
    assert len(kill_times) == kills, "the workload ended before every kill"
    assert not any(s.aborted for s in store.starts), [s.log[-2000:] for s in store.starts if s.aborted]
    assert not index_problems, index_problems
    assert not ballast_problems and len(ballast_left) == ballast
    assert max(s.seconds for s in restarts) < 5
    problems = report.problems()
    if fsync == "everysec":
        # Durability is not promised here: only commit once (measured losses are printed above).
        for name in ("C1 lost", "C1 acked writes undone", "unfinished sources"):
            problems.pop(name, None)
    assert not problems, problems
    assert report.info > 0, "the kills must have hit calls in flight"


# (worker processes, source tasks, keys of one doc each, kills, least seconds between kills)
DOC_SIZES = {"ci": (3, 600, 12, 3, 0.5), "full": (4, 20_000, 48, 20, 2.0)}


@pytest.mark.parametrize(
    "size", ["ci", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)])]
)
@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_kill_9_never_half_applies_a_task_and_doc_modify(
    fsync: str, size: str, tmp_path: pathlib.Path
) -> None:
    """Docs (docs/design.md 2.14): a modify that moves a task, changes docs and inserts a doc, under kill -9.

    The doc workload (tests/battery/doc_workload.py) claims a source task, then every doc of
    a key, and commits in one modify: the task moved to ``done`` (its value the batch), each
    doc's counter + 1, a receipt doc for the batch. The store is SIGKILLed at fractions of the
    work and restarted at once on the same data; each time, the data directory the kill left
    is copied first. Afterwards every copy is loaded by a store of its own (the state a
    restart starts from, with no client about) and must hold every commit in full or not at
    all: each receipt with its done task and the reverse, each doc's counter the number of
    receipts naming it. The whole run is then checked as the commit-once test is (D1-D8).

    With ``everysec``, Valkey postpones its AOF write while a background fsync is still
    running (up to 2 s; INFO's ``aof_delayed_fsync`` counts only the writes held that long)
    and replies meanwhile, so a kill can lose acknowledged writes (D1; seen on a loaded
    2-core machine at CI size, with ``aof_delayed_fsync`` 0). The store then hands
    the lost versions out again, so stale commits, reused versions and overwritten counters
    (D3-D7) follow from D1 as in the rollback test below: with ``everysec`` they are allowed
    only together with D1. Never half applied (D2) and never applied when refused (D8) hold
    with either fsync; with ``always`` everything does.
    """
    procs, tasks, keys, kills, min_gap_s = DOC_SIZES[size]
    store = CrashableStore(tmp_path / "data", fsync)  # type: ignore[arg-type]
    store.start()
    run = Run(tmp_path)
    kill_times: list[float] = []
    left_by_kills: list[pathlib.Path] = []
    delayed_fsyncs = 0
    try:
        async with entroq_redis.connect(store.url, namespace=NAMESPACE) as eq:
            await seed_docs(eq, run, "acct", doc_keys(keys), 1)
            await seed_tasks(eq, "in", tasks)
        start_workers(
            run,
            store.url,
            NAMESPACE,
            procs,
            program=DOC_WORKLOAD,
            keys=doc_keys(keys),
            source="in",
            coroutines=3,
            lease_ms=1000,
            overrun_p=0.02,
            stale_p=0.05,
            optimistic_p=0.0,
            retry_s=60,
            deadline_s=500 if size == "full" else 100,
        )
        async with trio.open_nursery() as nursery:

            def crash() -> None:
                nonlocal delayed_fsyncs
                delayed_fsyncs += int(store.info("persistence")["aof_delayed_fsync"])  # type: ignore[call-overload]
                store.kill()
                copy = tmp_path / f"left-by-kill-{len(left_by_kills)}"
                shutil.copytree(store.data_dir, copy)
                left_by_kills.append(copy)
                store.start()

            nursery.start_soon(crash_nemesis, run, crash, kills, tasks, min_gap_s, kill_times)
            await wait_workers(run, 600 if size == "full" else 110)
            nursery.cancel_scope.cancel()
        async with entroq_redis.connect(store.url, namespace=NAMESPACE) as eq:
            report = await finish_docs(eq, run, "acct", "done")
    finally:
        store.stop()

    after_kills = []
    for copy in left_by_kills:
        frozen = CrashableStore(copy, fsync)  # type: ignore[arg-type]
        frozen.start()
        try:
            async with entroq_redis.connect(frozen.url, namespace=NAMESPACE) as eq:
                after_kills.append(consistency(await state(eq, "acct", "done")))
        finally:
            frozen.stop()
    restarts = store.starts[1:]
    print(
        f"\n[battery b-docs/{fsync}/{size}] {len(kill_times)} kills in {run.elapsed_s:.1f} s; reverted "
        f"{sum(s.reverted for s in restarts)}, truncated {sum(s.truncated for s in restarts)}; states left "
        f"by the kills: {[(c.receipts, c.counter_total, c.half_applied.count) for c in after_kills]} "
        f"(receipts, counters, half applied); aof_delayed_fsync {delayed_fsyncs}; {report.summary()}; "
        f"lost writes acknowledged at {_nearest_kill(report.lost.examples, kill_times)} from a kill"
    )
    assert len(kill_times) == kills, "the workload ended before every kill"
    assert not any(s.aborted for s in store.starts), [s.log[-2000:] for s in store.starts if s.aborted]
    for left in after_kills:
        assert not left.problems(), left.problems()
        assert left.receipts > 0
    problems = report.problems()
    if fsync == "everysec" and report.lost.count:
        for name in ("D1 lost", "D3 double commits", "D4 stale commits accepted", "D5 versions reused"):
            problems.pop(name, None)
        problems.pop("D6 claim overlaps", None)
        problems.pop("D7 lost updates", None)
    assert not problems, problems
    assert report.receipts == tasks  # every source task committed once, with its docs
    assert report.info > 0, "the kills must have hit calls in flight"


def _nearest_kill(lost: list[dict[str, Any]], kill_times: list[float]) -> list[str]:
    """For each lost write (doc_checker's D1 examples): when it was acknowledged, from the
    nearest kill (a kill time is taken just before the store's INFO and SIGKILL, so a write
    acknowledged a few ms "after" it was still before the kill)."""
    if not kill_times:
        return []
    return [f"{min((example['td'] - k for k in kill_times), key=abs):+.3f} s" for example in lost]


def _loss_window(report: Report, records: list[dict[str, Any]], kill_times: list[float]) -> str:
    """Describes how far before the next kill the lost acknowledged writes were completed."""
    lost = report.lost.examples + report.acked_undone.examples
    if not lost:
        return "nothing lost"
    done = {}
    for record in records:
        if record.get("type") == "ok" and record["op"] in ("modify", "claim"):
            for entry in record.get("out", ()) or ():
                done[entry[0]] = record["td"]
    gaps = []
    for example in lost:
        task_id = example.get("task") or (example.get("acked") or example.get("deleted") or [None])[0]
        when = done.get(task_id)
        if isinstance(when, float):
            after = [k for k in kill_times if k >= when]
            if after:
                gaps.append(after[0] - when)
    return f"{max(gaps):.3f} s before a kill (of {len(lost)} examples)" if gaps else "unknown"


# strace -f -tt -yy lines: "<pid> HH:MM:SS.micro call(<fd><what it is>, ...".
CALL = re.compile(r"^\d+\s+(\d+):(\d+):([\d.]+) (write|writev|fdatasync|fsync)\(\d+<([^>]*)>")


@pytest.mark.skipif(
    subprocess.run(["which", "strace"], capture_output=True).returncode != 0, reason="no strace"
)
@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_fsync_ordering_seen_by_strace(fsync: str, tmp_path: pathlib.Path) -> None:
    """always: each reply to a write leaves only after the AOF is fdatasync'ed; everysec: how
    far apart the fsyncs are (what an OS crash could lose)."""
    store = CrashableStore(tmp_path / "data", fsync)  # type: ignore[arg-type]
    store.start()
    trace_path = tmp_path / "strace.txt"
    try:
        command = ["strace", "-f", "-tt", "-yy", "-e", "trace=write,writev,fdatasync,fsync"]
        tracer = subprocess.Popen(  # noqa: ASYNC220 (strace must attach before the load starts)
            [*command, "-o", str(trace_path), "-p", str(store.pid)],
            stderr=subprocess.DEVNULL,
        )
        try:
            await trio.sleep(0.5)  # attached
            async with entroq_redis.connect(store.url, namespace="trace") as eq:

                async def writer(n: int) -> None:
                    with trio.move_on_after(2.5):
                        while True:
                            await eq.modify(inserts=[TaskData("q", value=b"%d" % n)])

                async with trio.open_nursery() as nursery:
                    for n in range(4):
                        nursery.start_soon(writer, n)
        finally:
            tracer.send_signal(2)  # SIGINT detaches strace and leaves the server running
            tracer.wait(10)
        assert store.server is not None and store.server.is_running()
    finally:
        store.stop()

    # (time, "sync" | "write", "aof" | "client" | "other")
    events = []
    for line in trace_path.read_text().splitlines():
        match = CALL.match(line)
        if match:
            h, m, sec, call, what = match.groups()
            target = "aof" if what.endswith(".incr.aof") else "client" if what.startswith("TCP:") else "other"
            events.append(
                (int(h) * 3600 + int(m) * 60 + float(sec), "sync" if "sync" in call else "write", target)
            )
    syncs = [t for t, kind, target in events if kind == "sync" and target == "aof"]
    aof_writes = [t for t, kind, target in events if kind == "write" and target == "aof"]
    assert aof_writes and syncs, "strace saw no AOF activity"
    if fsync == "always":
        # Every write to a client socket comes after a sync that follows the last AOF write.
        unsynced = False
        early_replies = 0
        replies = 0
        for _t, kind, target in events:
            if target == "aof":
                unsynced = kind == "write"
            elif target == "client" and kind == "write":
                replies += 1
                early_replies += unsynced
        print(
            f"\n[battery b/strace/always] {len(aof_writes)} AOF writes, {len(syncs)} fdatasyncs, "
            f"{replies} replies, {early_replies} of them before the fdatasync of the AOF write before them"
        )
        assert replies > 100 and early_replies == 0
    else:
        gaps = [b - a for a, b in itertools.pairwise(syncs)]
        print(
            f"\n[battery b/strace/everysec] {len(aof_writes)} AOF writes, {len(syncs)} fsyncs; longest gap "
            f"between fsyncs {max(gaps, default=0):.3f} s: the acknowledged writes an OS crash could lose"
        )
        assert len(syncs) >= 2 and max(gaps) < 2.5


async def test_rollback_reissues_versions_and_the_claimant_still_fences(tmp_path: pathlib.Path) -> None:
    """Battery row i, single-box variant ("rollback nemesis"): the store comes back from an
    older copy of its data (what a failover to a lagging replica does), so acknowledged
    claims and commits are gone and the next claims hand the same versions out again.

    Worker A claims every task and commits a third of them; the store is rolled back to a
    copy taken before; worker B claims every task again, at the very versions A holds. Then:
    where B still holds a task, A's late commit is refused (CLAIM: the claimant is the fence,
    docs/design.md 2.9); where B's lease ran out and B is gone, A's commit is accepted and B has
    nothing left to commit. Either way each task ends committed exactly once (C3, C4 = 0);
    the acknowledgements the rollback undid are reported (C1).
    """
    data = tmp_path / "data"
    store = CrashableStore(data, "always")
    store.start()
    run = Run(tmp_path)
    tasks = 90
    try:
        async with entroq_redis.connect(store.url, namespace=NAMESPACE) as eq:
            await seed(eq, run, tasks, ["q"])
        store.stop()  # a clean stop: the copy is a consistent store
        shutil.copytree(data, tmp_path / "older")
        copied = time.monotonic()
        store.start()
        history = HistoryWriter(tmp_path / "history-ab.jsonl", "ab")
        effects = EffectLog(tmp_path / "effects-ab.jsonl", "ab")
        async with (
            entroq_redis.connect(store.url, namespace=NAMESPACE, claimant_id="worker-A") as a,
            entroq_redis.connect(store.url, namespace=NAMESPACE, claimant_id="worker-B") as b,
        ):
            held_by_a = [await _claim(a, history, effects, 60_000) for _ in range(tasks)]
            for task in held_by_a[: tasks // 3]:
                assert await _commit(a, history, effects, task) == "ok"

            store.kill()
            shutil.rmtree(data)
            shutil.copytree(tmp_path / "older", data)
            store.start()
            history.write({"op": "rollback", "to": copied, "ti": time.monotonic(), "td": time.monotonic()})
            for client in (a, b):
                await _reconnected(client)

            # B claims everything again: a third with a lease that runs out (B then "dies").
            held_by_b = {}
            for n in range(tasks):
                task = await _claim(b, history, effects, 300 if n % 3 == 0 else 60_000)
                held_by_b[task.id] = task
            reissued = sum(1 for t in held_by_a if held_by_b[t.id].version == t.version)
            await trio.sleep(0.5)  # B's short leases run out
            late = collections.Counter([await _commit(a, history, effects, t) for t in held_by_a])
            after = collections.Counter(
                [
                    await _commit(b, history, effects, t)
                    for t in held_by_b.values()
                    if t.at_ms - t.modified_ms > 300
                ]
            )
            history.write(final_record(await snapshot(b)))
        history.close()
        effects.close()
    finally:
        store.stop()
    report = check(load(run.history_paths()), load(run.effect_paths()), sources=run.sources)
    print(
        f"\n[battery i/rollback] {reissued} of {tasks} versions handed out again after the rollback; "
        f"A's late commits {dict(late)}; B's commits {dict(after)}; {report.summary()}"
    )
    assert reissued == tasks
    assert late == {"ok": tasks // 3, "refused:CLAIM/claimed": tasks - tasks // 3}
    assert after == {"ok": tasks - tasks // 3}
    # All that is wrong is what the rollback itself undid: the commit markers of A's
    # acknowledged commits before it (their tasks were committed again, once, afterwards).
    assert {name: found.count for name, found in report.problems().items()} == {"C1 lost": tasks // 3}


async def _reconnected(eq: entroq_redis.EntroQ) -> None:
    """The first call after a store restart may find its pooled connection dead."""
    with trio.fail_after(10):
        while True:
            try:
                await eq.time()
                return
            except entroq_redis.StoreUnavailableError:
                await trio.sleep(0.05)


async def _claim(eq: entroq_redis.EntroQ, history: HistoryWriter, effects: EffectLog, lease_ms: int) -> Any:
    with history.op("claim", queues=["q"], claimant=eq.claimant_id) as record:
        task = await eq.try_claim("q", lease_ms)
        assert task is not None
        record["task"] = claimed(task)
    effects.effect(task)
    return task


async def _commit(eq: entroq_redis.EntroQ, history: HistoryWriter, effects: EffectLog, task: Any) -> str:
    marker = json.dumps({"src": task.id, "v": task.version, "stage": "done", "p": eq.claimant_id})
    done = TaskData("done", id=f"r-{eq.claimant_id}-{task.id}-{time.monotonic_ns()}", value=marker.encode())
    try:
        with history.op(
            "modify",
            batch=done.id,
            claimant=eq.claimant_id,
            ins=[[done.id, "done"]],
            dels=[[task.id, task.version]],
        ) as record:
            inserted, _ = await eq.modify(inserts=[done], deletes=[task.as_id()])
            record["out"] = [task_out(t) for t in inserted]
    except entroq_redis.DependencyError as exc:
        return "refused:" + ",".join(f"{f.kind}/{f.reason}" for f in exc.failures)
    effects.committed(task)
    return "ok"
