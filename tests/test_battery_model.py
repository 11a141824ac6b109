"""Battery row j: model-based semantics. The real store against a pure-Python model.

A Hypothesis RuleBasedStateMachine drives the library (Redis backend, so the scripts and the
codec are both under test) on a private Valkey whose clock runs under libfaketime: rules
insert, claim, renew, change (full, lease, reset_claims; moving queues), delete, depend and
mixed modifies, as two claimants, with IDs and versions drawn from a Bundle of every version
ever seen (so stale versions come up all the time), and advance_clock jumps the store's
clock forward or back so that leases run out, or come back, without any sleeping. Docs
(docs/design.md 2.14) take part the same way: doc inserts, changes (full and lease), deletes and
depends, alone and in one modify with task items, and key claims (claim_docs), with doc
versions from a second Bundle. After every step the whole store (every task and every doc,
every field, in listing order, and every queue's and doc namespace's stats) must equal the
model (tests/battery/model.py), and every refused modify or doc claim must be refused for
exactly the failures the model predicts (task and doc failures apart).

Exact timing: every duration, delay and clock jump is a multiple of 30 s, and an example runs
in well under 30 s of real time, so "is this task available now" never depends on the few
milliseconds a call takes: the model's answer is exact. Times the store fixes during a call
(created, modified, a lease's end) are checked against two clock readings around the call and
then adopted.

CI: 500 examples of up to 25 steps (the battery target; about a minute); --full: 2,000. The
run uses its own store, so it is skipped in CI's second pass against an external Redis (it
would repeat itself).
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from battery.model import (
    Change,
    DocChg,
    DocFailure,
    DocInsert,
    DocRef,
    Failure,
    Insert,
    Model,
    ModelDoc,
    ModelTask,
    Ref,
)
from battery.stores import PrivateValkey, libfaketime_path, private_valkey
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import entroq_redis
import entroq_redis._redis_backend
from entroq_redis import (
    DependencyError,
    Doc,
    DocChange,
    DocData,
    DocID,
    InvalidArgumentError,
    Task,
    TaskChange,
    TaskData,
    TaskID,
)

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("ENTROQ_TEST_REDIS_URL")),
        reason="runs once, on a private store of its own (the same run as without ENTROQ_TEST_REDIS_URL)",
    ),
    pytest.mark.skipif(libfaketime_path() is None, reason="libfaketime is not installed"),
    pytest.mark.timeout(900),
]

STEP = 30_000  # every duration, delay and clock jump is a multiple of this (ms)
QUEUES = ["q1", "q2", "q3/x"]
CLAIMANTS = ["alice", "bob"]
IDS = ["a", "b", "c", "d", "e"]
DOC_NAMESPACES = ["n1", "n2/x"]
DOC_IDS = ["x", "y", "z"]
DOC_KEYS = ["k1", "k2"]
T = TypeVar("T")


class CountingSeeds:
    """Stands in for ``secrets`` in the Redis backend: the seeds of generated IDs count up from
    zero in every example. Generated IDs decide the order of tasks with equal arrivals, hence
    which task a claim's random rank picks; Hypothesis must see the same run when it replays an
    example (the claim's own random numbers come from ``random``, which Hypothesis seeds)."""

    count = 0

    @classmethod
    def token_hex(cls, nbytes: int = 16) -> str:
        cls.count += 1
        return f"{cls.count:0{2 * nbytes}x}"


class StoreMachine(RuleBasedStateMachine):
    """One example: a fresh namespace on the shared private store, two claimants."""

    store: PrivateValkey
    portal: BlockingPortal

    versions = Bundle("versions")
    doc_versions = Bundle("doc_versions")
    # How the doc calls ended, over every example (printed; each must have happened).
    doc_outcomes: collections.Counter[str] = collections.Counter()

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.started = time.monotonic()
        CountingSeeds.count = 0
        namespace = "m" + secrets.token_hex(6)
        self._exit = contextlib.ExitStack()
        self.eq = self._exit.enter_context(
            self.portal.wrap_async_context_manager(
                entroq_redis.connect(self.store.url, namespace=namespace, claimant_id=CLAIMANTS[0])
            )
        )
        self.clients = {name: self.eq.as_claimant(name) for name in CLAIMANTS}

    def teardown(self) -> None:
        self._exit.close()

    # --- plumbing ---

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        return self.portal.call(call)

    def now(self) -> int:
        # Exactness (module docstring) holds while an example stays well inside one STEP.
        assume(time.monotonic() - self.started < STEP / 1000 - 5)
        return self.run(self.eq.time)

    def around(self, call: Callable[[], Awaitable[T]]) -> tuple[int, T | Exception, int]:
        before = self.now()
        try:
            result: T | Exception = self.run(call)
        except (DependencyError, InvalidArgumentError) as exc:
            result = exc
        after = self.now()
        return before, result, after

    def adopt(self, task: Task, before: int, after: int, at_offset: int | None) -> None:
        """Checks and takes over the times the store fixed during the call."""
        model = self.model.tasks[task.id]
        assert before <= task.modified_ms <= after, (task, before, after)
        if at_offset is not None:
            assert before + at_offset <= task.at_ms <= after + at_offset, (task, at_offset)
            model.at = task.at_ms
        model.modified = task.modified_ms
        if model.version == 0 and task.version == 0:
            assert before <= task.created_ms <= after
            model.created = task.created_ms
        assert_same(model, task)

    def modify(
        self,
        claimant: str,
        inserts: list[Insert] = [],  # noqa: B006 (never mutated)
        changes: list[Change] = [],  # noqa: B006
        deletes: list[Ref] = [],  # noqa: B006
        depends: list[Ref] = [],  # noqa: B006
        doc_inserts: list[DocInsert] = [],  # noqa: B006
        doc_changes: list[DocChg] = [],  # noqa: B006
        doc_deletes: list[DocRef] = [],  # noqa: B006
        doc_depends: list[DocRef] = [],  # noqa: B006
    ) -> tuple[list[Ref], list[DocRef]]:
        """Runs a modify on the store and on the model; returns the new task and doc versions."""
        client = self.clients[claimant]
        task_data = [
            TaskData(i.queue, id=i.id, value=i.value, delay_ms=i.delay_ms, attempt=i.attempt, err=i.err)
            for i in inserts
        ]
        task_changes = [
            TaskChange(
                c.id,
                c.version,
                c.queue,
                value=c.value,
                delay_ms=c.delay_ms,
                mode=c.mode,
                attempt=c.attempt,
                err=c.err,
            )  # type: ignore[arg-type]
            for c in changes
        ]
        before, result, after = self.around(
            lambda: client.modify(
                inserts=task_data,
                changes=task_changes,
                deletes=[TaskID(r.id, r.version, r.queue) for r in deletes],
                depends=[TaskID(r.id, r.version, r.queue) for r in depends],
                doc_inserts=[
                    DocData(d.namespace, d.id, d.key, d.secondary_key, d.content, delay_ms=d.delay_ms)
                    for d in doc_inserts
                ],
                doc_changes=[
                    DocChange(
                        c.namespace,
                        c.id,
                        c.version,
                        c.key,
                        c.secondary_key,
                        c.content,
                        delay_ms=c.delay_ms,
                        mode=c.mode,  # type: ignore[arg-type]
                    )
                    for c in doc_changes
                ],
                doc_deletes=[DocID(r.namespace, r.id, r.version) for r in doc_deletes],
                doc_depends=[DocID(r.namespace, r.id, r.version) for r in doc_depends],
            )
        )
        with_docs = bool(doc_inserts or doc_changes or doc_deletes or doc_depends)
        if self.model.same_doc_twice(doc_inserts, doc_changes, doc_deletes):
            assert isinstance(result, InvalidArgumentError), f"one doc twice in a modify: {result}"
            self.doc_outcomes["modify: one doc twice, refused as a bad request"] += 1
            return [], []
        assert not isinstance(result, InvalidArgumentError), result
        expected = self.model.failures(claimant, before, inserts, changes, deletes, depends)
        expected_docs = self.model.doc_failures(
            claimant, before, doc_inserts, doc_changes, doc_deletes, doc_depends
        )
        if isinstance(result, DependencyError):
            got: list[Failure] = [(f.kind, f.reason, f.id) for f in result.failures]
            got_docs: list[DocFailure] = [(f.kind, f.reason, f.namespace, f.id) for f in result.doc_failures]
            assert (sorted(got), sorted(got_docs)) == (sorted(expected), sorted(expected_docs))
            if with_docs:
                self.doc_outcomes["modify refused" + (" for docs" if got_docs else " for tasks only")] += 1
                self.doc_outcomes.update(f"doc failure {k}/{r}" for k, r, _, _ in got_docs)
            return [], []
        assert expected == [] and expected_docs == [], (
            f"the store applied a modify the model refuses: {expected} {expected_docs}"
        )
        inserted, changed = result
        if with_docs:
            self.doc_outcomes[
                "modify applied" + (" with tasks" if inserts or changes or deletes else "")
            ] += 1
        doc_refs = self.apply_docs(
            claimant,
            before,
            after,
            result.inserted_docs,
            result.changed_docs,
            doc_inserts,
            doc_changes,
            doc_deletes,
        )
        for ref in deletes:
            del self.model.tasks[ref.id]
        refs: list[Ref] = []
        for change, task in zip(changes, changed, strict=True):
            model = self.model.tasks[change.id]
            model.version += 1
            if change.mode != "lease":
                model.queue, model.value, model.attempt, model.err = (
                    change.queue,
                    change.value,
                    change.attempt,
                    change.err,
                )
            if change.mode == "reset_claims":
                model.claims = 0
            delay = max(change.delay_ms, 0)
            model.claimant = claimant if delay > 0 else ""
            self.adopt(task, before, after, delay)
            refs.append(Ref(task.id, task.version, task.queue))
        for item, task in zip(inserts, inserted, strict=True):
            if item.id is not None:
                assert task.id == item.id
            assert task.id not in self.model.tasks
            delay = max(item.delay_ms, 0)
            self.model.tasks[task.id] = ModelTask(
                task.id,
                item.queue,
                0,
                task.at_ms,
                claimant,
                item.value,
                task.created_ms,
                task.modified_ms,
                0,
                item.attempt,
                item.err,
            )
            self.adopt(task, before, after, delay)
            refs.append(Ref(task.id, task.version, task.queue))
        return refs, doc_refs

    def apply_docs(
        self,
        claimant: str,
        before: int,
        after: int,
        inserted: list[Doc],
        changed: list[Doc],
        inserts: list[DocInsert],
        changes: list[DocChg],
        deletes: list[DocRef],
    ) -> list[DocRef]:
        """The doc half of an applied modify, on the model; returns the new doc versions."""
        for ref in deletes:
            del self.model.docs[(ref.namespace, ref.id)]
        refs: list[DocRef] = []
        for change, doc in zip(changes, changed, strict=True):
            model = self.model.docs[(change.namespace, change.id)]
            model.version += 1
            if change.mode == "full":
                model.key, model.secondary_key, model.content = (
                    change.key,
                    change.secondary_key,
                    change.content,
                )
            delay = max(change.delay_ms, 0)
            model.claimant = claimant if delay > 0 else ""
            self.adopt_doc(doc, before, after, delay)
            refs.append(DocRef(doc.namespace, doc.id, doc.version))
        for item, doc in zip(inserts, inserted, strict=True):
            if item.id is not None:
                assert doc.id == item.id
            assert (doc.namespace, doc.id) not in self.model.docs
            self.model.docs[(doc.namespace, doc.id)] = ModelDoc(
                item.namespace, doc.id, 0, "", doc.at_ms, item.key, item.secondary_key, item.content,
                doc.created_ms, doc.modified_ms,
            )  # fmt: skip
            self.adopt_doc(doc, before, after, max(item.delay_ms, 0))
            refs.append(DocRef(doc.namespace, doc.id, doc.version))
        return refs

    def adopt_doc(self, doc: Doc, before: int, after: int, at_offset: int) -> None:
        """Checks and takes over the times the store fixed during the call, for a doc."""
        model = self.model.docs[(doc.namespace, doc.id)]
        assert before <= doc.modified_ms <= after, (doc, before, after)
        assert before + at_offset <= doc.at_ms <= after + at_offset, (doc, at_offset)
        model.at, model.modified = doc.at_ms, doc.modified_ms
        if model.version == 0:
            assert before <= doc.created_ms <= after and doc.created_ms == doc.modified_ms, doc
            model.created = doc.created_ms
        assert_same_doc(model, doc)

    # --- rules ---

    @rule(
        target=versions,
        claimant=st.sampled_from(CLAIMANTS),
        items=st.lists(
            st.builds(
                Insert,
                queue=st.sampled_from(QUEUES),
                id=st.one_of(st.none(), st.sampled_from(IDS)),
                delay_ms=st.sampled_from([0, -STEP, STEP, 3 * STEP]),
                value=st.binary(max_size=8),
                attempt=st.integers(0, 3),
                err=st.sampled_from(["", "boom", "\x00"]),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda i: i.id if i.id is not None else object(),
        ),
    )
    def insert(self, claimant: str, items: list[Insert]) -> Any:
        return multiple(*self.modify(claimant, inserts=items)[0])

    @rule(
        target=versions,
        claimant=st.sampled_from(CLAIMANTS),
        queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True),
        duration=st.sampled_from([0, STEP, 2 * STEP, 4 * STEP]),
    )
    def claim(self, claimant: str, queues: list[str], duration: int) -> Any:
        client = self.clients[claimant]
        before, task, after = self.around(lambda: client.try_claim(queues, duration_ms=duration))
        candidates = {t.id for t in self.model.claimable(queues, before)}
        if task is None:
            assert candidates == set(), f"nothing claimed, but the model has {candidates} available"
            return multiple()
        assert isinstance(task, Task)
        assert task.id in candidates, (task.id, candidates)
        model = self.model.tasks[task.id]
        model.version += 1
        model.claims += 1
        model.claimant = claimant
        self.adopt(task, before, after, duration)
        return Ref(task.id, task.version, task.queue)

    @rule(
        target=versions,
        claimant=st.sampled_from(CLAIMANTS),
        ref=versions,
        duration=st.sampled_from([0, STEP, 2 * STEP]),
    )
    def renew(self, claimant: str, ref: Ref, duration: int) -> Any:
        # renew_for is a lease change "by duration": the claimant's hold moves on.
        task = self.model.tasks.get(ref.id)
        change = Change(ref.id, ref.version, task.queue if task else ref.queue, "lease", duration)
        return multiple(*self.modify(claimant, changes=[change])[0])

    @rule(
        target=versions,
        claimant=st.sampled_from(CLAIMANTS),
        ref=versions,
        queue=st.sampled_from(QUEUES),
        mode=st.sampled_from(["full", "lease", "reset_claims"]),
        delay=st.sampled_from([0, -STEP, STEP, 2 * STEP]),
        value=st.binary(max_size=8),
        depend=st.one_of(st.none(), versions),
    )
    def change(
        self, claimant: str, ref: Ref, queue: str, mode: str, delay: int, value: bytes, depend: Ref | None
    ) -> Any:
        changes = [Change(ref.id, ref.version, queue, mode, delay, value, attempt=1, err="e")]
        depends = [depend] if depend is not None else []
        return multiple(*self.modify(claimant, changes=changes, depends=depends)[0])

    @rule(
        claimant=st.sampled_from(CLAIMANTS),
        refs=st.lists(versions, min_size=1, max_size=3, unique_by=lambda r: r.id),
        name_queue=st.booleans(),
        wrong_queue=st.booleans(),
    )
    def delete(self, claimant: str, refs: list[Ref], name_queue: bool, wrong_queue: bool) -> None:
        deletes = []
        for ref in refs:
            queue = ""
            if name_queue:
                queue = "q-elsewhere" if wrong_queue else ref.queue
            deletes.append(Ref(ref.id, ref.version, queue))
        self.modify(claimant, deletes=deletes)

    @rule(
        target=versions,
        claimant=st.sampled_from(CLAIMANTS),
        depends=st.lists(versions, min_size=1, max_size=2),
        insert_id=st.one_of(st.none(), st.sampled_from(IDS)),
        delete=st.one_of(st.none(), versions),
    )
    def mixed(self, claimant: str, depends: list[Ref], insert_id: str | None, delete: Ref | None) -> Any:
        # An insert, a delete and depends in one all-or-nothing modify.
        inserts = [Insert("q2", insert_id, 0, b"mixed")]
        if delete is not None and insert_id == delete.id:
            inserts = [Insert("q2", None, 0, b"mixed")]
        deletes = [Ref(delete.id, delete.version)] if delete is not None else []
        return multiple(*self.modify(claimant, inserts=inserts, deletes=deletes, depends=depends)[0])

    # --- doc rules ---

    @rule(
        target=doc_versions,
        claimant=st.sampled_from(CLAIMANTS),
        items=st.lists(
            st.builds(
                DocInsert,
                namespace=st.sampled_from(DOC_NAMESPACES),
                id=st.one_of(st.none(), st.sampled_from(DOC_IDS)),
                key=st.sampled_from(DOC_KEYS),
                secondary_key=st.sampled_from(["", "s", "\x00"]),
                delay_ms=st.sampled_from([0, -STEP, STEP]),
                content=st.binary(max_size=8),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda i: (i.namespace, i.id) if i.id is not None else object(),
        ),
    )
    def doc_insert(self, claimant: str, items: list[DocInsert]) -> Any:
        return multiple(*self.modify(claimant, doc_inserts=items)[1])

    @rule(
        target=doc_versions,
        claimant=st.sampled_from(CLAIMANTS),
        ref=doc_versions,
        mode=st.sampled_from(["full", "lease"]),
        key=st.sampled_from(DOC_KEYS),
        secondary_key=st.sampled_from(["", "s"]),
        delay=st.sampled_from([0, -STEP, STEP, 2 * STEP]),
        content=st.binary(max_size=8),
        depend=st.one_of(st.none(), doc_versions),
    )
    def doc_change(
        self,
        claimant: str,
        ref: DocRef,
        mode: str,
        key: str,
        secondary_key: str,
        delay: int,
        content: bytes,
        depend: DocRef | None,
    ) -> Any:
        change = DocChg(ref.namespace, ref.id, ref.version, mode, key, secondary_key, delay, content)
        depends = [depend] if depend is not None else []
        return multiple(*self.modify(claimant, doc_changes=[change], doc_depends=depends)[1])

    @rule(
        claimant=st.sampled_from(CLAIMANTS),
        refs=st.lists(doc_versions, min_size=1, max_size=3),
    )
    def doc_delete(self, claimant: str, refs: list[DocRef]) -> None:
        # Two refs to one doc are a bad request (the model predicts InvalidArgumentError).
        self.modify(claimant, doc_deletes=refs)

    @rule(
        target=doc_versions,
        claimant=st.sampled_from(CLAIMANTS),
        namespace=st.sampled_from(DOC_NAMESPACES),
        key=st.sampled_from(DOC_KEYS),
        duration=st.sampled_from([0, STEP, 2 * STEP]),
    )
    def claim_docs(self, claimant: str, namespace: str, key: str, duration: int) -> Any:
        client = self.clients[claimant]
        before, result, after = self.around(lambda: client.claim_docs(namespace, key, duration))
        expected = self.model.claim_docs_failures(claimant, before, namespace, key)
        if isinstance(result, Exception):
            assert isinstance(result, DependencyError), result
            got = [(f.kind, f.reason, f.namespace, f.id) for f in result.doc_failures]
            assert (sorted(got), list(result.failures)) == (sorted(expected), []), (got, expected)
            self.doc_outcomes["claim_docs refused"] += 1
            return multiple()
        assert expected == [], f"the store let a key claim through the model refuses: {expected}"
        wanted = self.model.docs_of_key(namespace, key)
        assert [(d.namespace, d.id) for d in result] == [(d.namespace, d.id) for d in wanted]
        self.doc_outcomes["claim_docs took docs" if result else "claim_docs found none"] += 1
        for doc in result:
            model = self.model.docs[(doc.namespace, doc.id)]
            model.version += 1
            model.claimant = claimant
            self.adopt_doc(doc, before, after, duration)
        return multiple(*[DocRef(d.namespace, d.id, d.version) for d in result])

    @rule(
        target=doc_versions,
        claimant=st.sampled_from(CLAIMANTS),
        task=st.one_of(st.none(), versions),
        task_depend=st.one_of(st.none(), versions),
        doc=st.one_of(st.none(), doc_versions),
        doc_depends=st.lists(doc_versions, max_size=2),
        doc_delete=st.one_of(st.none(), doc_versions),
        insert_id=st.one_of(st.none(), st.sampled_from(DOC_IDS)),
        delay=st.sampled_from([0, STEP]),
    )
    def mixed_tasks_and_docs(
        self,
        claimant: str,
        task: Ref | None,
        task_depend: Ref | None,
        doc: DocRef | None,
        doc_depends: list[DocRef],
        doc_delete: DocRef | None,
        insert_id: str | None,
        delay: int,
    ) -> Any:
        # A task change (or insert) with a doc change, a doc delete, a doc insert and depends
        # on both kinds, all or nothing (a failure anywhere leaves every item undone).
        changes = [Change(task.id, task.version, "q3/x", "full", delay, b"m")] if task is not None else []
        inserts = [] if task is not None else [Insert("q1", None, 0, b"with docs")]
        doc_changes = (
            [DocChg(doc.namespace, doc.id, doc.version, "full", "k2", "m", delay, b"mixed")] if doc else []
        )
        return multiple(
            *self.modify(
                claimant,
                inserts=inserts,
                changes=changes,
                depends=[task_depend] if task_depend is not None else [],
                doc_inserts=[DocInsert("n1", insert_id, "k1", "", 0, b"i")],
                doc_changes=doc_changes,
                doc_deletes=[doc_delete] if doc_delete is not None else [],
                doc_depends=doc_depends,
            )[1]
        )

    @rule(jump=st.sampled_from([STEP, 2 * STEP, 4 * STEP, 20 * STEP, -STEP, -2 * STEP, -20 * STEP]))
    def advance_clock(self, jump: int) -> None:
        self.store.advance(jump / 1000)

    # --- the invariant ---

    @invariant()
    def store_equals_model(self) -> None:
        before = self.now()
        listed: dict[str, Task] = {}
        for queue in QUEUES:
            for task in self.run(lambda q=queue: self.eq.tasks(q)):
                listed[task.id] = task
        stats = {
            s.name: (s.num_tasks, s.num_available, s.num_claimed, s.num_future, s.max_claims)
            for s in self.run(self.eq.queue_stats)
        }
        assert set(listed) == set(self.model.tasks), (sorted(listed), sorted(self.model.tasks))
        for task_id, task in listed.items():
            assert_same(self.model.tasks[task_id], task)
        assert stats == self.model.stats(before), (stats, self.model.stats(before))
        for namespace in DOC_NAMESPACES:
            listed_docs = self.run(lambda n=namespace: self.eq.docs(n))
            wanted = self.model.listing(namespace)
            assert [d.id for d in listed_docs] == [d.id for d in wanted], (namespace, listed_docs, wanted)
            for doc, model in zip(listed_docs, wanted, strict=True):
                assert_same_doc(model, doc)
        doc_stats = [(s.name, s.num_docs, s.num_claimed) for s in self.run(self.eq.namespace_stats)]
        assert doc_stats == self.model.doc_stats(before), (doc_stats, self.model.doc_stats(before))


def assert_same(model: ModelTask, task: Task) -> None:
    stored = ModelTask(
        task.id, task.queue, task.version, task.at_ms, task.claimant, task.value, task.created_ms,
        task.modified_ms, task.claims, task.attempt, task.err,
    )  # fmt: skip
    assert stored == model, f"store {stored} != model {model}"


def assert_same_doc(model: ModelDoc, doc: Doc) -> None:
    stored = ModelDoc(
        doc.namespace, doc.id, doc.version, doc.claimant, doc.at_ms, doc.key, doc.secondary_key, doc.content,
        doc.created_ms, doc.modified_ms,
    )  # fmt: skip
    assert stored == model, f"store {stored} != model {model}"


@pytest.fixture(scope="module")
def faked_store() -> Iterator[PrivateValkey]:
    with private_valkey(fake_clock=True) as store:
        yield store


def test_store_matches_the_model(
    faked_store: PrivateValkey, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entroq_redis._redis_backend, "secrets", CountingSeeds)
    examples = 2000 if pytestconfig.getoption("--full") else 500
    started = time.monotonic()
    with start_blocking_portal(backend="trio") as portal:
        StoreMachine.store = faked_store
        StoreMachine.portal = portal
        run_state_machine_as_test(
            StoreMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=25,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    elapsed = time.monotonic() - started
    offset = faked_store.offset_s
    print(f"model: {examples} examples (up to 25 steps) in {elapsed:.0f} s, clock {offset:+.0f} s")
    outcomes = StoreMachine.doc_outcomes
    print("model, doc calls: " + ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items())))
    # The doc paths were all taken: applied alone and with tasks, refused for each reason.
    for seen in [
        "modify applied", "modify applied with tasks", "modify refused for docs",
        "modify: one doc twice, refused as a bad request", "claim_docs took docs", "claim_docs refused",
        "doc failure INSERT/collision", "doc failure CHANGE/missing", "doc failure CHANGE/mismatch",
        "doc failure DELETE/mismatch", "doc failure DEPEND/mismatch", "doc failure CLAIM/claimed",
    ]:  # fmt: skip
        assert outcomes[seen] > 0, (seen, outcomes)
