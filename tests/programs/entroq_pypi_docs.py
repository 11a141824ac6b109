"""Drives the document calls of one of EntroQ's own PyPI clients (``entroq`` 0.12.4, 0.14.0 or
0.15.0) against a service:

    python entroq_pypi_docs.py URL               -> a JSON report on stdout (for the tests)
    python entroq_pypi_docs.py URL --transcript  -> the same run as a readable transcript: each
                                                    client call, the HTTP exchanges it made, and
                                                    what the client made of the answer
    python entroq_pypi_docs.py URL --member-change [--transcript]
                                                 -> 0.15.0 only: its worker committing a change
                                                    to a member doc it claimed (member_change)

Runs in a throwaway virtualenv holding only that ``entroq`` release and httpx (never this
project), through the client's public API only, as its users write it; the transcript watches
the wire through an httpx response hook on the client's own connection pool, which changes
nothing that is sent.

Every release: docs inserted in one modify with a task; listed by key range, exact key, ids,
limit and with values omitted; claimed by key; a claimed doc and a claimed task changed in ONE
modify (with a doc depend); a stale doc change refused (the client's DependencyError, and
nothing of that modify written); a doc held by another refused; released, claimed by another,
deleted. 0.12.4 and 0.14.0 also: their ``EntroQWorker`` taking a task's docs by key, renewing
them with the task and committing the handler's doc change with the task's outcome. 0.15.0
(protocol 2) also: doc sets claimed several at once with ``omitMembers``,
renewed and released by ``Modification.arriving(set, ...)``, claimed with ``taskToMatch``
(and refused for a stale task or one the caller does not hold), and its ``EntroQWorker``
holding a set, renewed with the task, while its handler works.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import httpx
from entroq.json import EntroQJSON
from entroq.types import DependencyError, DocData, TaskData
from entroq.types import Modification as M

NS = "gen/docs"  # the doc namespace every step uses
VERSION = importlib.metadata.version("entroq")
PROTOCOL_2 = hasattr(M, "arriving")  # 0.15.0


def ms(moment: Any) -> int | None:
    return round(moment.timestamp() * 1000) if moment is not None else None


def doc_json(doc: Any) -> dict[str, Any]:
    lease = ms(doc.at) - ms(doc.modified) if doc.at is not None and doc.modified is not None else None
    return {
        "namespace": doc.namespace,
        "id": doc.id,
        "version": doc.version,
        "key": doc.key,
        "secondary_key": doc.secondary_key,
        "content": doc.content,
        "claimant": doc.claimant,
        "at_ms": ms(doc.at),
        "lease_ms": lease,
    }


def ref(doc: Any) -> str:
    """A doc as "id vN", a doc set (a Doc with no id) as "[key] vN"."""
    return f"{doc.id or '[' + doc.key + ']'} v{doc.version}"


def docs_text(docs: Any) -> str:
    return (
        "\n".join(
            f"{d.namespace}/{ref(d)} key={d.key!r} skey={d.secondary_key!r} "
            f"content={json.dumps(d.content)} claimant={d.claimant!r}"
            for d in docs
        )
        or "(none)"
    )


def task_json(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "version": task.version,
        "queue": task.queue,
        "value": task.value,
        "claimant": task.claimant,
        "claims": task.claims,
        "at_ms": ms(task.at),
    }


def ident(item: Any) -> list[Any] | None:
    """A TaskID or DocID the client parsed out of an error, as a list (None stays None: 0.12.4
    appends None for a detail it cannot read)."""
    if item is None:
        return None
    if hasattr(item, "namespace"):
        return [item.namespace, item.id, item.version, getattr(item, "key", "")]
    return [item.id, item.version, item.queue]


# The DependencyError fields the releases expose; each release has a subset (0.14 adds doc_*).
DEPENDENCY_FIELDS = (
    "inserts",
    "changes",
    "deletes",
    "depends",
    "claims",
    "missing",
    "collisions",
    "doc_inserts",
    "doc_changes",
    "doc_deletes",
    "doc_depends",
    "doc_claims",
)


def dependency_json(exc: DependencyError) -> dict[str, Any]:
    found: dict[str, Any] = {"message": exc.message}
    for name in DEPENDENCY_FIELDS:
        if hasattr(exc, name) and getattr(exc, name):
            found[name] = [ident(i) for i in getattr(exc, name)]
    for method in ("has_missing", "has_missing_docs", "has_claimed_docs"):
        if hasattr(exc, method):
            found[method] = getattr(exc, method)()
    return found


class Transcript:
    """The steps of one run: each step's client call, the HTTP exchanges it made, its outcome."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def step(self, title: str, code: str) -> None:
        self.steps.append({"title": title, "code": code, "wire": [], "outcome": ""})

    def outcome(self, text: str) -> None:
        self.steps[-1]["outcome"] = text

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        target = unquote(request.url.raw_path.decode())
        try:
            answer: Any = response.json()
        except ValueError:
            answer = response.text
        self.steps[-1]["wire"].append(
            {
                "request": f"{request.method} {target}",
                "protocol": request.headers.get("entroq-protocol", ""),
                "body": json.loads(request.content) if request.content else None,
                "status": response.status_code,
                "served": response.headers.get("entroq-protocol", ""),
                "answer": answer,
            }
        )

    def watch(self, client: Any) -> None:
        pool = getattr(client, "http", None) or client._http  # 0.12.4 has only the private one
        pool.event_hooks["response"].append(self.on_response)

    def render(self) -> str:
        lines = [f"# entroq {VERSION} (PyPI) document calls against entroq-redis, doc namespace {NS!r}"]
        for number, step in enumerate(self.steps, 1):
            lines += ["", f"## {number}. {step['title']}", *(f">>> {c}" for c in step["code"].splitlines())]
            for exchange in step["wire"]:
                header = f"  [entroq-protocol: {exchange['protocol']}]" if exchange["protocol"] else ""
                lines.append(f"  -> {exchange['request']}{header}")
                if exchange["body"] is not None:
                    lines.append(f"     {json.dumps(exchange['body'], ensure_ascii=False)}")
                served = f"  [entroq-protocol: {exchange['served']}]" if exchange["served"] else ""
                lines.append(f"  <- {exchange['status']}{served}")
                lines.append(f"     {json.dumps(exchange['answer'], ensure_ascii=False)}")
            if step["outcome"]:
                lines += [f"  = {line}" for line in step["outcome"].splitlines()]
        return "\n".join(lines)


