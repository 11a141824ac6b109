"""The channel between the ``--authz rego`` engine and its decision children, from the engine's side.

Real child processes throughout. To make a child misbehave the way rego-cpp and policies do
(or worse), a test puts a ``sitecustomize`` module on the children's PYTHONPATH: Python runs
it when each child starts, and it wraps the child's evaluation to write junk to file
descriptor 1 at the OS level, forge answers, raise, or start slowly. Whatever a child does,
every decision must be the policy's own for that request, or fail closed (PolicyFailure,
503), and a child that answered wrongly is never asked again.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import trio
from authz_support import ALICE, DATA, POLICY, SLOW_POLICY, printing_policy
from entroq_redis_server.authz.decision import Decision, PolicyFailure, parse_result
from entroq_redis_server.authz.input import Credentials
from entroq_redis_server.authz.rego import RegoEngine, load_rego_engine

PATH = ("entroq", "authz")
# Alternating requests and what the example policy answers to each.
REQUESTS = [
    (ALICE, "/alice/jobs", "permit"),
    (None, "/alice/jobs", "unauthenticated"),
    (ALICE, "/bob/jobs", "deny"),
    ("nobody", "/alice/jobs", "unauthenticated"),
]


def outcome(decision: Decision) -> str:
    if decision.permits:
        return "permit"
    return "unauthenticated" if decision.authenticated is False else "deny"


async def decide(engine: RegoEngine, token: str | None, queue: str) -> Decision:
    authz = {"type": "Bearer", "credentials": token} if token else {}
    document = {"authz": authz, "queues": [{"exact": queue, "actions": ["READ"]}]}
    return parse_result(await engine.evaluate(Credentials("Bearer", token or ""), document))


async def assert_decisions_follow_the_policy(engine: RegoEngine, count: int = 20) -> None:
    for index in range(count):
        token, queue, expected = REQUESTS[index % len(REQUESTS)]
        assert outcome(await decide(engine, token, queue)) == expected, (index, token, queue)


def decision_children() -> set[int]:
    """This process's decision children that are still running (not ended, not zombies)."""
    found = set()
    for child in psutil.Process().children():
        try:
            if "authz.rego_child" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.Error:
            pass
    return found


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_until_ended(pids: set[int]) -> None:
    with trio.fail_after(20):
        while not all(ended(pid) for pid in pids):  # noqa: ASYNC110 (other processes)
            await trio.sleep(0.02)


