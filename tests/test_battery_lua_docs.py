"""Battery row k for the doc scripts: fault injection and worst-case sizes (docs/design.md 2.8).

The static lint covers every script in lua/ (tests/test_battery_lua.py); here, as that file
does for the task scripts, on a private store:

1. For every key a key claim (claim_docs.lua) or a set claim (claim_doc_sets.lua) touches, a
   key of the wrong type is planted there, the call is made, and whatever it answers, no
   partial write may survive: every key but the planted one is as before (DUMP), or the call
   went through whole. With ``maxmemory`` below what the store uses, the claim is refused
   (OOM) and nothing changes.
2. Worst-case inputs at the caps (1,000 docs of one key with 1,024-byte keys and 256-byte IDs,
   1,000 sets, 1,000 prefixes or exact names of 1,024 bytes, a page deep into a range) each
   finish in under 50 ms on the store (SLOWLOG), far below the 5 s BUSY threshold; calls that
   move 64 MiB of contents, and every call on a machine loaded past one runnable process per
   core, are held to a loose 2 s bound instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis
from battery.raw_store import plant_wrong_type, slowlog, state
from battery.stores import PrivateValkey, private_valkey

import entroq_redis
from entroq_redis import DependencyError, DocData, DocSet, EntroQ, TaskData
from entroq_redis._keys import Keys
from entroq_redis._scripts import script_source

MAX_SCRIPT_MS = 50
# Calls that move 64 MiB of contents (a reply, or claim_docs rewriting every record it claims)
# are bound by the bytes they move, as tasks.lua's and modify.lua's are (tests/test_battery_lua.py
# VOLUME_BOUND): checked against the same loose bound. The same calls without contents are
# measured against the target.
VOLUME_BOUND = {
    "docs: ID page of 1,000, 64 MiB reply",
    "docs: range page of 1,000, 64 MiB reply",
    "claim_docs: 1,000 docs of a 1,024-byte key, 64 MiB",
}
VOLUME_BOUND_MS = 2000
# Each call is measured three times (every one here can be repeated: a claimant may re-claim
# what it holds, and a refused call changes nothing) and its fastest run counts, so that a
# busy shared machine does not fail a script that meets the target.
RUNS = 3
# The 50 ms target is a statement about the script, which a machine running more than one
# runnable process per core cannot measure: there the figures are printed and the test is an
# expected failure naming the load; the loose bound (far below the 5 s BUSY threshold) holds
# for every call whatever the load.
MAX_LOAD_PER_CORE = 1.0


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
async def client_for(store: PrivateValkey, namespace: str, claimant: str = "me") -> AsyncIterator[EntroQ]:
    async with entroq_redis.connect(store.url, namespace=namespace, claimant_id=claimant) as eq:
        yield eq


# --- 1. fault injection ----------------------------------------------------------------------

DOC_NS = "dns:{x}"


async def key_claim_scenario(eq: EntroQ) -> Callable[[], Awaitable[object]]:
    """Three docs of key "k" (one claimed before by "me"), a lock record for the set."""
    await eq.modify(doc_inserts=[DocData(DOC_NS, f"d{i}", "k", f"{i}", b"c") for i in range(3)])
    await eq.claim_docs(DOC_NS, "k", duration_ms=0)
    await eq.claim_doc_sets([DocSet(DOC_NS, "k")], duration_ms=0)

    async def call() -> object:
        claimed = await eq.claim_docs(DOC_NS, "k", duration_ms=600_000)
        assert len(claimed) == 3
        return claimed

    return call


async def set_claim_scenario(eq: EntroQ) -> Callable[[], Awaitable[object]]:
    """Sets "k" (with a lock record and members) and "j" (never claimed), matched to a task."""
    await eq.modify(
        inserts=[TaskData("work", id="job")],
        doc_inserts=[DocData(DOC_NS, f"d{i}", "k", f"{i}") for i in range(3)],
    )
    await eq.claim_doc_sets([DocSet(DOC_NS, "k")], duration_ms=0)
    task = await eq.try_claim("work", duration_ms=600_000)
    assert task is not None

    async def call() -> object:
        claimed = await eq.claim_doc_sets([DocSet(DOC_NS, "k"), DocSet(DOC_NS, "j")], task_to_match=task)
        assert [s.version for s in claimed.sets] == [2, 1]
        return claimed

    return call


def doc_keys(keys: Keys) -> list[str]:
    """Every key the two scenarios' calls read or write."""
    return [
        keys.task("job"),
        keys.doc_namespaces,
        keys.doc_index(DOC_NS),
        keys.doc_claimed(DOC_NS),
        keys.doc_set(DOC_NS, "k"),
        keys.doc_set(DOC_NS, "j"),
        *(keys.doc(DOC_NS, f"d{i}") for i in range(3)),
    ]


