"""EntroQ's own PyPI clients' document calls, the real clients, against a running service.

Each release (0.12.4 and 0.14.0: docs claimed by key; 0.15.0, protocol 2: doc sets) is
installed from PyPI into a virtualenv of its own (tests/pypi_clients.py) and runs
tests/programs/entroq_pypi_docs.py through its public API: docs inserted in one modify with a
task, listed (key range, exact key, ids, limit, values omitted), claimed, changed in ONE modify
with a claimed task, a stale doc change refused (the client's DependencyError naming the doc,
and nothing of that modify written), a doc held by another refused, released, claimed by
another claimant, deleted. 0.12.4 and 0.14.0 also: their ``EntroQWorker`` taking the docs of
the task's key, renewing them with the task, and committing the handler's doc change with the
task's outcome. 0.15.0 also: several sets claimed at once (``omitMembers``, an empty
set), renewed and released by ``Modification.arriving(set, ...)``, ``taskToMatch`` (the set
held until the task's arrival; a stale task or another's refused, nothing claimed), and its
``EntroQWorker`` holding a set, renewed with the task, while the handler works, and releasing
it in the commit that ends the task.

None of the three releases has a namespace-stats call (GET /api/v0/namespaces/stats is covered
by the service's own tests).
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import start_service
from pypi_clients import VERSIONS, run_program, run_report

NS = "gen/docs"


def docs_report(version: str, url: str) -> dict[str, Any]:
    report = run_report(version, "entroq_pypi_docs.py", url)
    # The program reports the step it stopped at, with that step's HTTP exchanges.
    assert "failed" not in report, report
    return report


def shape(docs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(id or [key] for a set, version, key, secondary key, content, claimant) of each doc."""
    return [
        (d["id"] or [d["key"]], d["version"], d["key"], d["secondary_key"], d["content"], d["claimant"])
        for d in docs
    ]


