"""Every fenced code block of README.md runs, as a reader would paste it.

README.md is read when the tests run (it changes often), and each fenced block is one test:

- a ``python`` block runs as a program of its own (``python -c BLOCK``) and must exit 0;
- a block whose lines start with ``$ `` is a shell transcript: each command runs in bash, in
  a scratch directory, against a real service (the session's ``entroq-redis serve``, reached
  as the command line's default address would be: $ENTROQ_URL, in a namespace of its own),
  and what it prints must be the lines under it, up to what changes from run to run (task
  IDs, timings, column widths, and the order of lines);
- any other block, or one not meant to run, says so with a marker: an HTML comment on the line
  before the fence, ``<!-- readme-test: skip REASON -->``, or a first line ``# readme-test:
  skip REASON`` in the block. A block that is neither run nor marked fails.

A transcript may use ``./double.sh``, the README's example command (it reads a number on stdin
and prints it doubled, or fails with ``not a number: ...`` on stderr): the scratch directory
has it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import ServiceProcess

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
SKIP = re.compile(r"^(?:<!--\s*readme-test:\s*skip\b.*-->|#\s*readme-test:\s*skip\b.*)$")
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)[^\n]*$")
TIMEOUT_S = 120

DOUBLE_SH = """#!/bin/sh
# The README's example command: a number on stdin, printed doubled.
read -r n
case "$n" in
  ''|*[!0-9]*) echo "not a number: $n" >&2; exit 1 ;;
esac
echo $((n * 2))
"""


@dataclasses.dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skipped: bool

    @property
    def kind(self) -> str:
        if self.skipped:
            return "skipped"
        if self.language == "python":
            return "python"
        if self.text.lstrip().startswith("$ "):
            return "transcript"
        return "unmarked"


def fenced_blocks(markdown: str) -> Iterator[Block]:
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening.groups()
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        body = lines[index + 1 : end]
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        skipped = bool(SKIP.match(before)) or bool(body and SKIP.match(body[0].strip()))
        yield Block(index + 1, language.lower(), "\n".join(body) + "\n", skipped)
        index = end + 1


BLOCKS = list(fenced_blocks(README.read_text(encoding="utf-8")))


def block_id(block: Block) -> str:
    return f"README.md:{block.line}:{block.kind}"


def test_the_readme_has_examples_to_run() -> None:
    kinds = {b.kind for b in BLOCKS}
    assert {"python", "transcript"} <= kinds, kinds


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_block(block: Block, http_service: ServiceProcess, namespace: str, tmp_path: pathlib.Path) -> None:
    if block.kind == "skipped":
        pytest.skip("marked readme-test: skip")
    assert block.kind != "unmarked", (
        f"README.md line {block.line}: a ```{block.language} block is neither Python, nor a $ transcript, "
        "nor marked <!-- readme-test: skip REASON -->"
    )
    if block.kind == "python":
        run_python(block, tmp_path)
    else:
        run_transcript(block, http_service, namespace, tmp_path)


def run_python(block: Block, cwd: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"README.md line {block.line}: exit {done.returncode}\n{done.stderr}"


def commands_and_outputs(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines, each with the output lines under it."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
SECONDS = re.compile(r"\b\d+\.\d+s\b")


def comparable(lines: list[str]) -> list[str]:
    """Lines as far as they are the same from run to run: IDs and timings replaced, spaces
    collapsed (column widths follow the IDs), in sorted order (concurrent work)."""
    normal = [" ".join(SECONDS.sub("<T>s", UUID.sub("<ID>", line)).split()) for line in lines]
    return sorted(line for line in normal if line)


def run_transcript(block: Block, service: ServiceProcess, namespace: str, cwd: pathlib.Path) -> None:
    script = cwd / "double.sh"
    script.write_text(DOUBLE_SH)
    script.chmod(0o755)
    env = _clean_env(ENTROQ_URL=service.url, ENTROQ_NAMESPACE=namespace)
    # entroq-redis as installed next to this Python.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for command, expected in commands_and_outputs(block.text):
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        where = f"README.md line {block.line}: $ {command}"
        assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert comparable(done.stdout.splitlines()) == comparable(expected), f"{where}\n{done.stdout}"


def _clean_env(**extra: str) -> dict[str, str]:
    """The reader's environment: no ENTROQ_* settings of the test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    return {**env, **extra}
