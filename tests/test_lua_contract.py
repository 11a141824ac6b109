"""The Lua contract, checked statically: script headers against bodies, Python and lua/README.md.

Other languages call lua/*.lua knowing only each script's header comment and lua/README.md,
so both must say what the bodies do. These checks read the sources (no store needed):

- every script starts with ``-- entroq-redis contract <version>: <file>`` and refuses any
  other ARGV[2] than that version;
- every KEYS[n] and fixed ARGV[n] the body reads is documented in the header and every
  documented one is read; a variadic tail (``ARGV[k..]``) starts where the body's loops start;
- every reply tuple in the header exists in the body, and every reply the main chunk
  returns matches a documented one; every EQ_* error the body raises is documented;
- the MAX_* limits equal entroq_redis/_contract.py and the README's limits table;
- every key suffix the scripts build (``prefix .. 't:'``) is one entroq_redis._keys.Keys
  builds and one the README documents;
- every script in lua/ is in _contract.SCRIPT_NAMES and has a README section whose
  KEYS/ARGV table matches its header.

The checks return lists of problems instead of asserting, so that the last test can run
them on deliberately broken copies and prove that each of them can fail.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re
import shutil
import struct
from collections.abc import Callable, Iterator

import pytest
from lua_tokens import Token, tokenize

from entroq_redis import _contract
from entroq_redis._keys import Keys

REPO = pathlib.Path(__file__).resolve().parent.parent
LUA_DIR = REPO / "lua"

# Lua limit names that the Python mirror spells differently.
PYTHON_LIMIT_NAMES = {"MAX_QUEUES": "MAX_QUEUES_PER_CLAIM", "MAX_ITEMS": "MAX_ITEMS_PER_MODIFY"}

# Local variable names in the bodies that stand for a documented reply field.
FIELD_ALIASES = {
    "owner": "claimant",
    "task_queue": "queue",
    "current": "current_version",
    "size": "num_tasks",
    "available": "num_available",
    "claimed": "num_claimed",
}


# --- Lua lexing ---------------------------------------------------------------------------


def closing(tokens: list[Token], start: int) -> int:
    """Index of the bracket that closes the one at ``start``."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    depth = 0
    for index in range(start, len(tokens)):
        text = tokens[index].text
        if tokens[index].kind != "op":
            continue
        if text in pairs:
            depth += 1
        elif text in pairs.values():
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced {tokens[start].text!r} at line {tokens[start].line}")


