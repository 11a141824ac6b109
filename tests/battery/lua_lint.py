"""A static check of the scripts' first rule: no write before the last check (battery row k).

Redis does not roll back a script that fails after writing (docs/reference/reliability-battery.md 1.3), so in
every script each path through the main chunk must pass its last check (an error reply, a
refusal reply, or a call that may raise) before its first write. The check works on the
tokens of tests/test_lua_contract.py's tokenizer and understands just enough Lua:

- a write is ``redis.call``/``redis.pcall`` of a write command (or of a command named by a
  variable: ``redis.call(notify, ...)``), or a call of a local function that writes;
- a check is ``return redis.error_reply(...)``, ``return bad(...)``-style calls of functions
  that build error replies, ``error(...)``, a ``return`` of a refusal table (``{0, failures}``,
  ``{-1, failures}``), or a call of a local function that may raise;
- a write may come textually before a check only inside an ``if`` branch that itself ends in
  ``return`` (Lua allows ``return`` only as a block's last statement), with the check outside
  that branch: that write's path never reaches the check.
"""

from __future__ import annotations

import dataclasses

from lua_tokens import Token, tokenize

WRITE_COMMANDS = frozenset(
    [
        "SET", "SETEX", "PSETEX", "SETNX", "MSET", "MSETNX", "APPEND", "DEL", "UNLINK", "INCR", "INCRBY",
        "DECR", "DECRBY", "EXPIRE", "PEXPIRE", "PERSIST", "RENAME", "ZADD", "ZREM", "ZINCRBY",
        "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZREMRANGEBYLEX", "ZPOPMIN", "ZPOPMAX", "HSET",
        "HSETNX", "HMSET", "HDEL", "HINCRBY", "HINCRBYFLOAT", "SADD", "SREM", "SPOP", "LPUSH", "RPUSH",
        "LPOP", "RPOP", "LSET", "LREM", "LTRIM", "XADD", "XDEL", "XTRIM", "PUBLISH", "SPUBLISH",
        "COPY", "RESTORE", "FLUSHALL", "FLUSHDB",
    ]
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Site:
    index: int  # token index
    line: int
    what: str


@dataclasses.dataclass
class Block:
    kind: str  # function | if-branch | loop | do | repeat
    start: int
    end: int = -1
    returns: bool = False  # holds a top-level return (so it ends in one)
    name: str = ""


def _blocks(tokens: list[Token]) -> list[Block]:
    """Every block with its token span; ``if`` statements are split into their branches."""
    blocks: list[Block] = []
    stack: list[Block] = []
    awaiting_do = 0
    for index, token in enumerate(tokens):
        if token.kind != "name":
            continue
        word = token.text
        if word == "function":
            name = tokens[index + 1].text if tokens[index + 1].kind == "name" else ""
            stack.append(Block("function", index, name=name))
        elif word in ("for", "while"):
            awaiting_do += 1
        elif word == "do":
            if awaiting_do:
                awaiting_do -= 1
                stack.append(Block("loop", index))
            else:
                stack.append(Block("do", index))
        elif word == "then":
            stack.append(Block("if-branch", index))
        elif word in ("elseif", "else"):
            branch = stack.pop()
            branch.end = index
            blocks.append(branch)
            if word == "else":
                stack.append(Block("if-branch", index))
        elif word == "repeat":
            stack.append(Block("repeat", index))
        elif word in ("end", "until"):
            block = stack.pop()
            block.end = index
            blocks.append(block)
        elif word == "return" and stack:
            stack[-1].returns = True
    assert not stack, "unbalanced blocks"
    return blocks


def _enclosing(blocks: list[Block], index: int) -> list[Block]:
    return sorted((b for b in blocks if b.start < index < b.end), key=lambda b: b.start)


def _called_name(tokens: list[Token], index: int) -> str | None:
    """The name of a plain call ``name(`` at index (not a method or field call)."""
    token = tokens[index]
    if token.kind != "name" or index + 1 >= len(tokens) or tokens[index + 1].text != "(":
        return None
    if index > 0 and tokens[index - 1].text in (".", ":", "function"):
        return None
    return token.text


def _is_write_call(tokens: list[Token], index: int) -> bool:
    """``redis.call(<write command>`` or ``redis.pcall(`` at index (the ``redis`` token)."""
    if tokens[index].text != "redis" or index + 3 >= len(tokens):
        return False
    if tokens[index + 1].text != "." or tokens[index + 2].text not in ("call", "pcall"):
        return False
    command = tokens[index + 4]
    if command.kind == "string":
        return command.string_value.upper() in WRITE_COMMANDS
    return True  # a command in a variable: assume it writes


def _is_check(tokens: list[Token], index: int, raising: set[str], error_builders: set[str]) -> str | None:
    token = tokens[index]
    if token.text == "return" and token.kind == "name":
        following = [t.text for t in tokens[index + 1 : index + 5]]
        if following[:3] == ["redis", ".", "error_reply"]:
            return "return redis.error_reply"
        if following and following[0] in error_builders and following[1:2] == ["("]:
            return f"return {following[0]}(...)"
        # {0, failures}, {-1, failures}, {0, task_failures, doc_failures}, ...
        if (
            following[:1] == ["{"]
            and following[1:2] in (["0"], ["-"])
            and any(
                text.endswith("failures")
                for text in following + [t.text for t in tokens[index + 5 : index + 7]]
            )
        ):
            return "return {refusal, failures}"
    name = _called_name(tokens, index)
    if name == "error":
        return "error(...)"
    if name is not None and name in raising:
        return f"{name}(...) may raise"
    return None


def analyse(source: str) -> tuple[list[Site], list[Site], list[str]]:
    """(writes, checks, problems) of a script's main chunk."""
    tokens = tokenize(source)
    blocks = _blocks(tokens)
    functions = {b.name: b for b in blocks if b.kind == "function" and b.name}

    def inside(block: Block, index: int) -> bool:
        return block.start < index < block.end

    # Which local functions write, raise, or build an error reply (to a fixpoint).
    writing: set[str] = set()
    raising: set[str] = set()
    error_builders: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, block in functions.items():
            span = range(block.start, block.end)
            writes = any(_is_write_call(tokens, i) or _called_name(tokens, i) in writing for i in span)
            raises = any(
                _called_name(tokens, i) == "error" or _called_name(tokens, i) in raising for i in span
            )
            builds = any(
                tokens[i].text == "return"
                and [t.text for t in tokens[i + 1 : i + 4]] == ["redis", ".", "error_reply"]
                for i in span
            )
            for flag, group in ((writes, writing), (raises, raising), (builds, error_builders)):
                if flag and name not in group:
                    group.add(name)
                    changed = True

    function_blocks = [b for b in blocks if b.kind == "function"]
    writes: list[Site] = []
    checks: list[Site] = []
    for index, token in enumerate(tokens):
        if any(inside(b, index) for b in function_blocks):
            continue
        if _is_write_call(tokens, index):
            writes.append(Site(index, token.line, f"redis.call({tokens[index + 4].text})"))
        elif _called_name(tokens, index) in writing:
            writes.append(Site(index, token.line, f"{token.text}() writes"))
        what = _is_check(tokens, index, raising, error_builders)
        if what:
            checks.append(Site(index, token.line, what))

    problems = []
    for write in writes:
        returning = [b for b in _enclosing(blocks, write.index) if b.kind == "if-branch" and b.returns]
        for check in checks:
            if check.index <= write.index:
                continue
            # Unreachable from the write if the write sits in a branch that returns and the
            # check lies outside that branch.
            if any(not inside(branch, check.index) for branch in returning):
                continue
            problems.append(
                f"line {write.line}: {write.what} comes before the check at line {check.line} ({check.what})"
            )
    return writes, checks, problems