SCENARIOS = {"claim_docs": key_claim_scenario, "claim_doc_sets": set_claim_scenario}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_a_wrong_key_type_anywhere_leaves_no_partial_write(
    store: PrivateValkey, raw: redis.Redis, scenario: str
) -> None:
    build = SCENARIOS[scenario]
    namespace = "lua" + secrets.token_hex(4)
    async with client_for(store, namespace) as eq:
        await (await build(eq))()  # the scenario works on an undamaged store
    outcomes: dict[str, str] = {}
    partial: dict[str, list[bytes]] = {}
    for name in doc_keys(Keys("K")):
        namespace = "lua" + secrets.token_hex(4)
        real_key = name.replace("{K}:", "{" + namespace + "}:").encode("utf-8", "surrogateescape")
        async with client_for(store, namespace) as eq:
            call = await build(eq)
            if not raw.exists(real_key):
                outcomes[name] = "absent in this scenario"
                continue
            plant_wrong_type(raw, real_key)
            before = state(raw, namespace, leave_out=real_key)
            try:
                await call()
                outcomes[name] = "applied"
            except Exception as exc:  # the store's WRONGTYPE, however the library wraps it
                outcomes[name] = f"refused: {type(exc).__name__}: {str(exc)[:80]}"
                after = state(raw, namespace, leave_out=real_key)
                if after != before:
                    partial[name] = sorted(
                        k for k in set(before) | set(after) if before.get(k) != after.get(k)
                    )
    print(f"{scenario}:\n" + "\n".join(f"  {k!r}: {v}" for k, v in outcomes.items()))
    assert partial == {}
    assert sum(v.startswith("refused") for v in outcomes.values()) >= 4, outcomes


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_out_of_memory_refuses_the_claim_whole(
    store: PrivateValkey, raw: redis.Redis, scenario: str
) -> None:
    namespace = "oom" + secrets.token_hex(4)
    async with client_for(store, namespace) as eq:
        call = await SCENARIOS[scenario](eq)
        before = state(raw, namespace)
        raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) // 2)
        try:
            with pytest.raises(entroq_redis.EntroQError, match="OOM"):
                await call()
        finally:
            raw.config_set("maxmemory", 0)
        assert state(raw, namespace) == before
        await call()  # with memory back, the same call goes through
        assert state(raw, namespace) != before


# --- 2. worst-case sizes ---------------------------------------------------------------------