def split_top_level(tokens: list[Token]) -> list[list[Token]]:
    """Splits the tokens between a pair of brackets at their top-level commas."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "op" and token.text in "({[":
            depth += 1
        elif token.kind == "op" and token.text in ")}]":
            depth -= 1
        if depth == 0 and token.kind == "op" and token.text == ",":
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in parts if part]


# --- Reply tuples: header text and body table constructors ----------------------------------

Element = tuple[str, str]  # (kind, value): kind "name", "lit" or "any" (an expression)


def header_element(text: str) -> Element:
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return ("lit", text)
    return ("name", text.removesuffix("_ms"))


def body_element(tokens: list[Token]) -> Element:
    texts = [t.text for t in tokens]
    if len(tokens) == 1 and tokens[0].kind == "name":
        return ("name", FIELD_ALIASES.get(texts[0], texts[0]))
    if len(tokens) == 1 and tokens[0].kind == "number":
        return ("lit", texts[0])
    if texts[:1] == ["-"] and len(tokens) == 2 and tokens[1].kind == "number":
        return ("lit", "-" + texts[1])
    if len(tokens) == 3 and texts[1] == "." and tokens[0].kind == tokens[2].kind == "name":
        # task.queue stands for the field queue.
        return ("name", FIELD_ALIASES.get(texts[2], texts[2]))
    return ("any", "")


def matches(header: list[Element], body: list[Element]) -> bool:
    """A body tuple matches a documented one position by position; an expression matches any
    name, a literal matches a name (it is that field's value) or the same literal."""
    if len(header) != len(body):
        return False
    for (header_kind, header_value), (body_kind, body_value) in zip(header, body, strict=True):
        if body_kind == "any":
            continue
        if header_kind == "lit" and (body_kind, body_value) != ("lit", header_value):
            return False
        if header_kind == "name" and body_kind == "name" and body_value != header_value:
            return False
    return True


def table_constructors(tokens: list[Token]) -> Iterator[tuple[int, list[Element]]]:
    """Every positional table constructor ``{a, b, ...}`` (nested ones too) with its line."""
    for index, token in enumerate(tokens):
        if token.kind != "op" or token.text != "{":
            continue
        parts = split_top_level(tokens[index + 1 : closing(tokens, index)])
        keyed = any(
            (len(part) > 1 and part[1].text == "=" and part[0].kind == "name") or part[0].text == "["
            for part in parts
        )
        if parts and not keyed:
            yield token.line, [body_element(part) for part in parts]


def main_chunk_returns(tokens: list[Token]) -> Iterator[tuple[int, list[Token]]]:
    """The expression of every ``return`` of the main chunk (not inside a local function)."""
    blocks: list[str] = []
    loops_awaiting_do = 0
    for index, token in enumerate(tokens):
        if token.kind != "name":
            continue
        word = token.text
        if word == "function":
            blocks.append("function")
        elif word in ("if", "repeat"):
            blocks.append(word)
        elif word in ("for", "while"):
            blocks.append("loop")
            loops_awaiting_do += 1
        elif word == "do":
            if loops_awaiting_do:
                loops_awaiting_do -= 1
            else:
                blocks.append("do")
        elif word in ("end", "until"):
            blocks.pop()
        elif word == "return" and "function" not in blocks:
            following = tokens[index + 1 :]
            if following and following[0].text == "{":
                yield token.line, following[: closing(following, 0) + 1]
            else:
                end = next(
                    (i for i, t in enumerate(following) if t.kind == "name" and t.text in ("end", "else")),
                    len(following),
                )
                yield token.line, following[:end]


# --- Script header ------------------------------------------------------------------------

_ENTRY = re.compile(r"^--\s+(KEYS|ARGV)\[(\d+)(\.\.)?\]\s+(\S.*)$")
_SECTION = re.compile(r"^--\s+(Reply|Errors|Publishes)\b")


@dataclasses.dataclass
class Header:
    first_line: str
    # (KEYS|ARGV, index, is_tail) -> documented name (None: a tail documented in prose)
    entries: dict[tuple[str, int, bool], str | None]
    descriptions: dict[tuple[str, int, bool], str]
    replies: list[list[Element]]  # the top-level reply tuples
    tuples: list[list[Element]]  # every tuple in the Reply section, nested ones included
    errors: set[str]

    @property
    def fixed_argv(self) -> set[int]:
        return {index for kind, index, tail in self.entries if kind == "ARGV" and not tail}

    @property
    def keys(self) -> set[int]:
        return {index for kind, index, _ in self.entries if kind == "KEYS"}

    @property
    def tail_start(self) -> int | None:
        return next((index for kind, index, tail in self.entries if kind == "ARGV" and tail), None)


def header_lines(source: str) -> list[str]:
    lines = []
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def parse_header(source: str) -> Header:
    lines = header_lines(source)
    entries: dict[tuple[str, int, bool], str | None] = {}
    descriptions: dict[tuple[str, int, bool], str] = {}
    sections: dict[str, list[str]] = {}
    current_entry: tuple[str, int, bool] | None = None
    current_section: str | None = None
    for line in lines[1:]:
        entry = _ENTRY.match(line)
        section = _SECTION.match(line)
        if entry:
            kind, index, tail, rest = entry.groups()
            current_entry, current_section = (kind, int(index), bool(tail)), None
            entries[current_entry] = re.split(r"[\s,]+", rest, maxsplit=1)[0]
            descriptions[current_entry] = rest
        elif section:
            current_entry, current_section = None, section.group(1)
            sections.setdefault(current_section, []).append(line[2:].strip())
        elif current_section is not None:
            sections[current_section].append(line[2:].strip())
        elif current_entry is not None and re.match(r"^--\s{3,}\S", line):
            descriptions[current_entry] += " " + line[2:].strip()
        else:
            current_entry = None
    # A tail may also be documented in prose on the last fixed entry ("then exact names (the
    # rest of ARGV)", as queues.lua does) instead of an ARGV[k..] line.
    fixed = sorted(index for kind, index, tail in entries if kind == "ARGV" and not tail)
    has_tail_line = any(tail for _, _, tail in entries)
    if fixed and not has_tail_line and "rest of ARGV" in descriptions[("ARGV", fixed[-1], False)]:
        entries[("ARGV", fixed[-1] + 1, True)] = None
    reply_text = " ".join(sections.get("Reply", []))
    top_level = [m.group(1) for m in re.finditer(r"Reply[^:{]*:\s*(\{[^{}]*\})", reply_text)]
    every = re.findall(r"\{[^{}]*\}", reply_text)
    return Header(
        first_line=lines[0] if lines else "",
        entries=entries,
        descriptions=descriptions,
        replies=[[header_element(e) for e in t[1:-1].split(",")] for t in top_level],
        tuples=[[header_element(e) for e in t[1:-1].split(",")] for t in every],
        errors=set(re.findall(r"EQ_[A-Z]+", " ".join(sections.get("Errors", [])))),
    )


# --- Script body --------------------------------------------------------------------------


@dataclasses.dataclass
class Body:
    keys: set[int]
    fixed_argv: set[int]
    tail_starts: set[int]
    problems: list[str]


def _loop_bounds(tokens: list[Token], before: int, variable: str) -> tuple[list[Token], list[Token]] | None:
    """Start and stop expressions of the nearest ``for <variable> = a, b do`` before a token."""
    for index in range(before, 2, -1):
        if (
            tokens[index - 3].text == "for"
            and tokens[index - 2].text == variable
            and tokens[index - 1].text == "="
        ):
            stop_at = next(i for i in range(index, len(tokens)) if tokens[i].text == "do")
            bounds = split_top_level(tokens[index:stop_at])
            if len(bounds) >= 2:
                return bounds[0], bounds[1]
    return None


def _initial_value(tokens: list[Token], variable: str) -> int | None:
    """The number in ``local <variable> = <number>``, if the body has one."""
    for index in range(len(tokens) - 3):
        if (
            tokens[index].text == "local"
            and tokens[index + 1].text == variable
            and tokens[index + 2].text == "="
            and tokens[index + 3].kind == "number"
        ):
            return int(tokens[index + 3].text)
    return None


def analyse_body(tokens: list[Token]) -> Body:
    body = Body(set(), set(), set(), [])
    for index, token in enumerate(tokens):
        if token.text not in ("KEYS", "ARGV") or index + 1 >= len(tokens) or tokens[index + 1].text != "[":
            continue
        expression = tokens[index + 2 : closing(tokens, index + 1)]
        texts = [t.text for t in expression]
        where = f"{token.text}[{' '.join(texts)}] (line {token.line})"
        if len(expression) == 1 and expression[0].kind == "number":
            (body.keys if token.text == "KEYS" else body.fixed_argv).add(int(texts[0]))
            continue
        if token.text == "KEYS":
            body.problems.append(f"{where}: KEYS must be indexed by a literal")
            continue
        # Dynamic ARGV indexes of the forms v, v + n and n + v.
        kinds = [t.kind for t in expression]
        if kinds == ["name"]:
            variable, offset = texts[0], 0
        elif kinds == ["name", "op", "number"] and texts[1] == "+":
            variable, offset = texts[0], int(texts[2])
        elif kinds == ["number", "op", "name"] and texts[1] == "+":
            variable, offset = texts[2], int(texts[0])
        else:
            body.problems.append(f"{where}: cannot tell which ARGV entries this reads")
            continue
        bounds = _loop_bounds(tokens, index, variable)
        if bounds is not None:
            start, stop = bounds
            if len(start) == 1 and start[0].kind == "name":
                # A loop from a cursor (claim.lua's `position`): the tail from its initial value.
                initial = _initial_value(tokens, start[0].text)
                if initial is None:
                    body.problems.append(f"{where}: loop start is not a number")
                else:
                    body.tail_starts.add(initial + offset)
            elif not start or start[0].kind != "number":
                body.problems.append(f"{where}: loop start is not a number")
            elif len(start) == 1 and len(stop) == 1 and stop[0].kind == "number":
                body.fixed_argv.update(range(int(start[0].text) + offset, int(stop[0].text) + offset + 1))
            else:
                # A loop up to #ARGV or a count: reads the tail from (at least) its start.
                body.tail_starts.add(int(start[0].text) + offset)
            continue
        initial = _initial_value(tokens, variable)
        if initial is None:
            body.problems.append(f"{where}: cannot tell which ARGV entries this reads")
        else:
            # A cursor (modify.lua's `position`) that walks the tail from its initial value.
            body.tail_starts.add(initial + offset)
    return body


def script_constants(tokens: list[Token]) -> dict[str, Token]:
    """``local NAME = <literal>`` for upper-case names: the limits and the record format."""
    found = {}
    for index in range(len(tokens) - 3):
        name = tokens[index + 1]
        if tokens[index].text == "local" and name.text.isupper() and tokens[index + 2].text == "=":
            found[name.text] = tokens[index + 3]
    return found


def key_suffixes(tokens: list[Token], problems: list[str]) -> set[str]:
    """Every ``prefix .. '<suffix>'`` the body builds; any other use of the prefix is a problem."""
    suffixes = set()
    for index, token in enumerate(tokens[:-2]):
        if token.text == "prefix" and tokens[index + 1].text == "..":
            following = tokens[index + 2]
            if following.kind == "string":
                suffixes.add(following.string_value)
            else:
                problems.append(f"line {token.line}: key built from prefix without a literal suffix")
    return suffixes


# --- The checks ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PythonSide:
    """What the Python client mirrors; the scripts and README must agree with it."""

    version: str
    limits: dict[str, int]
    script_names: tuple[str, ...]
    key_suffixes: frozenset[str]


def python_key_suffixes() -> frozenset[str]:
    """Every suffix entroq_redis._keys.Keys builds after the namespace prefix.

    A builder is called with a marker for each of its arguments; its suffix is what comes
    before the first marker, or before the length prefix of a length-prefixed first name
    (``doc("<name>", "<name>")`` builds ``d:6:<name><name>``, whose suffix is ``d:``).
    """
    keys = Keys("ns")
    marker = "<name>"
    suffixes = set()
    for attribute in dir(Keys):
        member = getattr(Keys, attribute)
        if attribute.startswith("_") or attribute == "prefix":
            continue
        if isinstance(member, property):
            built = getattr(keys, attribute)
        elif callable(member):
            # One marker per argument; the suffix ends where the first one (or its length
            # prefix, "<n>:" for a doc namespace) starts.
            arguments = len(inspect.signature(member).parameters) - 1
            built = getattr(keys, attribute)(*[marker] * arguments)
            built = re.sub(rf"(\d+:)?{re.escape(marker)}.*\Z", "", built, flags=re.S)
        else:
            continue
        assert built.startswith(keys.prefix), f"Keys.{attribute} leaves the namespace: {built!r}"
        suffixes.add(built.removeprefix(keys.prefix))
    return frozenset(suffixes)


def python_side() -> PythonSide:
    return PythonSide(
        version=_contract.CONTRACT_VERSION,
        limits={name: value for name, value in vars(_contract).items() if name.startswith("MAX_")},
        script_names=tuple(_contract.SCRIPT_NAMES),
        key_suffixes=python_key_suffixes(),
    )


def check_script(path: pathlib.Path, python: PythonSide) -> list[str]:
    """Header against body, and the body's constants and keys against the Python side."""
    problems: list[str] = []
    source = path.read_text(encoding="utf-8")
    header = parse_header(source)
    tokens = tokenize(source)
    body = analyse_body(tokens)
    problems += body.problems

    expected_first = f"-- entroq-redis contract {python.version}: {path.name}"
    if header.first_line != expected_first:
        problems.append(f"first line is {header.first_line!r}, expected {expected_first!r}")
    version_checks = [
        tokens[i + 5].string_value
        for i in range(len(tokens) - 5)
        if [t.text for t in tokens[i : i + 5]] == ["ARGV", "[", "2", "]", "~="]
    ]
    if version_checks != [python.version]:
        problems.append(f"the body checks ARGV[2] against {version_checks}, expected [{python.version!r}]")

    if body.keys != header.keys:
        problems.append(f"KEYS used {sorted(body.keys)} but documented {sorted(header.keys)}")
    if body.fixed_argv != header.fixed_argv:
        problems.append(
            f"fixed ARGV used {sorted(body.fixed_argv)} but documented {sorted(header.fixed_argv)}"
            f" (undocumented: {sorted(body.fixed_argv - header.fixed_argv)},"
            f" unused: {sorted(header.fixed_argv - body.fixed_argv)})"
        )
    if header.fixed_argv != set(range(1, len(header.fixed_argv) + 1)):
        problems.append(f"documented fixed ARGV {sorted(header.fixed_argv)} are not 1..n")
    tail = header.tail_start
    if body.tail_starts and tail is None:
        problems.append(
            f"the body reads ARGV from {min(body.tail_starts)} on, the header documents no ARGV[k..]"
        )
    elif tail is not None and not body.tail_starts:
        problems.append(f"the header documents ARGV[{tail}..] but the body never reads a variable index")
    elif tail is not None and min(body.tail_starts) != tail:
        problems.append(
            f"the header documents ARGV[{tail}..] but the body reads from {min(body.tail_starts)}"
        )
    if tail is not None and tail != len(header.fixed_argv) + 1:
        problems.append(f"ARGV[{tail}..] does not follow the last fixed ARGV[{len(header.fixed_argv)}]")

    returns = list(main_chunk_returns(tokens))
    replies = [(line, expr) for line, expr in returns if expr and expr[0].text == "{"]
    for line, expr in returns:
        texts = [t.text for t in expr]
        if (
            expr
            and expr[0].text != "{"
            and texts[:3] != ["redis", ".", "error_reply"]
            and texts[:2] != ["bad", "("]
        ):
            problems.append(
                f"line {line}: the main chunk returns {' '.join(texts)!r}, neither a reply nor an error"
            )
    returned = [(line, [body_element(p) for p in split_top_level(expr[1:-1])]) for line, expr in replies]
    if not header.replies:
        problems.append("the header documents no Reply")
    for documented in header.replies:
        if not any(matches(documented, shape) for _, shape in returned):
            problems.append(f"documented reply {documented} is never returned")
    for line, shape in returned:
        if not any(matches(documented, shape) for documented in header.replies):
            problems.append(f"line {line}: returns {shape}, which matches no documented reply")
    constructed = [shape for _, shape in table_constructors(tokens)]
    for documented in header.tuples:
        if not any(matches(documented, shape) for shape in constructed):
            problems.append(f"documented tuple {documented} is never built in this order")

    raised = {
        t.string_value.split(" ")[0] for t in tokens if t.kind == "string" and t.text[1:].startswith("EQ_")
    }
    if raised - header.errors:
        problems.append(f"errors {sorted(raised - header.errors)} are raised but not documented")

    constants = script_constants(tokens)
    for name, token in constants.items():
        if not name.startswith("MAX_"):
            continue
        python_name = PYTHON_LIMIT_NAMES.get(name, name)
        if python_name not in python.limits:
            problems.append(f"{name} = {token.text} has no mirror {python_name} in entroq_redis/_contract.py")
        elif python.limits[python_name] != int(token.text):
            problems.append(
                f"{name} = {token.text} but _contract.{python_name} = {python.limits[python_name]}"
            )

    suffixes = key_suffixes(tokens, problems)
    if suffixes - python.key_suffixes:
        problems.append(f"key suffixes {sorted(suffixes - python.key_suffixes)} are not built by Keys")
    return problems


def readme_section(readme: str, script: str) -> str:
    """The README section (## heading to the next ## heading) whose heading names the script."""
    match = re.search(rf"^## [^\n]*\b{re.escape(script)}\b[^\n]*\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    return match.group(1) if match else ""


def check_readme(lua_dir: pathlib.Path, readme: str, python: PythonSide) -> list[str]:
    """lua/README.md and the script list against the scripts and the Python side."""
    problems: list[str] = []
    scripts = sorted(p.stem for p in lua_dir.glob("*.lua"))
    if scripts != sorted(python.script_names):
        problems.append(f"lua/ holds {scripts}, _contract.SCRIPT_NAMES lists {sorted(python.script_names)}")

    if f"contract {python.version}" not in readme.splitlines()[0]:
        problems.append(f"the README's title does not name contract {python.version}")

    formats: dict[str, set[str]] = {}
    limits: dict[str, int] = {}
    for path in sorted(lua_dir.glob("*.lua")):
        source = path.read_text(encoding="utf-8")
        tokens = tokenize(source)
        section = readme_section(readme, path.name)
        if not section:
            problems.append(f"the README has no section for {path.name}")
            continue

        # The section's KEYS/ARGV table must list what the header lists.
        header = parse_header(source)
        documented: dict[tuple[str, int, bool], str] = {}
        for row in re.finditer(r"^\|\s*`(KEYS|ARGV)\[(\d+)(\.\.)?\]`\s*\|\s*([^|]+?)\s*\|", section, re.M):
            name = re.split(r"[\s,]+", row.group(4).strip("` "), maxsplit=1)[0]
            documented[(row.group(1), int(row.group(2)), bool(row.group(3)))] = name
        if set(documented) != set(header.entries):
            problems.append(
                f"README table for {path.name} lists {sorted(documented)},"
                f" its header {sorted(header.entries)}"
            )
        for entry, name in header.entries.items():
            if name is not None and entry in documented and documented[entry] != name:
                problems.append(
                    f"README names {path.name} {entry} {documented[entry]!r}, its header {name!r}"
                )

        for token in tokens:
            if token.kind == "string" and token.text[1:].startswith("EQ_"):
                code = token.string_value.split(" ")[0]
                if not re.search(rf"^\|\s*`{code}\b", readme, re.M):
                    problems.append(f"{path.name} raises {code}, which the README's error table lacks")
        for suffix in sorted(key_suffixes(tokens, [])):
            if "{ns}:" + suffix not in readme:
                problems.append(
                    f"{path.name} builds keys {{ns}}:{suffix}..., which the README does not document"
                )
        for name, token in script_constants(tokens).items():
            if name.endswith("RECORD_FORMAT"):
                formats.setdefault(name, set()).add(token.string_value)
            elif name.startswith("MAX_"):
                limits[name] = int(token.text)

    # Each record (task, doc, set lock) has one format, the same in every script that reads it.
    if "RECORD_FORMAT" not in formats:
        problems.append("no script declares the task RECORD_FORMAT")
    for name, values in sorted(formats.items()):
        if len(values) != 1:
            problems.append(f"the scripts disagree on {name}: {sorted(values)}")
        for record_format in sorted(values):
            if f"'{record_format}'" not in readme:
                problems.append(f"the README does not give the record format {name} '{record_format}'")

    table = {
        row.group(1): int(row.group(2))
        for row in re.finditer(r"^\|\s*`(MAX_\w+)`\s*\|\s*(\d+)\s*\|", readme, re.M)
    }
    for name, value in sorted(limits.items()):
        if table.get(name) != value:
            problems.append(f"README limits table has {name} = {table.get(name)}, the scripts {value}")
    mirrored = {PYTHON_LIMIT_NAMES.get(name, name) for name in limits}
    for python_name in sorted(set(python.limits) - mirrored):
        problems.append(f"_contract.{python_name} mirrors no MAX_* constant of any script")
    return problems


# --- Tests on the real files ---------------------------------------------------------------


def script_paths() -> list[pathlib.Path]:
    return sorted(LUA_DIR.glob("*.lua"))


@pytest.mark.parametrize("path", script_paths(), ids=lambda p: p.name)
def test_script_header_matches_body(path: pathlib.Path) -> None:
    assert check_script(path, python_side()) == []


def test_readme_and_script_list_match() -> None:
    readme = (LUA_DIR / "README.md").read_text(encoding="utf-8")
    assert check_readme(LUA_DIR, readme, python_side()) == []


def test_parser_sees_what_the_scripts_hold() -> None:
    """Guards the checks themselves: a parser that found nothing would pass everything."""
    claim = parse_header((LUA_DIR / "claim.lua").read_text(encoding="utf-8"))
    assert claim.keys == {1} and claim.fixed_argv == set(range(1, 9)) and claim.tail_start == 9
    assert len(claim.replies) == 3 and claim.errors == {"EQ_BADARG", "EQ_CONTRACT", "EQ_CORRUPT"}
    assert [v for _, v in claim.tuples[1][:6]] == ["queue", "id", "version", "at", "claimant", "value"]
    modify = analyse_body(tokenize((LUA_DIR / "modify.lua").read_text(encoding="utf-8")))
    assert modify.fixed_argv == set(range(1, 14)) and min(modify.tail_starts) == 14 and modify.problems == []
    queues = parse_header((LUA_DIR / "queues.lua").read_text(encoding="utf-8"))
    assert queues.tail_start == 7
    assert python_side().key_suffixes == {
        *("queues", "wake", "t:", "q:", "c:", "h:", "m:"),
        *("dn", "d:", "dk:", "dc:", "ds:"),
    }
    sets = parse_header((LUA_DIR / "claim_doc_sets.lua").read_text(encoding="utf-8"))
    assert sets.fixed_argv == set(range(1, 9)) and sets.tail_start == 9 and len(sets.replies) == 2
    assert [v for _, v in sets.tuples[1][:5]] == ["namespace", "id", "version", "claimant", "at"]


# --- The checks can fail: run them on broken copies ------------------------------------------


def _edit(file: str, old: str, new: str) -> Callable[[pathlib.Path], None]:
    def apply(lua_dir: pathlib.Path) -> None:
        path = lua_dir / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"mutation target {old!r} not found in {file}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return apply


def _add_script(lua_dir: pathlib.Path) -> None:
    shutil.copy2(lua_dir / "tasks.lua", lua_dir / "extra.lua")


BREAKAGES: dict[str, tuple[Callable[[pathlib.Path], None], str]] = {
    "undocumented ARGV": (
        _edit("claim.lua", "-- ARGV[5]  n_finish", "-- ARGx[5]  n_finish"),
        "fixed ARGV",
    ),
    "documented ARGV unused": (_edit("modify.lua", "for i = 1, 8 do", "for i = 1, 7 do"), "unused: [13]"),
    "tail undocumented": (
        _edit("claim.lua", "-- ARGV[9..] finish, queues, slots", "-- queues from 9 on"),
        "no ARGV[k..]",
    ),
    "tail moved": (_edit("tasks.lua", "for i = 8, #ARGV do", "for i = 9, #ARGV do"), "reads from 9"),
    "opaque index": (_edit("tasks.lua", "local queue = ARGV[4]", "local queue = ARGV[#ARGV]"), "cannot tell"),
    "extra KEYS": (
        _edit("queues.lua", "local after = ARGV[5]", "local after = ARGV[5] .. KEYS[2]"),
        "KEYS used",
    ),
    "first line": (_edit("claim.lua", "contract 3: claim.lua", "contract 4: claim.lua"), "first line"),
    "version check": (
        _edit("queues.lua", "if ARGV[2] ~= '3' then", "if ARGV[2] ~= '4' then"),
        "checks ARGV[2]",
    ),
    "limit drifted": (_edit("claim.lua", "MAX_QUEUES = 1000", "MAX_QUEUES = 999"), "MAX_QUEUES = 999"),
    "new key": (_edit("claim.lua", "prefix .. 'c:' .. queue", "prefix .. 'x:' .. queue"), "'x:'"),
    "dynamic key": (_edit("claim.lua", "prefix .. 'c:' .. queue", "prefix .. queue"), "without a literal"),
    "fields swapped": (_edit("tasks.lua", "at, owner, value,", "at, value, owner,"), "never built"),
    "status changed": (_edit("claim.lua", "return {0, -1}", "return {2, -1}"), "matches no documented reply"),
    "reply undocumented": (
        _edit("claim.lua", "Reply (nothing):   {0, wait_ms}", "Nothing:   0"),
        "matches no",
    ),
    "error undocumented": (_edit("claim.lua", "EQ_CORRUPT <message>  (an", "(an"), "EQ_CORRUPT"),
    "script unlisted": (_add_script, "SCRIPT_NAMES"),
    "set triples moved": (
        _edit("claim_doc_sets.lua", "local position = 9", "local position = 10"),
        "reads from 10",
    ),
    "set reference fields swapped": (
        _edit(
            "claim_doc_sets.lua",
            "sets[i] = {namespace, '', version, claimant,",
            "sets[i] = {namespace, '', claimant, version,",
        ),
        "never built",
    ),
    "doc set limit drifted": (
        _edit("claim_doc_sets.lua", "MAX_DOC_SETS = 1000", "MAX_DOC_SETS = 100"),
        "MAX_DOC_SETS = 100",
    ),
    "key claim refusal undocumented": (
        _edit("claim_docs.lua", "Reply (refused):   {0, failures}", "Refused: 0"),
        "matches no documented reply",
    ),
    "doc listing key undocumented": (
        _edit(
            "docs.lua",
            "local index_key = prefix .. 'dk:' .. namespace",
            "local index_key = prefix .. 'dz:' .. namespace",
        ),
        "'dz:'",
    ),
    "namespace stats fields swapped": (
        _edit(
            "namespaces.lua",
            "namespaces[i] = {name, num_docs, claimed}",
            "namespaces[i] = {name, claimed, num_docs}",
        ),
        "never built",
    ),
    "doc limit drifted": (
        _edit("modify.lua", "MAX_DOC_ID_BYTES = 256", "MAX_DOC_ID_BYTES = 255"),
        "MAX_DOC_ID_BYTES = 255",
    ),
    "new doc key": (_edit("modify.lua", "prefix .. 'dc:' ..", "prefix .. 'dx:' .."), "'dx:'"),
    "doc count undocumented": (
        _edit("modify.lua", "-- ARGV[13] n_doc_depends", "-- ARGx[13] n_doc_depends"),
        "undocumented: [13]",
    ),
    "doc failure fields swapped": (
        _edit(
            "modify.lua",
            "{kind, reason, namespace, id, version, current, key}",
            "{kind, reason, id, namespace, version, current, key}",
        ),
        "never built",
    ),
    "doc failure undocumented": (
        _edit("modify.lua", "{0, failures, doc_failures}  each", "{0, failures}  each"),
        "matches no documented reply",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_checks_catch_a_broken_copy(breakage: str, tmp_path: pathlib.Path) -> None:
    mutate, expected = BREAKAGES[breakage]
    lua_dir = tmp_path / "lua"
    shutil.copytree(LUA_DIR, lua_dir)
    mutate(lua_dir)
    python = python_side()
    readme = (lua_dir / "README.md").read_text(encoding="utf-8")
    problems = [p for path in sorted(lua_dir.glob("*.lua")) for p in check_script(path, python)]
    problems += check_readme(lua_dir, readme, python)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("| `MAX_ERR_BYTES` | 1048576 |", "| `MAX_ERR_BYTES` | 1048575 |", "MAX_ERR_BYTES"),
        ("| `ARGV[6]` | n_queues |", "| `ARGV[6]` | queue_count |", "'queue_count'"),
        ("| `ARGV[9]` | n_depends |", "| n_depends |", "README table for modify.lua"),
        ("## 8. queues.lua", "## 8. queue listing", "no section for queues.lua"),
        ("`{ns}:m:<queue>`", "`{ns}:<queue>`", "{ns}:m:"),
        ("'>Bi4i8i8i8i4i4I2c0I2c0I4c0'", "'>Bi4i8i8i8i4i4'", "record format"),
        ("'>Bi4i8i8i8I2c0I2c0I2c0'", "'>Bi4i8i8i8I2c0'", "DOC_RECORD_FORMAT"),
        ("`'>Bi4i4i8I2c0'`", "`'>Bi4i4i8'`", "SET_RECORD_FORMAT"),
        ("| `MAX_DOC_KEY_BYTES` | 1024 |", "| `MAX_DOC_KEY_BYTES` | 1023 |", "MAX_DOC_KEY_BYTES"),
        ("`{ns}:ds:<lp(dns)><key>`", "`{ns}:<lp(dns)><key>`", "{ns}:ds:"),
        ("| `ARGV[13]` | n_doc_depends |", "| n_doc_depends |", "README table for modify.lua"),
        ("| `ARGV[9..]` | sets |", "| `ARGV[9..]` | set_triples |", "'set_triples'"),
        ("## 8e. namespaces.lua", "## 8e. doc namespace stats", "no section for namespaces.lua"),
        ("| `MAX_DOC_SETS` | 1000 |", "| `MAX_DOC_SETS` | 100 |", "MAX_DOC_SETS"),
        ("`EQ_CORRUPT <message>`", "`CORRUPT <message>`", "EQ_CORRUPT"),
    ],
)
def test_checks_catch_a_broken_readme(old: str, new: str, expected: str, tmp_path: pathlib.Path) -> None:
    readme = (LUA_DIR / "README.md").read_text(encoding="utf-8")
    assert old in readme, f"mutation target {old!r} not found in lua/README.md"
    problems = check_readme(LUA_DIR, readme.replace(old, new), python_side())
    assert any(expected in problem for problem in problems), problems


def test_checks_catch_a_python_mirror_that_drifted() -> None:
    real = python_side()
    drifted = dataclasses.replace(
        real,
        limits={**real.limits, "MAX_PAGE": 500, "MAX_UNUSED": 1},
        key_suffixes=real.key_suffixes - {"h:"},
    )
    problems = [p for path in script_paths() for p in check_script(path, drifted)]
    problems += check_readme(LUA_DIR, (LUA_DIR / "README.md").read_text(encoding="utf-8"), drifted)
    assert any("_contract.MAX_PAGE = 500" in p for p in problems), problems
    assert any("MAX_UNUSED mirrors no" in p for p in problems), problems
    assert any("['h:'] are not built by Keys" in p for p in problems), problems


def test_doc_header_bytes_cover_the_longest_fields() -> None:
    """Scripts that read a doc record without its content (GETRANGE 0 .. DOC_HEADER_BYTES - 1)
    must read every field before it whole: the fixed part, then key, secondary key and claimant
    at their longest, each after a 2-byte length."""
    fixed = struct.calcsize(">Biqqq")  # Lua struct ">Bi4i8i8i8": format, version, three times
    longest = fixed + 3 * 2 + 2 * _contract.MAX_DOC_KEY_BYTES + _contract.MAX_CLAIMANT_BYTES
    found = {}
    for path in script_paths():
        token = script_constants(tokenize(path.read_text(encoding="utf-8"))).get("DOC_HEADER_BYTES")
        if token is not None:
            found[path.name] = int(token.text)
    assert found.keys() >= {"docs.lua", "claim_doc_sets.lua"}
    assert set(found.values()) == {longest}, found
