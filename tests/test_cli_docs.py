"""The doc commands (``docs``, ``doc-put``, ``doc-rm``, ``ns``), end to end in a subprocess.

As tests/test_cli.py: each test runs the real CLI process against the store (redis://) and
through a real service process (http://), via the ``backend_url`` fixture.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import cli_support
import pytest
from conftest import ServiceProcess


@pytest.fixture
def cli(backend_url: str, namespace: str) -> cli_support.Cli:
    return cli_support.Cli(backend_url, namespace)


def test_doc_put_then_docs_lists_by_range_key_and_id(cli: cli_support.Cli, tmp_path: Path) -> None:
    first = cli.json("doc-put", "accounts", "acct:1", '{"balance": 10}', "--secondary-key", "main")
    assert (first["namespace"], first["key"], first["secondaryKey"]) == ("accounts", "acct:1", "main")
    assert (first["version"], first["claimant"], first["contentText"]) == (0, "", '{"balance": 10}')
    assert re.fullmatch(r"[0-9a-f-]{36}", first["id"])
    binary = tmp_path / "content.bin"
    binary.write_bytes(b"\x00\xff{binary}")
    chosen = cli.json(
        "doc-put", "accounts", "acct:1", "-F", str(binary), "--secondary-key", "audit", "-t", "a1-audit"
    )
    assert chosen["id"] == "a1-audit" and "contentText" not in chosen
    from_stdin = cli.json("doc-put", "accounts", "acct:{2}", "--file", "-", "--id", "a2", stdin="from stdin")
    assert from_stdin["contentText"] == "from stdin"
    cli.json("doc-put", "accounts", "acct:3", "third", "--id", "a3")
    cli.json("doc-put", "other-ns", "acct:1", "elsewhere", "--id", "o1")

    listed = cli.json("docs", "accounts")
    # By key, then secondary key: "audit" < "main" within acct:1.
    assert [(d["key"], d["secondaryKey"]) for d in listed] == [
        ("acct:1", "audit"),
        ("acct:1", "main"),
        ("acct:3", ""),
        ("acct:{2}", ""),
    ]
    assert listed[0]["content"] == base64.b64encode(b"\x00\xff{binary}").decode()
    assert [d["id"] for d in cli.json("docs", "accounts", "--key-start", "acct:3")] == ["a3", "a2"]
    assert [
        d["id"] for d in cli.json("docs", "accounts", "--key-start", "acct:1", "--key-end", "acct:3")
    ] == [
        "a1-audit",
        first["id"],
    ]
    assert [d["id"] for d in cli.json("docs", "accounts", "--key", "acct:{2}")] == ["a2"]
    assert [d["id"] for d in cli.json("docs", "accounts", "--key", "acct:")] == []
    assert cli.run("docs", "accounts", "--key", "acct:").stdout == "no docs in accounts match\n"
    assert len(cli.json("docs", "accounts", "--limit", "3")) == 3
    # IDs: in the order asked, missing ones left out, other namespaces not looked at.
    by_id = cli.json("docs", "accounts", "--id", "a3", "-t", "nope", "--id", "o1", "-t", "a2")
    assert [d["id"] for d in by_id] == ["a3", "a2"]
    [bare] = cli.json("docs", "accounts", "--id", "a3", "--omit-values")
    assert "content" not in bare and bare["version"] == 0
    assert cli.json("docs", "empty-ns") == []
    assert cli.run("docs", "empty-ns").stdout == "no docs in empty-ns\n"
    assert cli.run("docs", "accounts", "-t", "nope").stdout == "no such docs\n"

    table = cli.run("docs", "accounts").stdout
    assert re.search(r"^ID\s+VERSION\s+KEY\s+SECONDARY KEY\s+HELD BY\s+MODIFIED\s+CONTENT$", table, re.M)
    assert re.search(r"^a3\s+0\s+acct:3\s+-\s+\S+Z\s+third$", table, re.M), table
    assert "<10 bytes, binary>" in table
    assert "CONTENT" not in cli.run("docs", "accounts", "--omit-values").stdout


def test_ns_counts_docs_and_claimed_docs(cli: cli_support.Cli) -> None:
    assert cli.json("ns") == []
    assert cli.run("ns").stdout == "no doc namespaces\n"
    for key in ("a", "b", "c"):
        cli.run("doc-put", "shop/carts", key, "x", "--id", f"cart-{key}")
    cli.run("doc-put", "shop/users", "u", "x", "--id", "user-1")
    cli.run("doc-put", "warehouse", "w", "x")
    # Held: a change with a future arrival makes its modifier the doc's claimant.
    cli.run("doc-put", "shop/carts", "a", "--id", "cart-a", "--doc-version", "0", "--delay", "1h")

    assert cli.json("ns", "--prefix", "shop/") == [
        {"name": "shop/carts", "numDocs": 3, "numClaimed": 1},
        {"name": "shop/users", "numDocs": 1, "numClaimed": 0},
    ]
    assert [s["name"] for s in cli.json("ns")] == ["shop/carts", "shop/users", "warehouse"]
    assert [s["name"] for s in cli.json("ns", "--exact", "warehouse", "-x", "nothing")] == ["warehouse"]
    assert cli.run("ns", "-x", "nothing").stdout == "no doc namespaces match\n"
    assert [s["name"] for s in cli.json("ns", "--limit", "2")] == ["shop/carts", "shop/users"]
    table = cli.run("ns").stdout
    assert re.search(r"^NAMESPACE\s+DOCS\s+CLAIMED$", table, re.M)
    assert re.search(r"^shop/carts\s+3\s+1$", table, re.M), table


def test_doc_put_change_and_doc_rm_check_versions(cli: cli_support.Cli) -> None:
    cli.run("doc-put", "cfg", "db", "v0 content", "--id", "conf", "--secondary-key", "primary")
    changed = cli.json("doc-put", "cfg", "db", "--id", "conf", "--doc-version", "0")
    # Nothing but the key given: the content and secondary key are kept, the version moves on.
    assert (changed["version"], changed["contentText"], changed["secondaryKey"]) == (
        1,
        "v0 content",
        "primary",
    )
    moved = cli.json(
        "doc-put", "cfg", "cache", "new content", "-t", "conf", "--doc-version", "1", "--secondary-key", ""
    )
    assert (moved["key"], moved["secondaryKey"], moved["contentText"]) == ("cache", "", "new content")

    stale = cli.run("doc-put", "cfg", "db", "late", "--id", "conf", "--doc-version", "0", expect=3)
    assert "dependency conflict, nothing was changed" in stale.stderr
    assert "doc conf in doc namespace 'cfg' is at version 2, not 0" in stale.stderr
    missing = cli.run("doc-put", "cfg", "db", "x", "--id", "ghost", "--doc-version", "0", expect=3)
    assert "no doc ghost in doc namespace 'cfg'" in missing.stderr
    collision = cli.run("doc-put", "cfg", "db", "again", "--id", "conf", expect=3)
    assert "doc insert collision: doc conf" in collision.stderr

    assert "is at version 2, not 1" in cli.run("doc-rm", "cfg", "conf", "--doc-version", "1", expect=3).stderr
    assert "does not exist" in cli.run("doc-rm", "cfg", "ghost", "--doc-version", "0", expect=3).stderr
    [still] = cli.json("docs", "cfg")
    assert (still["version"], still["contentText"]) == (2, "new content")
    assert cli.json("doc-rm", "cfg", "conf", "--doc-version", "2") == {
        "deleted": [{"namespace": "cfg", "id": "conf", "version": 2}]
    }
    assert cli.json("docs", "cfg") == []
    cli.run("doc-put", "cfg", "k", "x", "--id", "again")
    assert cli.run("doc-rm", "cfg", "again", "--doc-version", "0").stdout == "deleted doc again v0 from cfg\n"


def test_a_doc_held_by_one_claimant_refuses_another(cli: cli_support.Cli) -> None:
    cli.run("doc-put", "locks", "job", "free", "--id", "lock")
    held = cli.json(
        "doc-put",
        "locks",
        "job",
        "mine",
        "--id",
        "lock",
        "--doc-version",
        "0",
        "--delay",
        "1h",
        "--claimant",
        "alice",
    )
    assert (held["claimant"], held["version"]) == ("alice", 1)
    table = cli.run("docs", "locks").stdout
    assert re.search(r"^lock\s+1\s+job\s+alice\s+\S+Z\s+mine$", table, re.M), table

    refused = cli.run(
        "doc-put",
        "locks",
        "job",
        "theirs",
        "--id",
        "lock",
        "--doc-version",
        "1",
        "--claimant",
        "bob",
        expect=3,
    )
    assert "claimed: doc lock v1 in doc namespace 'locks' is held by another claimant" in refused.stderr
    assert "act as that claimant with --claimant ID)" in refused.stderr
    as_json = cli.run("doc-rm", "locks", "lock", "--doc-version", "1", "--claimant", "bob", "-j", expect=3)
    conflict = json.loads(as_json.stderr)
    assert (conflict["error"], conflict["exitCode"]) == ("dependency", 3)
    assert [
        (f["kind"], f["reason"], f["namespace"], f["id"], f["version"], f["currentVersion"])
        for f in conflict["failures"]
    ] == [("CLAIM", "claimed", "locks", "lock", 1, 1)]
    # The holder releases it (no future arrival), after which anyone may change it.
    released = cli.json("doc-put", "locks", "job", "-t", "lock", "--doc-version", "1", "--claimant", "alice")
    assert (released["claimant"], released["contentText"]) == ("", "mine")
    cli.run("doc-rm", "locks", "lock", "--doc-version", "2", "--claimant", "bob")


def test_bad_doc_input_is_refused_with_a_message(cli: cli_support.Cli) -> None:
    too_long = "n" * 1025
    refused = cli.run("doc-put", too_long, "k", "x", expect=2)
    assert "namespace" in refused.stderr
    cli.run("docs", "ns", "--limit", "-1", expect=2)
    assert cli.json("ns") == []


def test_doc_json_names_are_the_http_apis(http_service: ServiceProcess, namespace: str) -> None:
    """A doc's and a doc namespace's keys are the HTTP API's (camelCase; a doc's holder is
    ``claimant``, as EntroQ's Doc message names it), plus contentText; numbers stay numbers."""
    cli = cli_support.Cli(http_service.url, namespace)
    inserted = cli.json("doc-put", "wire", "k", "text", "--secondary-key", "s")
    # Held (a change with a future arrival), so that the claimant is not empty.
    written = cli.json("doc-put", "wire", "k", "-t", inserted["id"], "--doc-version", "0", "--delay", "1h")
    [listed] = cli.json("docs", "wire")
    [cli_stats] = cli.json("ns")
    headers = {"EntroQ-Namespace": namespace, "EntroQ-Value-Encoding": "base64"}

    def get(path: str) -> Any:
        request = urllib.request.Request(http_service.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=cli_support.TIMEOUT_S) as response:
            return json.load(response)

    [http_doc] = get("/api/v0/docs?namespace=wire")["docs"]
    # proto3 JSON leaves zero values out: the CLI's keys are a superset, with the same names.
    assert set(http_doc) <= set(listed) and set(listed) - set(http_doc) <= {"contentText"}
    assert {"claimant", "secondaryKey", "atMs", "createdMs", "modifiedMs", "version"} <= set(http_doc)
    assert listed["claimant"] and listed["version"] == 1
    assert listed == written
    assert (listed["atMs"], listed["claimant"], listed["content"]) == (
        int(http_doc["atMs"]),
        http_doc["claimant"],
        http_doc["content"],
    )
    [http_stats] = get("/api/v0/namespaces/stats")["namespaces"]
    assert set(http_stats) <= set(cli_stats)
    assert {k: int(v) for k, v in http_stats.items() if k != "name"}.items() <= cli_stats.items()