async def test_worst_case_doc_inputs_finish_in_under_50_ms(store: PrivateValkey, raw: redis.Redis) -> None:
    namespace = "big" + secrets.token_hex(4)
    doc_ns = "n" * 1024  # longest doc namespace
    key = "k" * 1024  # longest key
    ids = [f"{i:0256d}" for i in range(1000)]  # longest doc IDs
    content = os.urandom(64 * 1024)  # 1,000 of them: the 64 MiB total cap of one modify
    timings: dict[str, float] = {}
    async with client_for(store, namespace) as eq, client_for(store, namespace, "other") as other:

        async def measure(name: str, call: Callable[[], Awaitable[object]], refused: bool = False) -> None:
            runs = []
            for _ in range(RUNS):
                with slowlog(raw) as durations:
                    try:
                        await call()
                        outcome = "done"
                    except DependencyError:
                        outcome = "refused"
                assert outcome == ("refused" if refused else "done"), name
                runs.append(max(durations))
            timings[name] = min(runs)

        # Without contents first: the scripts' own cost at the caps.
        await eq.modify(doc_inserts=[DocData(doc_ns, i, key, "s" * 1024) for i in ids])
        await measure("docs: range page of 1,000", lambda: eq.docs(doc_ns, limit=1000))
        await measure("claim_docs: 1,000 docs of a 1,024-byte key", lambda: eq.claim_docs(doc_ns, key))
        await eq.modify(doc_deletes=await eq.docs(doc_ns, omit_values=True))

        await eq.modify(doc_inserts=[DocData(doc_ns, i, key, "s" * 1024, content) for i in ids])
        await measure("docs: ID page of 1,000, 64 MiB reply", lambda: eq.docs(doc_ns, ids=ids))
        await measure("docs: range page of 1,000, 64 MiB reply", lambda: eq.docs(doc_ns, limit=1000))
        await measure(
            "docs: ID page of 1,000, omit_values", lambda: eq.docs(doc_ns, ids=ids, omit_values=True)
        )
        await measure(
            "claim_docs: 1,000 docs of a 1,024-byte key, 64 MiB",
            lambda: eq.claim_docs(doc_ns, key, duration_ms=600_000),
        )
        # Every member held by another claimant: 1,000 failures built and returned, and the
        # members' contents not read (omit_members).
        await measure(
            "claim_doc_sets: 1,000 members, all held by another",
            lambda: other.claim_doc_sets([DocSet(doc_ns, key, omit_members=True)]),
            refused=True,
        )
        sets = [DocSet(doc_ns, f"{i:01024d}") for i in range(1000)]
        await measure("claim_doc_sets: 1,000 sets of 1,024-byte keys", lambda: eq.claim_doc_sets(sets))
        await measure(
            "claim_doc_sets: 1,000 held sets refused", lambda: other.claim_doc_sets(sets), refused=True
        )

        # A page deep into a large range: the offset costs O(log n), not O(offset).
        many = [DocData("deep", f"{i:06d}", f"{i % 10}") for i in range(20_000)]
        for start in range(0, len(many), 1000):
            await eq.modify(doc_inserts=many[start : start + 1000])
        index = Keys(namespace)

        async def deep_page() -> object:
            args = [index.prefix, entroq_redis.CONTRACT_VERSION, "deep", "", "", 1000, 18_000, "1"]
            reply = raw.eval(script_source("docs"), 1, index.queue_index, *args)
            assert isinstance(reply, list) and len(reply[1]) == 1000
            return reply

        await measure("docs: range page at offset 18,000", deep_page)

        # 1,000 doc namespaces of 1,024 bytes sharing a long prefix.
        names = [f"{i:01024d}" for i in range(1000)]
        await eq.modify(doc_inserts=[DocData(name, "d", "k") for name in names])
        await measure("namespaces: 1,000 exact names", lambda: eq.namespace_stats(exact=names))
        await measure(
            "namespaces: 1,000 prefixes", lambda: eq.namespace_stats(prefixes=[n[:-1] for n in names])
        )
        await measure(
            "namespaces: 1,000 overlapping prefixes", lambda: eq.namespace_stats(prefixes=["0" * 1000] * 1000)
        )
    for name, ms in timings.items():
        print(f"  {ms:7.2f} ms  {name}")
    assert max(timings.values()) < VOLUME_BOUND_MS, timings
    over = {name: ms for name, ms in timings.items() if ms >= MAX_SCRIPT_MS and name not in VOLUME_BOUND}
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if over and load > MAX_LOAD_PER_CORE:
        pytest.xfail(f"over {MAX_SCRIPT_MS} ms at a load of {load:.1f} per core (not measurable): {over}")
    assert over == {}, timings
