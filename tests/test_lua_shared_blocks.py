"""The blocks the Lua scripts share stay word for word the same in every script that carries them.

Each script stays runnable on its own with EVAL (no build step), so a block that several scripts
need is written out in each; begin/end comment markers name it (lua/README.md, *Shared blocks*)
and this test checks every copy against the others, byte for byte.
"""

from __future__ import annotations

import pathlib
import re
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
LUA = ROOT / "lua"
MARKER = re.compile(r"^(?P<indent>\s*)-- shared: (?P<name>[a-z][a-z0-9-]*) (?P<edge>begin|end)$")
ANY_MARKER = re.compile(r"--\s*shared\s*:")


def blocks_of(text: str, where: str) -> dict[str, str]:
    """The marked blocks of one script, name -> the lines between its markers; raises on bad markers."""
    blocks: dict[str, str] = {}
    open_name: str | None = None
    open_indent = ""
    body: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        stripped = line.rstrip("\n")
        match = MARKER.match(stripped)
        if match is None:
            if ANY_MARKER.search(stripped):
                raise ValueError(f"{where}:{number}: malformed shared-block marker: {stripped!r}")
            if open_name is not None:
                body.append(line)
            continue
        name, edge, indent = match["name"], match["edge"], match["indent"]
        if edge == "begin":
            if open_name is not None:
                raise ValueError(f"{where}:{number}: block {name} begins inside block {open_name}")
            if name in blocks:
                raise ValueError(f"{where}:{number}: block {name} is marked twice")
            open_name, open_indent, body = name, indent, []
        else:
            if open_name != name:
                raise ValueError(f"{where}:{number}: end of {name} without its begin (open: {open_name})")
            if indent != open_indent:
                raise ValueError(f"{where}:{number}: end of {name} is indented unlike its begin")
            if not "".join(body).strip():
                raise ValueError(f"{where}:{number}: block {name} is empty")
            blocks[name] = "".join(body)
            open_name = None
    if open_name is not None:
        raise ValueError(f"{where}: block {open_name} is never ended")
    return blocks


def differences(scripts: dict[str, str]) -> list[str]:
    """Every way the scripts' shared blocks break the convention (empty when they keep it)."""
    problems: list[str] = []
    copies: dict[str, dict[str, str]] = defaultdict(dict)
    for script, text in scripts.items():
        try:
            for name, body in blocks_of(text, script).items():
                copies[name][script] = body
        except ValueError as error:
            problems.append(str(error))
    for name, by_script in sorted(copies.items()):
        if len(by_script) < 2:
            problems.append(
                f"block {name} is marked only in {', '.join(by_script)}: a shared block needs two copies"
            )
        first_script, first_body = next(iter(sorted(by_script.items())))
        for script, body in sorted(by_script.items()):
            if body != first_body:
                problems.append(f"block {name} differs between {first_script} and {script}")
    return problems


def scripts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(LUA.glob("*.lua"))}


def test_every_shared_block_is_identical_in_every_script_that_carries_it() -> None:
    assert differences(scripts()) == []


def test_claim_finish_rules_are_modify_delete_rules() -> None:
    # claim.lua's finish deletes follow modify.lua's delete rules exactly (lua/README.md section 5):
    # both carry the same delete-rules block, and the failure helpers it calls.
    texts = scripts()
    claim, modify = blocks_of(texts["claim.lua"], "claim.lua"), blocks_of(texts["modify.lua"], "modify.lua")
    for name in ("delete-rules", "task-failures"):
        assert name in claim and name in modify, name
        assert claim[name] == modify[name], name


def test_every_script_carries_the_prelude_blocks() -> None:
    for script, text in scripts().items():
        blocks = blocks_of(text, script)
        assert "prefix-check" in blocks, script
        if script != "time.lua":  # time.lua reads no argument of its own
            assert "argument-helpers" in blocks, script


def test_the_check_catches_an_edited_copy_and_bad_markers() -> None:
    texts = scripts()
    edited = dict(texts)
    edited["claim.lua"] = texts["claim.lua"].replace(
        "fail('DELETE', 'mismatch'", "fail('DELETE', 'mismatched'", 1
    )
    assert edited["claim.lua"] != texts["claim.lua"]
    assert differences(edited) == ["block delete-rules differs between claim.lua and modify.lua"]

    unended = dict(texts)
    unended["time.lua"] = texts["time.lua"].replace("-- shared: prefix-check end\n", "")
    assert differences(unended) == ["time.lua: block prefix-check is never ended"]

    twice = {
        "a.lua": "-- shared: x begin\ny\n-- shared: x end\n-- shared: x begin\ny\n-- shared: x end\n",
        "b.lua": "",
    }
    assert "a.lua:4: block x is marked twice" in differences(twice)

    typo = {"a.lua": "-- shared:x begin\ny\n"}
    assert differences(typo) == ["a.lua:1: malformed shared-block marker: '-- shared:x begin'"]

    lonely = {"a.lua": "-- shared: x begin\ny\n-- shared: x end\n"}
    assert differences(lonely) == ["block x is marked only in a.lua: a shared block needs two copies"]
