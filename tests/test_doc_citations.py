"""Every citation of a document resolves inside the repository.

Comments, docstrings, Lua headers and the docs cite the design and the reference notes by
section, in one form: a path from the repository root, then the section number, e.g.
``docs/design.md 2.5``, ``docs/reference/entroq-protocol.md 3.2``, ``lua/README.md section 6``
(several numbers: ``2.6 and 2.7``, ``1.3, 1.4``, ``1.1-1.7``). Each must name a file that exists
and, for each number, a heading of that file that starts with it (``### 2.5 Claim waits ...``).
A Markdown link that is not an absolute URL must name a file that exists and, with an anchor, a
heading of it (slugs as MkDocs' ``toc`` extension makes them). The forms that pointed outside the
repository (a bare "design 2.5", "reference 3.2" or "issue 7", ``../shared/...``) must be gone.

The tree is walked rather than asked of git, so this runs in any copy of the source.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import unicodedata

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
THIS = pathlib.Path(__file__).resolve()
# Its nav names pages relative to docs/, as MkDocs requires; tests/test_docs_site.py's strict
# build fails on any entry without its page.
MKDOCS_CONFIG = ROOT / "mkdocs.yml"

# Directories that hold no source of ours: tool caches, virtualenvs, built sites, data.
SKIPPED_DIRS = {
    ".git",
    ".hypothesis",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".schemathesis",
    "__pycache__",
    "build",
    "dist",
    "entroq-data",
    "node_modules",
    "site",
}
# Text we wrote; binary files (screenshots) and recorded data are left out by their suffix.
TEXT_SUFFIXES = {
    ".cfg",
    ".css",
    ".html",
    ".ini",
    ".js",
    ".json",
    ".lua",
    ".md",
    ".mjs",
    ".proto",
    ".py",
    ".rego",
    ".sh",
    ".toml",
    ".tpl",
    ".ts",
    ".txt",
    ".yaml",
    ".yml",
}
TEXT_NAMES = {"Dockerfile", "run"}

# A section number: 2, 2.5, 5a, or an appendix-style A.2.
NUM = r"(?:[0-9]+[a-z]?(?:\.[0-9]+)*|[A-C]\.[0-9]+)"
CITATION = re.compile(
    rf"`?(?P<path>(?:docs|lua)/[\w./-]*\.md)`?,? (?:section |§ ?)?"
    rf"(?P<numbers>{NUM}(?:(?:, | and |-|/){NUM})*)(?![\w.]*\w)"
)
DOC_PATH = re.compile(r"(?<![\w/.-])(?:docs|lua)/[\w./-]*\.md")
NUMBERED_HEADING = re.compile(rf"^#{{1,6}}\s+(?:Appendix\s+)?(?P<number>{NUM})[.:]?(?:\s|$)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"(?P<id>[^\"]+)\"")
LINK = re.compile(r"!?\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
SELF_SECTION = re.compile(r"§ ?(?P<number>[0-9]+(?:\.[0-9]+)*|[A-C]\.[0-9]+)")
REFERENCE_PAGES = r"(?:entroq-protocol|entroq-v1-grpc-and-docs|entroq-client-generations|reliability-battery)"

# The old forms, each with what replaces it.
FORBIDDEN = [
    (re.compile(r"\.\./shared"), "a path outside the repository: cite docs/... instead"),
    (re.compile(r"(?<![\w/.-])shared/(?:design|reference)"), "the shared notes now live in docs/"),
    (re.compile(r"\b[Dd]esign,? (?:section |§ ?)?[0-9]"), "cite docs/design.md N"),
    (re.compile(r"\b[Rr]eference,? (?:section |§ ?)?[0-9]"), "cite docs/reference/PAGE.md N"),
    (re.compile(r"\b[Ii]ssue #?[0-9]"), "an issue number: cite the docs section that states it"),
    (re.compile(r"\bdocs-spec\b"), "cite the docs section that states it"),
    (
        re.compile(rf"(?<![\w/.-])(?:reference/)?{REFERENCE_PAGES}\.md"),
        "name a reference page by its path, docs/reference/PAGE.md",
    ),
    (re.compile(r"(?<![\w/.-])README(?:\.md)?,? section [0-9]"), "cite lua/README.md section N"),
]


@dataclasses.dataclass(frozen=True)
class Problem:
    where: str
    what: str


def source_files() -> list[pathlib.Path]:
    found: list[pathlib.Path] = []
    for directory, dirs, files in os.walk(ROOT):
        here = pathlib.Path(directory)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_DIRS
            and not d.endswith(".egg-info")
            and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            path = here / name
            if path not in (THIS, MKDOCS_CONFIG) and (path.suffix in TEXT_SUFFIXES or name in TEXT_NAMES):
                found.append(path)
    return found


def relative(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines of a Markdown file outside fenced code blocks, numbered from 1."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = re.match(r"^\s*(```+|~~~+)", line)
        if opening and (fence is None or opening.group(1).startswith(fence)):
            fence = None if fence else opening.group(1)[:3]
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def slugify(text: str) -> str:
    """A heading's anchor as Python-Markdown's toc makes it (MkDocs' default)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


@functools.cache
def headings(path: pathlib.Path) -> tuple[frozenset[str], frozenset[str]]:
    """(section numbers, anchors) of a Markdown file's headings (and its ``<a id="...">``)."""
    numbers: set[str] = set()
    anchors: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        numbered = NUMBERED_HEADING.match(line)
        if numbered:
            numbers.add(numbered.group("number"))
        heading = HEADING.match(line)
        if heading:
            slug = base = slugify(heading.group("text"))
            count = 0
            while slug in anchors:
                count += 1
                slug = f"{base}_{count}"
            anchors.add(slug)
        anchors.update(HTML_ANCHOR.findall(line))
    return frozenset(numbers), frozenset(anchors)


def foreign(line: str, start: int) -> bool:
    """Whether the path at ``start`` is another repository's: "redis/redis-doc docs/x.md", or in
    a code span that starts with the repository's name, "`redis-doc docs/x.md`"."""
    return re.search(r"(?:[\w.-]+/[\w.-]+|`[\w.-]+) $", line[:start]) is not None


def check_citations(where: str, line: str) -> list[Problem]:
    problems: list[Problem] = []
    for path in DOC_PATH.finditer(line):
        if not foreign(line, path.start()) and not (ROOT / path.group(0)).is_file():
            problems.append(Problem(where, f"{path.group(0)} does not exist"))
    for cited in CITATION.finditer(line):
        target = ROOT / cited.group("path")
        if foreign(line, cited.start()) or not target.is_file():
            continue
        numbers, _ = headings(target)
        for number in re.split(r", | and |-|/", cited.group("numbers")):
            if number not in numbers:
                problems.append(Problem(where, f"{cited.group('path')} has no section {number}"))
    return problems


def check_links(path: pathlib.Path, where: str, line: str) -> list[Problem]:
    problems: list[Problem] = []
    for link in LINK.finditer(line):
        target = link.group("target")
        if re.match(r"^(?:https://|mailto:)", target):
            continue
        if re.match(r"^[a-z]+:", target):
            problems.append(Problem(where, f"{target}: a link out of the repository must be https"))
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in linked.parents and linked != ROOT:
            problems.append(Problem(where, f"{target} points outside the repository"))
        elif not linked.exists():
            problems.append(Problem(where, f"{target}: {relative(linked)} does not exist"))
        elif anchor and linked.suffix == ".md" and anchor not in headings(linked)[1]:
            problems.append(Problem(where, f"{target}: no heading {relative(linked)}#{anchor}"))
    return problems


def check_file(path: pathlib.Path) -> list[Problem]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    markdown = path.suffix == ".md"
    in_docs = relative(path).startswith("docs/")
    lines = prose_lines(text) if markdown else list(enumerate(text.splitlines(), 1))
    own_numbers = headings(path)[0] if in_docs else frozenset()
    problems: list[Problem] = []
    for number, line in lines:
        where = f"{relative(path)}:{number}"
        if markdown:
            problems += check_links(path, where, line)
            # A link's target is checked above; what remains must cite by path or be unambiguous.
            line = LINK.sub(" ", line)
        problems += check_citations(where, line)
        prose = CITATION.sub(" ", line)
        for pattern, instead in FORBIDDEN:
            found = pattern.search(prose)
            if found:
                problems.append(Problem(where, f"{found.group(0)!r}: {instead}"))
        if in_docs:
            # Inside a docs page, a bare "§N" is a section of the page itself.
            for section in SELF_SECTION.finditer(prose):
                if section.group("number") not in own_numbers:
                    problems.append(Problem(where, f"§{section.group('number')}: no such section here"))
    return problems


def test_every_citation_resolves() -> None:
    problems = [problem for path in source_files() for problem in check_file(path)]
    assert not problems, "\n".join(f"{p.where}: {p.what}" for p in problems)


def test_the_walk_sees_the_tree() -> None:
    """The scan reads the sources that carry citations (so a passing scan is not an empty one)."""
    seen = {relative(path) for path in source_files()}
    assert {"docs/design.md", "lua/README.md", "lua/modify.lua", "entroq_redis/_wake.py"} <= seen
    assert not any(part in SKIPPED_DIRS for path in seen for part in pathlib.PurePosixPath(path).parts)


def test_the_design_numbers_its_sections() -> None:
    numbers, _ = headings(ROOT / "docs" / "design.md")
    assert {"1", "2", "2.1", "2.5", "2.15", "5", "6"} <= numbers


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("# Claims are woken (design 2.5).", "cite docs/design.md N"),
        ("see ../shared/design.md", "outside the repository"),
        ('"""Blocking claims (reference 3.2)."""', "docs/reference/PAGE.md N"),
        ("-- the authorizer (issue 7)", "an issue number"),
        ("# docs/design.md 2.99 says so", "has no section 2.99"),
        ("# docs/design.md 2.5 and 9.9", "has no section 9.9"),
        ("# docs/nowhere.md 1", "does not exist"),
        ("# see docs/reference/nowhere.md", "does not exist"),
        ("# reliability-battery.md 1.3", "by its path"),
        ("// README section 4: bulk strings", "lua/README.md section N"),
    ],
)
def test_the_checks_catch(line: str, complaint: str) -> None:
    problems = check_citations("x", line) + [
        Problem("x", f"{found.group(0)!r}: {instead}")
        for pattern, instead in FORBIDDEN
        if (found := pattern.search(CITATION.sub(" ", line)))
    ]
    assert any(complaint in p.what for p in problems), problems