async def refused(call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """Runs a call that must fail with the client's DependencyError; what the error carries."""
    try:
        await call()
    except DependencyError as exc:
        return dependency_json(exc)
    return {"unexpected": "accepted"}


async def drive(url: str, transcript: Transcript) -> dict[str, Any]:
    report: dict[str, Any] = {"entroq": VERSION}
    eq = EntroQJSON(url)
    other = EntroQJSON(url)  # a second claimant
    transcript.watch(eq)
    transcript.watch(other)
    step = transcript.step
    say = transcript.outcome

    try:
        step("Check the server (0.15 probes its protocols first)", "await eq.time()")
        report["time_ms"] = ms(await eq.time())
        report["local_ms"] = round(time.time() * 1000)
        say(f"time {report['time_ms']} (local {report['local_ms']})")

        step(
            "Insert a task and four docs in one modify",
            'await eq.modify(M(M.inserting(TaskData("gendocs/work", value={"job": 1})),\n'
            f'    M.inserting(DocData({NS!r}, "acct/1", "a", {{"balance": 10}})),\n'
            f'    M.inserting(DocData({NS!r}, "acct/1", "b", {{"balance": 20}})),\n'
            f'    M.inserting(DocData({NS!r}, "acct/2", content=["x"], id="gd-fixed")),\n'
            f'    M.inserting(DocData({NS!r}, "zeta", content="z"))))',
        )
        result = await eq.modify(
            M(
                M.inserting(TaskData("gendocs/work", value={"job": 1})),
                M.inserting(DocData(NS, "acct/1", "a", {"balance": 10})),
                M.inserting(DocData(NS, "acct/1", "b", {"balance": 20})),
                M.inserting(DocData(NS, "acct/2", content=["x"], id="gd-fixed")),
                M.inserting(DocData(NS, "zeta", content="z")),
            )
        )
        report["inserted_tasks"] = [task_json(t) for t in result.tasks_inserted]
        report["inserted_docs"] = [doc_json(d) for d in result.docs_inserted]
        doc_a, doc_b, fixed, zeta = result.docs_inserted
        say(docs_text(result.docs_inserted))

        listings = {
            "list_all": ("docs(NS)", {}),
            "list_range": (
                'docs(NS, key_start="acct/", key_end="acct/2")',
                {"key_start": "acct/", "key_end": "acct/2"},
            ),
            "list_exact": ('docs(NS, key_exact="acct/1")', {"key_exact": "acct/1"}),
            "list_ids": ("docs(NS, ids=[fixed.id, doc_b.id])", {"ids": [fixed.id, doc_b.id, "gd-nonesuch"]}),
            "list_limit": ("docs(NS, limit=2)", {"limit": 2}),
            "list_omit": (
                'docs(NS, key_start="acct/", key_end="b", omit_values=True)',
                {"key_start": "acct/", "key_end": "b", "omit_values": True},
            ),
        }
        for name, (code, kwargs) in listings.items():
            step(f"List: {name[5:]}", f"await eq.{code}")
            listed = await eq.docs(NS, **kwargs)
            report[name] = [doc_json(d) for d in listed]
            say(docs_text(listed))

        step(
            "Claim the docs of key acct/1",
            f'claimed = await eq.claim_docs({NS!r}, "acct/1", duration_ms=30000)',
        )
        claimed = await eq.claim_docs(NS, "acct/1", duration_ms=30000)
        report["claimed"] = [doc_json(d) for d in claimed]
        report["claimed_sets"] = [doc_json(s) for s in getattr(claimed, "sets", [])]
        report["claimant"] = eq.claimant_id
        report["other_claimant"] = other.claimant_id
        say(docs_text(claimed) + (f"\nsets: {docs_text(claimed.sets)}" if PROTOCOL_2 else ""))

        step("Another claimant cannot claim them", f'await other.claim_docs({NS!r}, "acct/1")')
        report["other_claim"] = await refused(lambda: other.claim_docs(NS, "acct/1"))
        say(f"DependencyError {json.dumps(report['other_claim'])}")

        step("Claim the task", 'task = await eq.try_claim("gendocs/work", duration_ms=30000)')
        task = await eq.try_claim("gendocs/work", duration_ms=30000)
        report["task"] = task_json(task)
        say(f"task {task.id} v{task.version} claimant={task.claimant!r}")

        [claimed_a] = [d for d in claimed if d.id == doc_a.id]
        [claimed_b] = [d for d in claimed if d.id == doc_b.id]
        step(
            "Change the claimed doc and the task in ONE modify (and depend on another doc)",
            'await eq.modify(M(M.changing(task, queue="gendocs/done", value={"done": True}, at=None),\n'
            '    M.changing(claimed_a, content={"balance": 5}),\n'
            "    M.depending(zeta)))",
        )
        together = await eq.modify(
            M(
                M.changing(task, queue="gendocs/done", value={"done": True}, at=None),
                M.changing(claimed_a, content={"balance": 5}),
                M.depending(zeta),
            )
        )
        report["together_tasks"] = [task_json(t) for t in together.tasks_changed]
        report["together_docs"] = [doc_json(d) for d in together.docs_changed]
        changed_tasks = ", ".join(
            f"{t.id} v{t.version} {t.queue} {json.dumps(t.value)}" for t in together.tasks_changed
        )
        say(f"tasks: {changed_tasks}\ndocs: {docs_text(together.docs_changed)}")

        step(
            "A stale doc change (a version changed since) and a task insert: refused, nothing written",
            'await eq.modify(M(M.changing(claimed_a, content="stale"),\n'
            '    M.inserting(TaskData("gendocs/never", value="never"))))',
        )
        report["stale"] = await refused(
            lambda: eq.modify(
                M(
                    M.changing(claimed_a, content="stale"),
                    M.inserting(TaskData("gendocs/never", value="never")),
                )
            )
        )
        say(f"DependencyError {json.dumps(report['stale'])}")
        step(
            "Nothing of it was written",
            f'await eq.docs({NS!r}, ids=[doc_a.id]); await eq.tasks("gendocs/never")',
        )
        unchanged = await eq.docs(NS, ids=[doc_a.id])
        report["after_stale_doc"] = [doc_json(d) for d in unchanged]
        report["after_stale_tasks"] = [task_json(t) for t in await eq.tasks("gendocs/never")]
        say(f"{docs_text(unchanged)}\ntasks in gendocs/never: {report['after_stale_tasks']}")

        step(
            "Another claimant changing a doc this one holds: refused",
            'await other.modify(M(M.changing(claimed_b, content="theirs")))',
        )
        report["other_change"] = await refused(
            lambda: other.modify(M(M.changing(claimed_b, content="theirs")))
        )
        say(f"DependencyError {json.dumps(report['other_change'])}")

        if PROTOCOL_2:
            [held] = claimed.sets
            step(
                "Renew the set (a lease-only change naming the set)",
                "await eq.modify(M(M.arriving(held, 60)))",
            )
            renewed = (await eq.modify(M(M.arriving(held, 60)))).docs_changed
            report["renewed_set"] = [doc_json(d) for d in renewed]
            say(docs_text(renewed))
            step("Release the set", "await eq.modify(M(M.arriving(renewed_set, 0)))")
            released = (await eq.modify(M(M.arriving(renewed[0], 0)))).docs_changed
            report["released"] = [doc_json(d) for d in released]
            say(docs_text(released))
            step(
                "A renewal naming the set's old version (as a worker that lost it would): refused",
                "await eq.modify(M(M.arriving(held, 60)))",
            )
            report["stale_set"] = await refused(lambda: eq.modify(M(M.arriving(held, 60))))
            say(f"DependencyError {json.dumps(report['stale_set'])}")
        else:
            step("Release the other claimed doc", "await eq.modify(M(M.changing(claimed_b, at=None)))")
            released = (await eq.modify(M(M.changing(claimed_b, at=None)))).docs_changed
            report["released"] = [doc_json(d) for d in released]
            say(docs_text(released))

        step("Now the other claimant can claim them", f'await other.claim_docs({NS!r}, "acct/1")')
        theirs = await other.claim_docs(NS, "acct/1")
        report["other_claim_after"] = [doc_json(d) for d in theirs]
        report["other_claim_after_sets"] = [doc_json(s) for s in getattr(theirs, "sets", [])]
        say(docs_text(theirs) + (f"\nsets: {docs_text(theirs.sets)}" if PROTOCOL_2 else ""))

        step(
            "Delete a doc, and list what is left",
            f"await eq.modify(M(M.deleting(zeta))); await eq.docs({NS!r})",
        )
        await eq.modify(M(M.deleting(zeta)))
        left = await eq.docs(NS)
        report["list_end"] = [doc_json(d) for d in left]
        say(docs_text(left))

        if PROTOCOL_2:
            await doc_sets(eq, other, fixed, report, transcript)
            await worker(url, eq, other, report, transcript)
        else:
            await worker_by_key(eq, other, report, transcript)
    finally:
        for client in (eq, other):
            await client.aclose()
    return report


async def doc_sets(eq: Any, other: Any, fixed: Any, report: dict[str, Any], transcript: Transcript) -> None:
    """0.15.0: several sets at once, omitMembers, renewal and release, taskToMatch."""
    from entroq.types import DocClaim

    step, say = transcript.step, transcript.outcome
    step(
        "Claim two doc sets at once, one without its members (an empty set)",
        f'await eq.claim_doc_sets([DocClaim({NS!r}, "acct/2"),\n'
        f'    DocClaim({NS!r}, "empty/set", omit_members=True)])',
    )
    multi = await eq.claim_doc_sets([DocClaim(NS, "acct/2"), DocClaim(NS, "empty/set", omit_members=True)])
    report["multi"] = [doc_json(d) for d in multi]
    report["multi_sets"] = [doc_json(s) for s in multi.sets]
    say(f"members: {[ref(d) for d in multi]}\nsets: {[ref(s) for s in multi.sets]}")

    step(
        "Another claimant cannot claim the empty set",
        f'await other.claim_doc_sets([DocClaim({NS!r}, "empty/set", omit_members=True)])',
    )
    report["multi_contended"] = await refused(
        lambda: other.claim_doc_sets([DocClaim(NS, "empty/set", omit_members=True)])
    )
    say(f"DependencyError {json.dumps(report['multi_contended'])}")

    step("Renew both sets in one modify", "await eq.modify(M(*(M.arriving(s, 60) for s in multi.sets)))")
    renewed = (await eq.modify(M(*(M.arriving(s, 60) for s in multi.sets)))).docs_changed
    report["multi_renewed"] = [doc_json(d) for d in renewed]
    say(f"{[f'[{s.key}] v{s.version} claimant={s.claimant!r}' for s in renewed]}")

    step("Release both", "await eq.modify(M(*(M.arriving(s, 0) for s in renewed)))")
    released = (await eq.modify(M(*(M.arriving(s, 0) for s in renewed)))).docs_changed
    report["multi_released"] = [doc_json(d) for d in released]
    say(f"{[f'[{s.key}] v{s.version} claimant={s.claimant!r}' for s in released]}")

    # taskToMatch: the set is held until the task arrives, read off the task by the store.
    step(
        "Claim a set for a claimed task (taskToMatch): held until the task's arrival",
        'await eq.modify(M(M.inserting(TaskData("gendocs/match", value="match"))))\n'
        'task = await eq.try_claim("gendocs/match", duration_ms=20000)\n'
        f'await eq.claim_doc_sets([DocClaim({NS!r}, "acct/2")], task_to_match=task)',
    )
    await eq.modify(M(M.inserting(TaskData("gendocs/match", value="match"))))
    task = await eq.try_claim("gendocs/match", duration_ms=20000)
    matched = await eq.claim_doc_sets([DocClaim(NS, "acct/2")], task_to_match=task)
    report["match_task"] = task_json(task)
    report["matched"] = [doc_json(d) for d in matched]
    report["matched_sets"] = [doc_json(s) for s in matched.sets]
    say(f"task at {ms(task.at)}; sets: {[f'[{s.key}] v{s.version} at {ms(s.at)}' for s in matched.sets]}")

    step(
        "Renew the task (its version moves on)",
        "renewed_task = (await eq.modify(M(M.arriving(task, 30)))).tasks_changed[0]",
    )
    [renewed_task] = (await eq.modify(M(M.arriving(task, 30)))).tasks_changed
    say(f"task v{renewed_task.version}")

    step(
        "taskToMatch naming the task's old version: refused, nothing claimed",
        f'await eq.claim_doc_sets([DocClaim({NS!r}, "empty/set")], task_to_match=task)',
    )
    report["match_stale"] = await refused(
        lambda: eq.claim_doc_sets([DocClaim(NS, "empty/set")], task_to_match=task)
    )
    say(f"DependencyError {json.dumps(report['match_stale'])}")

    step(
        "taskToMatch naming a task another claimant holds: refused",
        f'await other.claim_doc_sets([DocClaim({NS!r}, "empty/set")], task_to_match=renewed_task)',
    )
    report["match_not_mine"] = await refused(
        lambda: other.claim_doc_sets([DocClaim(NS, "empty/set")], task_to_match=renewed_task)
    )
    say(f"DependencyError {json.dumps(report['match_not_mine'])}")

    step("The empty set was left unclaimed", f'await other.claim_doc_sets([DocClaim({NS!r}, "empty/set")])')
    free = await other.claim_doc_sets([DocClaim(NS, "empty/set")])
    report["empty_set_after"] = [doc_json(s) for s in free.sets]
    say(f"{[f'[{s.key}] v{s.version} claimant={s.claimant!r}' for s in free.sets]}")

    [member] = matched
    step(
        "Finish: delete the task, change the member doc, release the set, in ONE modify",
        'await eq.modify(M(M.deleting(renewed_task), M.changing(member, content=["y"]),\n'
        "    M.arriving(matched.sets[0], 0)))",
    )
    done = await eq.modify(
        M(M.deleting(renewed_task), M.changing(member, content=["y"]), M.arriving(matched.sets[0], 0))
    )
    report["match_done"] = [doc_json(d) for d in done.docs_changed]
    report["match_left"] = len(await eq.tasks("gendocs/match"))
    say(f"changed docs: {[f'{ref(d)} {json.dumps(d.content)}' for d in done.docs_changed]}")


async def worker(url: str, eq: Any, other: Any, report: dict[str, Any], transcript: Transcript) -> None:
    """0.15.0: its worker claims the set a task names (taskToMatch), renews it with the task
    while the handler runs past the lease, and releases it in the modify that ends the task."""
    from entroq.types import DocClaim
    from entroq.worker import EntroQWorker

    step, say = transcript.step, transcript.outcome
    step(
        "EntroQWorker: a handler whose selector takes the task's doc set; it runs past the 3 s lease",
        'await eq.modify(M(M.inserting(TaskData("gendocs/worker", value={"key": "acct/3"})),\n'
        f'    M.inserting(DocData({NS!r}, "acct/3", "state", {{"count": 0}}))))\n'
        "@process.selector -> [DocClaim(NS, task.value['key'])]\n"
        "handler: while working, another claimant tries the set; returns M(M.deleting(task),\n"
        "    M.inserting(DocData(NS, 'acct/3', 'log', ...)), then_stop=True)",
    )
    await eq.modify(
        M(
            M.inserting(TaskData("gendocs/worker", value={"key": "acct/3"})),
            M.inserting(DocData(NS, "acct/3", "state", {"count": 0})),
        )
    )
    seen: dict[str, Any] = {}

    async def held_by_someone() -> dict[str, Any]:
        return await refused(lambda: other.claim_doc_sets([DocClaim(NS, "acct/3", omit_members=True)]))

    @EntroQWorker.handler
    async def process(task: Any, docs: Any) -> Any:
        seen["task"] = task_json(task)
        seen["docs"] = [doc_json(d) for d in docs]
        seen["held_at_start"] = await held_by_someone()
        await asyncio.sleep(3.0)  # the renewer runs every 2/3 of the 3 s lease: once by now, halfway
        seen["held_later"] = await held_by_someone()
        [now] = await other.tasks("gendocs/worker")
        seen["task_version_later"] = now.version
        return M(
            M.deleting(task), M.inserting(DocData(NS, "acct/3", "log", {"done": task.id})), then_stop=True
        )

    @process.selector  # type: ignore[no-redef]
    async def process(task: Any) -> Any:
        return [DocClaim(NS, task.value["key"])]

    await asyncio.wait_for(EntroQWorker(eq, "gendocs/worker", claim_duration_s=3.0).run(process), 30)
    report["worker"] = seen
    report["worker_left"] = len(await eq.tasks("gendocs/worker"))
    after = await other.claim_doc_sets([DocClaim(NS, "acct/3")])
    report["worker_after"] = [doc_json(d) for d in after]
    report["worker_after_sets"] = [doc_json(s) for s in after.sets]
    say(
        f"the handler got {[d['id'] + ' v' + str(d['version']) for d in seen['docs']]}\n"
        f"while it worked, another claimant was refused: {json.dumps(seen['held_at_start'])}\n"
        f"3 s later (renewed with the task, task now v{seen['task_version_later']}): "
        f"{json.dumps(seen['held_later'])}\n"
        f"after the handler's commit the set was free: the other claimant took it: "
        f"{[f'[{s.key}] v{s.version}' for s in after.sets]} with {[d.secondary_key for d in after]}"
    )


async def worker_by_key(eq: Any, other: Any, report: dict[str, Any], transcript: Transcript) -> None:
    """0.12.4 and 0.14.0: their worker claims the docs a task's selector names by key, renews
    them with the task (full changes with an absolute arrival, every half lease) while the
    handler runs past the lease, and commits the handler's doc change with the task's outcome
    at the versions the renewals left."""
    from entroq.worker import DocClaim, EntroQWorker, StopWorker

    step, say = transcript.step, transcript.outcome
    step(
        "EntroQWorker: a handler whose selector takes the docs of the task's key; it runs past the 3 s lease",
        'await eq.modify(M(M.inserting(TaskData("gendocs/worker", value={"key": "acct/3"})),\n'
        f'    M.inserting(DocData({NS!r}, "acct/3", "state", {{"count": 0}}))))\n'
        "@process.selector -> [DocClaim(NS, task.value['key'])]\n"
        'handler: returns M(M.deleting(task), M.changing(doc, content={"count": 1}));\n'
        "finisher: raise StopWorker",
    )
    await eq.modify(
        M(
            M.inserting(TaskData("gendocs/worker", value={"key": "acct/3"})),
            M.inserting(DocData(NS, "acct/3", "state", {"count": 0})),
        )
    )
    seen: dict[str, Any] = {}

    @EntroQWorker.handler
    async def process(task: Any, docs: Any) -> Any:
        seen["task"] = task_json(task)
        seen["docs"] = [doc_json(d) for d in docs]
        await asyncio.sleep(2.2)  # the renewer runs every half lease (1.5 s): once by now, halfway
        seen["docs_later"] = [doc_json(d) for d in await other.docs(NS, key_exact="acct/3")]
        [now] = await other.tasks("gendocs/worker")
        seen["task_version_later"] = now.version
        [doc] = docs
        return M(M.deleting(task), M.changing(doc, content={"count": 1}))

    @process.selector  # type: ignore[no-redef]
    async def process(task: Any) -> Any:
        return [DocClaim(NS, task.value["key"])]

    @process.finisher  # type: ignore[no-redef]
    async def process(task: Any, docs: Any) -> None:
        raise StopWorker()

    await asyncio.wait_for(EntroQWorker(eq, "gendocs/worker", claim_duration_s=3.0).run(process), 30)
    report["worker"] = seen
    report["worker_left"] = len(await eq.tasks("gendocs/worker"))
    after = await other.docs(NS, key_exact="acct/3")
    report["worker_after"] = [doc_json(d) for d in after]
    say(
        f"the handler got {[(d['id'], d['version'], d['claimant']) for d in seen['docs']]}\n"
        f"2.2 s later (renewed with the task, task now v{seen['task_version_later']}): "
        f"{[(d['id'], d['version'], d['claimant']) for d in seen['docs_later']]}\n"
        f"after the commit: {docs_text(after)}"
    )


async def member_change(url: str, transcript: Transcript) -> dict[str, Any]:
    """0.15.0 (--member-change): its worker commits a handler's change to a member doc of the
    set it claimed. Its ``_fix_versions`` names that member at the SET's version, the only
    version a member has in EntroQ 1.13's doc groups (pkg/backend/internal/docgroup): every
    write to a group, claims and renewals included, moves one version its members carry. A
    commit the service refuses is logged by the worker ("Dependency error, continuing"), which
    then claims again: the log line stops it here, so the outcome is known without waiting."""
    import logging

    from entroq.types import DocClaim
    from entroq.worker import EntroQWorker

    report: dict[str, Any] = {"entroq": VERSION}
    eq = EntroQJSON(url)
    transcript.watch(eq)
    step, say = transcript.step, transcript.outcome
    refusals: list[str] = []
    try:
        step(
            "EntroQWorker: the handler changes the member doc its selector claimed",
            'await eq.modify(M(M.inserting(TaskData("gendocs/member", value={"key": "acct/4"})),\n'
            f'    M.inserting(DocData({NS!r}, "acct/4", "state", {{"count": 0}}))))\n'
            "@process.selector -> [DocClaim(NS, task.value['key'])]\n"
            'handler: [doc] = docs; return M(M.deleting(task), M.changing(doc, content={"count": 1}),\n'
            "    then_stop=True)",
        )
        await eq.modify(
            M(
                M.inserting(TaskData("gendocs/member", value={"key": "acct/4"})),
                M.inserting(DocData(NS, "acct/4", "state", {"count": 0})),
            )
        )
        worker = EntroQWorker(eq, "gendocs/member", claim_duration_s=30.0)

        class Refused(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("Dependency error, continuing"):
                    refusals.append(record.getMessage())
                    worker.stop()

        logging.getLogger().addHandler(Refused())

        @EntroQWorker.handler
        async def process(task: Any, docs: Any) -> Any:
            [doc] = docs
            return M(M.deleting(task), M.changing(doc, content={"count": 1}), then_stop=True)

        @process.selector  # type: ignore[no-redef]
        async def process(task: Any) -> Any:
            return [DocClaim(NS, task.value["key"])]

        await asyncio.wait_for(worker.run(process), 30)
        report["refused"] = refusals
        report["member_after"] = [doc_json(d) for d in await eq.docs(NS, key_exact="acct/4")]
        report["tasks_left"] = len(await eq.tasks("gendocs/member"))
        say(f"refused: {refusals}\nafter: {docs_text(await eq.docs(NS, key_exact='acct/4'))}")
    finally:
        await eq.aclose()
    return report


async def main(url: str, readable: bool, scenario: str) -> int:
    transcript = Transcript()
    failed: BaseException | None = None
    report: dict[str, Any] = {}
    try:
        report = await (member_change if scenario == "member-change" else drive)(url, transcript)
    except Exception as exc:  # reported with the step it stopped at, for the test to show
        failed = exc
    if readable:
        print(transcript.render())
        if failed is not None:
            print(f"\n!! stopped: {type(failed).__name__}: {failed}")
    else:
        if failed is not None:
            last = transcript.steps[-1] if transcript.steps else {}
            report = {
                "failed": f"{type(failed).__name__}: {failed}",
                "step": last.get("title"),
                "wire": last.get("wire"),
            }
        print(json.dumps(report))
    return 1 if failed is not None and readable else 0


if __name__ == "__main__":
    flags = sys.argv[2:]
    sys.exit(
        asyncio.run(
            main(sys.argv[1], "--transcript" in flags, "member-change" if "--member-change" in flags else "")
        )
    )