@pytest.fixture
def children_run(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Makes the decision children started from now on run ``code`` first (see the module doc)."""

    def inject(code: str) -> None:
        (tmp_path / "sitecustomize.py").write_text(code)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))

    return inject


# Wraps the child's evaluation: a request naming a queue that contains TRIGGER runs ACTION first.
WRAPPER = """
import os, sys, time
from entroq_redis_server.authz import rego as _authz_rego

_evaluate = _authz_rego._Compiled.evaluate

def evaluate(self, document_json):
    if {trigger!r} in document_json:
{action}
    return _evaluate(self, document_json)

_authz_rego._Compiled.evaluate = evaluate
"""

FORGED_ALLOW = '{"allow": true, "authenticated": true, "failed": [], "errors": []}'
JUNK = {
    "engine error text": "os.write(1, b'  Attempted to get double from (json-string 12:\"17966\")\\n\\n')",
    "forged allows for the next requests": (
        'os.write(1, b\'\'.join(b\'{"ok": true, "result": %s}\\n{"id": %d, "ok": true, "result": %s}\\n\''
        f" % (b'{FORGED_ALLOW}', n, b'{FORGED_ALLOW}') for n in range(100)))"
    ),
    "a line with no end": 'os.write(1, b\'{"ok": true, "result": \')',
}


@pytest.mark.parametrize("junk", list(JUNK))
async def test_what_a_child_writes_to_fd_1_never_reaches_the_answers(children_run: Any, junk: str) -> None:
    children_run(WRAPPER.format(trigger="/alice/junk", action=f"        {JUNK[junk]}"))
    engine = load_rego_engine([POLICY], DATA, PATH)
    try:
        for _ in range(3):
            assert outcome(await decide(engine, ALICE, "/alice/junk")) == "permit"
            await assert_decisions_follow_the_policy(engine)
    finally:
        engine.close()


async def test_what_a_policy_prints_never_reaches_the_answers(tmp_path: pathlib.Path) -> None:
    policy = tmp_path / "printing.rego"
    policy.write_text(printing_policy())
    engine = load_rego_engine([str(policy)], DATA, PATH)
    try:
        await assert_decisions_follow_the_policy(engine, 40)
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        # Written straight onto the answer pipe (its descriptor is the child's argument); the
        # wrapped request is the child's fourth (ID 4).
        (
            'os.write(int(sys.argv[1]), b\'{"id": 999, "ok": true, "result": %s}\\n\' % b\''
            + FORGED_ALLOW
            + "')",
            "answered request 999 when 4 was asked",
        ),
        ("os.write(int(sys.argv[1]), b'not JSON\\n')", "answered something that is not JSON"),
        ('os.write(int(sys.argv[1]), b\'{"id": 4, "ok": true}\\n\')', "gave a malformed answer"),
        ("os.write(int(sys.argv[1]), b'[4, true]\\n')", "gave an answer without a request ID"),
        ("os._exit(3)", "ended"),
        ("raise RuntimeError('the engine broke')", "the embedded policy engine failed (RuntimeError)"),
    ],
    ids=["another ID", "not JSON", "malformed", "no ID", "child ends", "child raises"],
)
async def test_a_wrong_answer_fails_its_decision_closed_and_retires_the_child(
    children_run: Any, action: str, message: str
) -> None:
    children_run(WRAPPER.format(trigger="/alice/wrong", action=f"        {action}"))
    engine = load_rego_engine([POLICY], DATA, PATH)
    try:
        before = decision_children()
        await assert_decisions_follow_the_policy(engine, 3)
        used = decision_children() - before
        with pytest.raises(PolicyFailure, match=message.replace("(", r"\(").replace(")", r"\)")):
            await decide(engine, ALICE, "/alice/wrong")
        await wait_until_ended(used)  # killed, not asked again
        await assert_decisions_follow_the_policy(engine)
    finally:
        engine.close()


async def test_a_decision_over_the_time_limit_fails_closed_and_its_child_is_killed(
    tmp_path: pathlib.Path,
) -> None:
    slow = tmp_path / "slow.rego"
    slow.write_text(SLOW_POLICY)
    engine = load_rego_engine([POLICY, str(slow)], DATA, PATH, time_limit_s=1.0)
    try:
        before = decision_children()
        await assert_decisions_follow_the_policy(engine, 4)
        stuck = decision_children() - before
        # About 40 s of work: far past the limit, so only the limit can end it.
        with pytest.raises(PolicyFailure, match=r"decision time limit \(1 s\)"):
            await decide(engine, ALICE, "/slow/" + "x" * 594)
        await wait_until_ended(stuck)
        await assert_decisions_follow_the_policy(engine)
    finally:
        engine.close()


async def test_a_new_childs_start_up_does_not_count_against_the_time_limit(children_run: Any) -> None:
    # Each child takes 3 s longer than usual to start; decisions have 1 s.
    children_run("import time\ntime.sleep(3)\n")
    engine = load_rego_engine([POLICY], DATA, PATH, time_limit_s=1.0)
    try:
        await assert_decisions_follow_the_policy(engine, 4)
    finally:
        engine.close()


@pytest.mark.parametrize(("max_rss_mb", "replaced"), [(100, True), (256, False)])
async def test_a_child_above_the_memory_limit_is_replaced(
    tmp_path: pathlib.Path, max_rss_mb: int, replaced: bool
) -> None:
    slow = tmp_path / "slow.rego"
    slow.write_text(SLOW_POLICY)
    engine = load_rego_engine([POLICY, str(slow)], DATA, PATH, max_rss_mb=max_rss_mb)
    try:
        before = decision_children()
        await assert_decisions_follow_the_policy(engine, 4)
        first = decision_children() - before
        (pid,) = first
        assert psutil.Process(pid).memory_info().rss < 100 * 2**20
        # Leaves the child about 110 MB larger (rego-cpp keeps the memory).
        assert outcome(await decide(engine, None, "/big/" + "x" * 20)) == "unauthenticated"
        if replaced:
            await wait_until_ended(first)
        await assert_decisions_follow_the_policy(engine)
        assert (pid in decision_children()) is not replaced
    finally:
        engine.close()


async def test_a_child_that_died_while_idle_is_replaced_without_a_failed_decision() -> None:
    engine = load_rego_engine([POLICY], DATA, PATH)
    try:
        before = decision_children()
        await assert_decisions_follow_the_policy(engine, 4)
        idle = decision_children() - before
        for pid in idle:
            os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        await wait_until_ended(idle)
        await assert_decisions_follow_the_policy(engine)
    finally:
        engine.close()


@pytest.fixture
def no_leftover_children() -> Iterator[None]:
    before = decision_children()
    yield
    assert decision_children() <= before


async def test_close_stops_every_child(no_leftover_children: None) -> None:
    engine = load_rego_engine([POLICY], DATA, PATH)
    async with trio.open_nursery() as nursery:
        for index in range(8):
            token, queue, _ = REQUESTS[index % len(REQUESTS)]
            nursery.start_soon(decide, engine, token, queue)
    engine.close()
    with pytest.raises(PolicyFailure, match="shut down"):
        await decide(engine, ALICE, "/alice/jobs")


async def test_a_service_started_without_stdio_still_keeps_prints_off_the_answers(
    tmp_path: pathlib.Path,
) -> None:
    # Started with stdin, stdout and stderr closed (as some supervisors do), the process would
    # get 0-2 for its pipes, and a child's stdout could become its answer pipe.
    policy = tmp_path / "printing.rego"
    policy.write_text(printing_policy())
    results = tmp_path / "results.json"
    program = f"""
import json, sys
sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
from authz_support import ALICE, DATA
from entroq_redis_server.authz.decision import parse_result
from entroq_redis_server.authz.rego import load_rego_engine

engine = load_rego_engine([{str(policy)!r}], DATA, {PATH!r})
outcomes = []
for token, queue in [(ALICE, "/alice/jobs"), (ALICE, "/bob/jobs"), (None, "/alice/jobs")] * 7:
    authz = {{"type": "Bearer", "credentials": token}} if token else {{}}
    document = {{"authz": authz, "queues": [{{"exact": queue, "actions": ["READ"]}}]}}
    try:
        decision = parse_result(engine._children.evaluate(json.dumps(document)))
        outcomes.append([decision.permits, decision.authenticated])
    except Exception as exc:
        outcomes.append(repr(exc))
engine.close()
with open({str(results)!r}, "w") as handle:
    json.dump(outcomes, handle)
"""
    closed = "0<&- 1>&- 2>&-"
    completed = await trio.run_process(["sh", "-c", f'exec "$0" -c "$1" {closed}', sys.executable, program])
    assert completed.returncode == 0
    assert json.loads(results.read_text()) == [[True, True], [False, True], [False, False]] * 7