@pytest.fixture
def service_url(store_url: str, namespace: str) -> Any:
    # A service of its own whose default namespace is this test's: the clients send no
    # namespace header (0.12 cannot send any header without reaching into private state).
    service = start_service(store_url, "--namespace", namespace)
    try:
        yield service.url
    finally:
        service.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_pypi_client_docs(version: str, service_url: str) -> None:
    report = docs_report(version, service_url)
    sets = version >= "0.15"  # 0.15.0 claims doc sets; 0.12.4 and 0.14.0 claim docs by key
    parsed_doc_ids = version >= "0.14"  # 0.12.4 reads no docId out of an error's details
    assert report["entroq"] == version
    me, them = report["claimant"], report["other_claimant"]

    # Inserted with the task, in one modify: versions from 0, no claimant, ids kept or made.
    [task] = report["inserted_tasks"]
    assert (task["queue"], task["value"], task["version"]) == ("gendocs/work", {"job": 1}, 0)
    inserted = report["inserted_docs"]
    a, b, fixed, zeta = (d["id"] for d in inserted)
    assert fixed == "gd-fixed" and len({a, b, zeta}) == 3 and all(len(i) == 36 for i in (a, b, zeta))
    assert shape(inserted) == [
        (a, 0, "acct/1", "a", {"balance": 10}, ""),
        (b, 0, "acct/1", "b", {"balance": 20}, ""),
        (fixed, 0, "acct/2", "", ["x"], ""),
        (zeta, 0, "zeta", "", "z", ""),
    ]
    assert all(d["namespace"] == NS for d in inserted)

    # Listings: (key, secondary key) order, [start, end), exact key, ids in the order asked
    # (a missing one skipped), a limit, values omitted.
    assert shape(report["list_all"]) == shape(inserted)
    assert [d["id"] for d in report["list_range"]] == [a, b]
    assert [d["id"] for d in report["list_exact"]] == [a, b]
    assert [d["id"] for d in report["list_ids"]] == [fixed, b]
    assert [d["id"] for d in report["list_limit"]] == [a, b]
    assert [(d["id"], d["content"]) for d in report["list_omit"]] == [(a, None), (b, None), (fixed, None)]

    # Claimed by key: 0.12.4/0.14.0 take each doc (version + 1, their claimant, the lease asked);
    # 0.15.0 takes the set (its own lock and version) and gets its members untouched.
    if sets:
        assert shape(report["claimed"]) == shape(inserted[:2])
        [held] = report["claimed_sets"]
        assert shape([held]) == [(["acct/1"], 1, "acct/1", "", None, me)]
        assert held["at_ms"] > report["time_ms"]
    else:
        assert shape(report["claimed"]) == [
            (a, 1, "acct/1", "a", {"balance": 10}, me),
            (b, 1, "acct/1", "b", {"balance": 20}, me),
        ]
        assert [d["lease_ms"] for d in report["claimed"]] == [30000, 30000]

    # Another claimant's claim of the same key: refused, naming what is held.
    contended = report["other_claim"]
    if sets:
        assert contended["doc_claims"] == [[NS, "", 1, "acct/1"]] and contended["has_claimed_docs"]
    elif parsed_doc_ids:
        assert contended["doc_claims"] == [[NS, a, 1, ""], [NS, b, 1, ""]] and contended["has_claimed_docs"]
    else:  # 0.12.4 appends a None per detail without a task id; the message names the docs
        assert contended["claims"] == [None, None]
        assert a in contended["message"] and b in contended["message"]
    assert "held by another claimant" in contended["message"]

    # The claimed doc and the claimed task changed in ONE modify (with a depend on zeta).
    claimed_task = report["task"]
    assert claimed_task["claimant"] == me and claimed_task["version"] == 1
    [done] = report["together_tasks"]
    assert (done["id"], done["version"], done["queue"], done["value"], done["claimant"]) == (
        claimed_task["id"],
        2,
        "gendocs/done",
        {"done": True},
        "",
    )
    # A doc claimed by key was written by the claim (0 -> 1 -> 2); a member of a claimed set was
    # not, but its change goes above the set lock's version 1 (lua/README.md section 6).
    claimed_version = 0 if sets else 1
    changed_version = 2
    assert shape(report["together_docs"]) == [(a, changed_version, "acct/1", "a", {"balance": 5}, "")]

    # The stale change (the version claimed, changed since) with a task insert: refused with
    # the doc named, and neither written.
    stale = report["stale"]
    assert stale["message"].startswith("modification dependency error")
    assert a in stale["message"] and "mismatched" in stale["message"]
    if parsed_doc_ids:
        # 0.15.0's DocID has a key, and the service names the doc's key too.
        assert stale["doc_changes"] == [[NS, a, claimed_version, "acct/1" if sets else ""]]
        assert stale["has_missing_docs"] and not stale["has_claimed_docs"]
        assert "changes" not in stale and "collisions" not in stale
    else:
        assert stale["changes"] == [None]  # 0.12.4 appends a None for a detail without a task id
    assert shape(report["after_stale_doc"]) == shape(report["together_docs"])
    assert report["after_stale_tasks"] == []

    # A doc this claimant holds (0.15.0: in a set it holds), changed by another: refused.
    theirs = report["other_change"]
    assert "held by another claimant" in theirs["message"]
    if sets:
        assert theirs["doc_claims"] == [[NS, "", 1, "acct/1"]]
    elif parsed_doc_ids:
        assert theirs["doc_claims"] == [[NS, b, 1, ""]]
    else:
        assert b in theirs["message"] and theirs["claims"] == [None]

    # Released (0.15.0: the set renewed, then released, each a lease-only change naming the
    # set, which comes back as a doc with no id); then the other claimant's claim succeeds.
    if sets:
        # Each lock write goes above the member written meanwhile (version 2): 3, then 4.
        assert shape(report["renewed_set"]) == [(["acct/1"], 3, "acct/1", "", None, me)]
        assert shape(report["released"]) == [(["acct/1"], 4, "acct/1", "", None, "")]
        # The set's old version again (a worker that lost it): a doc change failure naming the
        # set, which 0.15.0's renewer reads as a lost claim.
        assert report["stale_set"]["doc_changes"] == [[NS, "", 1, "acct/1"]]
        assert report["stale_set"]["has_missing_docs"] and "mismatched" in report["stale_set"]["message"]
        assert shape(report["other_claim_after"]) == [
            (a, 2, "acct/1", "a", {"balance": 5}, ""),
            (b, 0, "acct/1", "b", {"balance": 20}, ""),
        ]
        assert shape(report["other_claim_after_sets"]) == [(["acct/1"], 5, "acct/1", "", None, them)]
    else:
        assert shape(report["released"]) == [(b, 2, "acct/1", "b", {"balance": 20}, "")]
        assert shape(report["other_claim_after"]) == [
            (a, 3, "acct/1", "a", {"balance": 5}, them),
            (b, 3, "acct/1", "b", {"balance": 20}, them),
        ]
    assert [d["id"] for d in report["list_end"]] == [a, b, fixed]  # zeta deleted

    if sets:
        _doc_sets(report, me, them, fixed)
        _worker(report, them)
    else:
        _worker_by_key(report, me)