@pytest.mark.parametrize(
    "line",
    [
        "# Claims are woken (docs/design.md 2.5).",
        "(docs/reference/entroq-protocol.md 2.4, docs/design.md 2.6 and 2.7)",
        "(docs/reference/entroq-protocol.md 1.1-1.7)",
        "(docs/reference/reliability-battery.md 1.3, 1.4; docs/design.md 2.8)",
        "-- (lua/README.md section 6, *Why no stale version commits*)",
        "(docs/reference/entroq-client-generations.md A.2, C.2, 5.1)",
        "(`redis/redis-doc docs/management/persistence.md`)",
    ],
)
def test_the_checks_pass(line: str) -> None:
    prose = CITATION.sub(" ", line)
    assert check_citations("x", line) == []
    assert [p.pattern for p, _ in FORBIDDEN if p.search(prose)] == []


def test_links_are_checked() -> None:
    page = ROOT / "docs" / "design.md"
    assert check_links(page, "x", "[ok](reference/entroq-protocol.md#17-requestresponse-messages)") == []
    assert check_links(page, "x", "[ok](#25-claim-waits-without-polling)") == []
    assert check_links(page, "x", "[web](https://example.org/a)") == []
    assert check_links(ROOT / "lua" / "README.md", "x", "[5 claim.lua](#claimlua)") == []  # an <a id>
    assert check_links(page, "x", "[bad](reference/entroq-protocol.md#no-such-heading)")
    assert check_links(page, "x", "[bad](../../shared/design.md)")
    assert check_links(page, "x", "[bad](http://example.org/a)")
