"""A tokenizer of the Lua scripts (strings, comments and long brackets handled), shared by the
contract test (tests/test_lua_contract.py) and the write-order lint (tests/battery/lua_lint.py)."""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # name | number | string | op
    text: str
    line: int

    @property
    def string_value(self) -> str:
        """A short string's contents (the scripts' key suffixes and codes use no escapes)."""
        return self.text[1:-1]


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--(?:\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|[^\n]*))
  | (?P<long>\[(?P<leq>=*)\[.*?\](?P=leq)\])
  | (?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<number>0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^\#<>=(){}\[\];:,.])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            line = source.count("\n", 0, position) + 1
            raise ValueError(f"cannot tokenize Lua at line {line}: {source[position : position + 20]!r}")
        # The outer alternatives close last, so lastgroup never names the inner ceq/leq groups.
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            kind = "string" if kind == "long" else kind
            tokens.append(Token(kind, match.group(), source.count("\n", 0, position) + 1))
        position = match.end()
    return tokens