def _doc_sets(report: dict[str, Any], me: str, them: str, fixed: str) -> None:
    """0.15.0's sets: several at once, omitMembers, renewal and release, taskToMatch."""
    # Two sets in one claim: members of the first, none of the second (omitMembers, and empty).
    assert shape(report["multi"]) == [(fixed, 0, "acct/2", "", ["x"], "")]
    assert shape(report["multi_sets"]) == [
        (["acct/2"], 1, "acct/2", "", None, me),
        (["empty/set"], 1, "empty/set", "", None, me),
    ]
    assert report["multi_contended"]["doc_claims"] == [[NS, "", 1, "empty/set"]]
    assert shape(report["multi_renewed"]) == [
        (["acct/2"], 2, "acct/2", "", None, me),
        (["empty/set"], 2, "empty/set", "", None, me),
    ]
    assert shape(report["multi_released"]) == [
        (["acct/2"], 3, "acct/2", "", None, ""),
        (["empty/set"], 3, "empty/set", "", None, ""),
    ]

    # taskToMatch: the set is held until the task's own arrival, read by the store.
    task = report["match_task"]
    assert shape(report["matched"]) == [(fixed, 0, "acct/2", "", ["x"], "")]
    [matched] = report["matched_sets"]
    assert shape([matched]) == [(["acct/2"], 4, "acct/2", "", None, me)]
    assert matched["at_ms"] == task["at_ms"]
    # The task's old version, or a task the caller does not hold: the task named as a failed
    # depend, and nothing claimed (the empty set is still at the version its release left).
    assert report["match_stale"]["depends"] == [[task["id"], task["version"], "gendocs/match"]]
    assert report["match_stale"]["has_missing"]
    assert report["match_not_mine"]["depends"] == [[task["id"], task["version"] + 1, "gendocs/match"]]
    assert shape(report["empty_set_after"]) == [(["empty/set"], 4, "empty/set", "", None, them)]
    # The task deleted, the member changed and the set released in one modify: the member goes
    # above the lock's 4, the released lock above the member (lua/README.md section 6).
    assert sorted(shape(report["match_done"]), key=str) == sorted(
        [(fixed, 5, "acct/2", "", ["y"], ""), (["acct/2"], 6, "acct/2", "", None, "")], key=str
    )
    assert report["match_left"] == 0


def _worker(report: dict[str, Any], them: str) -> None:
    """0.15.0's EntroQWorker: the set its selector names is claimed for the task (taskToMatch),
    renewed with the task while the handler outlives the lease, released by the commit."""
    seen = report["worker"]
    assert seen["task"]["value"] == {"key": "acct/3"}
    [state] = seen["docs"]
    assert (state["key"], state["secondary_key"], state["content"]) == ("acct/3", "state", {"count": 0})
    # While the handler worked, the set was the worker's: another claimant was refused, first
    # at the claim's version, then at a later one (renewed together with the task).
    [[ns, no_id, first, key]] = seen["held_at_start"]["doc_claims"]
    assert (ns, no_id, first, key) == (NS, "", 1, "acct/3")
    [[_, _, later, _]] = seen["held_later"]["doc_claims"]
    assert later > first and seen["task_version_later"] > seen["task"]["version"]
    # The commit deleted the task, inserted a doc into the set and released the set: the
    # other claimant then took it (release + 1, claim + 1) and found both docs.
    assert report["worker_left"] == 0
    assert [(d["secondary_key"], d["content"]) for d in report["worker_after"]] == [
        ("log", {"done": seen["task"]["id"]}),
        ("state", {"count": 0}),
    ]
    [after] = report["worker_after_sets"]
    assert (after["key"], after["claimant"]) == ("acct/3", them) and after["version"] >= later + 2


def _worker_by_key(report: dict[str, Any], me: str) -> None:
    """0.12.4's and 0.14.0's EntroQWorker: the docs its selector names are claimed by key, renewed
    with the task (full changes, absolute arrivals) while the handler outlives the lease, and the
    handler's doc change commits with the task's deletion at the versions the renewals left."""
    seen = report["worker"]
    assert seen["task"]["value"] == {"key": "acct/3"}
    [state] = seen["docs"]
    assert (state["key"], state["secondary_key"], state["version"], state["claimant"]) == (
        "acct/3",
        "state",
        1,
        me,
    )
    [later] = seen["docs_later"]
    assert later["version"] > 1 and later["claimant"] == me and later["content"] == {"count": 0}
    assert seen["task_version_later"] > seen["task"]["version"]
    assert report["worker_left"] == 0
    [after] = report["worker_after"]
    assert (after["id"], after["content"], after["claimant"]) == (state["id"], {"count": 1}, "")
    assert after["version"] > later["version"]


def test_pypi_client_docs_transcript(service_url: str) -> None:
    """The readable transcript (--transcript) of the 0.15.0 run shows the wire and the outcomes."""
    done = run_program("0.15.0", "entroq_pypi_docs.py", service_url, "--transcript")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = done.stdout
    assert text.startswith("# entroq 0.15.0 (PyPI) document calls")
    assert "-> POST /api/v0/docs/claim  [entroq-protocol: 2]" in text
    assert '"mode": "CHANGE_LEASE"' in text and '"taskToMatch"' in text
    assert "<- 404  [entroq-protocol: 1,2]" in text and "= DependencyError" in text
    assert "!! stopped" not in text


def test_pypi_015_worker_commits_a_claimed_member_change(service_url: str) -> None:
    """0.15.0's worker, committing a handler's change to a member doc of the set it claimed.

    That worker names the member at its SET's version (``_fix_versions``: "a doc has no
    version of its own -- it carries its set's"), EntroQ 1.13's doc-group model (shiblon/entroq
    pkg/backend/internal/docgroup: one version per group). The store accepts a member named at
    the version of the set lock its caller holds (lua/README.md section 6, *A member named at
    its set's version*), so the commit applies, together with the task's outcome.
    """
    report = run_report("0.15.0", "entroq_pypi_docs.py", service_url, "--member-change")
    assert "failed" not in report, report
    assert report["refused"] == []
    [member] = report["member_after"]
    assert member["content"] == {"count": 1} and report["tasks_left"] == 0
