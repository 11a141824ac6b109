"""Every code block of README.md and docs/**/*.md runs, or is checked, or says why not.

The documents are read when the tests run (they change often), and every code block in them,
fenced or indented (found as a CommonMark renderer finds them), is one test:

- a ``python`` block runs as a program of its own (``python -c BLOCK``) and must exit 0;
- a block whose lines start with ``$ `` is a shell transcript: each command runs in bash, in
  a scratch directory, against a real service (the session's ``entroq-redis serve``, reached
  as the command line's default address would be: $ENTROQ_URL, in a namespace of its own),
  and what it prints must be the lines under it, up to what changes from run to run (task
  IDs, timings, column widths, and the order of lines);
- any other block says what is done with it by a marker: an HTML comment on the line before
  it, ``<!-- readme-test: KIND ... -->``, or (fenced blocks) a first line ``# readme-test:
  KIND ...``. KIND is one of:

  ``skip REASON``      not run; REASON (required) says why and what covers it instead;
  ``serve-starts``     the install line: its last command (``entroq-redis serve``) is run as
                       written, in a scratch directory, on free ports, and must listen with its
                       data in ./entroq-data (the venv and install steps are .ci/run's own);
  ``ci-command``       the test command: .ci/run extracts it from the README and runs it, so the
                       test checks .ci/run's extraction finds exactly this block's command;
  ``serve-options``    a synopsis of ``serve``: every ``--option`` it names must be in
                       ``entroq-redis serve --help``, and every value it shows that is not a
                       placeholder (``[--port 9100]``, not ``[--data DIR]``) the default the help
                       states;
  ``paths``            a layout tree: every file and directory it names must exist;
  ``buf-curl``         a ``buf curl`` command: run as written against a real service's gRPC
                       port (buf from tests/buf_support.py), which must answer with a claimed task;
  ``authz-rego``       a ``$ curl`` transcript against a service started with the example policy
                       (``--authz rego``, deploy/authz/); its output is an excerpt: HTTP header
                       lines may be left out, ``...`` stands for any text, an indented line
                       continues the line above it;
  ``authz-requests``   lines ``WHO METHOD PATH [(NOTE)] -> STATUS MESSAGE`` sent in order to such
                       a service: WHO's example token (``nobody``: an unknown one; NOTE ``the bad
                       JWT``: WHO's JWT, correctly signed, with ``exp`` a string), a queue written
                       as is in PATH, NOTE ``insert QUEUE`` a modify's body; each answer's status
                       and message must be the line's.

  A block that is neither run nor marked fails.

A transcript may use ``./double.sh``, the README's example command (it reads a number on stdin
and prints it doubled, or fails with ``not a number: ...`` on stderr): the scratch directory
has it. In transcripts and commands, the README's ``localhost:9100`` and ``127.0.0.1:37706``
(the default ports, which other processes on a test machine may hold) become the test
service's addresses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import trio
from authz_support import ALICE, BOB, JWT_AUDIENCE, JWT_ISSUER, REGO_FLAGS, b64, signed_jwt
from buf_support import install_buf
from conftest import ServiceProcess, start_service
from markdown_it import MarkdownIt

import entroq_redis
from entroq_redis.cli._options import CLAIMANT_SUFFIX, default_claimant

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^(?:<!--\s*readme-test:\s*(?P<html>.*?)\s*-->|#\s*readme-test:\s*(?P<hash>.*?))$")
CHECKS = (
    "skip",
    "serve-starts",
    "ci-command",
    "serve-options",
    "paths",
    "buf-curl",
    "authz-rego",
    "authz-requests",
)
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
    document: str  # relative to the repository
    line: int  # of the block's first line (its opening fence), 1-based
    language: str
    text: str
    marker: str  # the readme-test marker's text ("" when none)

    @property
    def kind(self) -> str:
        if self.marker:
            return self.marker.split()[0]
        if self.language == "python":
            return "python"
        if self.text.lstrip().startswith("$ "):
            return "transcript"
        return "unmarked"

    @property
    def where(self) -> str:
        return f"{self.document} line {self.line}"


def code_blocks(document: str, source: str) -> Iterator[Block]:
    """The fenced and indented code blocks of a Markdown text, with their markers."""
    lines = source.splitlines()
    for token in MarkdownIt("commonmark").parse(source):
        if token.type not in ("fence", "code_block") or token.map is None:
            continue
        start = token.map[0]
        before = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        first = token.content.splitlines()[0].strip() if token.content.strip() else ""
        marker = ""
        for candidate in (before, first if token.type == "fence" else ""):
            found = MARKER.match(candidate)
            if found:
                marker = found.group("html") or found.group("hash") or ""
        text = token.content
        if marker and token.type == "fence" and MARKER.match(first):
            text = text.split("\n", 1)[1] if "\n" in text else ""
        language = token.info.split()[0].lower() if token.info.strip() else ""
        yield Block(document, start + 1, language, text, marker)


BLOCKS = [
    block
    for path in DOCUMENTS
    for block in code_blocks(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
]


def block_id(block: Block) -> str:
    return f"{block.document}:{block.line}:{block.kind}"


def test_the_documents_have_examples_to_run() -> None:
    assert "python" in {b.kind for b in BLOCKS if b.document == "README.md"}
    kinds = {b.kind for b in BLOCKS}
    assert {"python", "transcript", "authz-rego", "authz-requests", "buf-curl", "paths"} <= kinds, kinds


def test_indented_blocks_are_found() -> None:
    """The README's install lines are indented blocks (.ci/run greps them as they are): the
    parser must see them, or an indented example elsewhere would go unchecked."""
    first_two = [b for b in BLOCKS if b.document == "README.md"][:2]
    assert [b.kind for b in first_two] == ["serve-starts", "ci-command"], first_two
    assert all(b.language == "" and b.text.startswith("python3 -m venv") for b in first_two)


def test_the_docs_are_read() -> None:
    assert any(b.document == "docs/eqc.md" and b.kind == "transcript" for b in BLOCKS)
    # docs/ has subfolders (docs/operations/): their pages are read too.
    assert any(b.document.startswith("docs/operations/") for b in BLOCKS)


def test_every_kind_of_block_is_classified() -> None:
    """What a reader sees as code is found, indented or fenced, and an unmarked one is caught."""
    sample = (
        "Text.\n\n    some --command\n\n"
        "<!-- readme-test: skip a reason -->\n\n    skipped\n\n"
        "```\n# readme-test: paths\nserver/\n```\n\n"
        "- a list item\n\n  ```sh\n  $ entroq-redis qs\n  ```\n\n"
        "~~~toml\nkey = 1\n~~~\n"
    )
    found = [(b.line, b.kind, b.text) for b in code_blocks("sample.md", sample)]
    assert found == [
        (3, "unmarked", "some --command\n"),
        (7, "skip", "skipped\n"),
        (9, "paths", "server/\n"),
        (16, "transcript", "$ entroq-redis qs\n"),
        (20, "unmarked", "key = 1\n"),
    ], found


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_block(block: Block, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> None:
    kind = block.kind
    assert kind != "unmarked", (
        f"{block.where}: a code block ({block.language or 'no language'}) is neither Python, nor a $ "
        "transcript, nor marked <!-- readme-test: KIND ... --> (see tests/test_readme_examples.py)"
    )
    assert kind in ("python", "transcript", *CHECKS), f"{block.where}: unknown readme-test kind {kind!r}"
    if kind == "skip":
        reason = block.marker.removeprefix("skip").strip()
        assert reason, f"{block.where}: readme-test: skip needs a reason"
        pytest.skip(f"{block.where}: {reason}")
    if kind == "python":
        run_python(block, tmp_path)
    elif kind == "transcript":
        service = request.getfixturevalue("http_service")
        run_transcript(block, service, request.getfixturevalue("namespace"), tmp_path)
    elif kind == "serve-starts":
        check_serve_starts(block, tmp_path)
    elif kind == "ci-command":
        check_ci_command(block)
    elif kind == "serve-options":
        check_serve_options(block)
    elif kind == "paths":
        check_paths(block)
    elif kind == "buf-curl":
        run_buf_curl(block, request.getfixturevalue("store_url"), request.getfixturevalue("namespace"))
    elif kind == "authz-requests":
        send_authz_requests(block, request.getfixturevalue("store_url"), request.getfixturevalue("namespace"))
    else:
        run_authz_transcript(
            block, request.getfixturevalue("store_url"), request.getfixturevalue("namespace")
        )


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
    assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stderr}"


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
MILLIS = re.compile(r'"\d{13}"')  # a time in ms since the epoch, as proto3 JSON writes an int64
TIMESTAMP = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\b")
# The command line's default claimant names the user and the machine; the documents write it so.
CLAIMANT = (default_claimant(), "USER@HOST" + CLAIMANT_SUFFIX)


def comparable(lines: list[str]) -> list[str]:
    """Lines as far as they are the same from run to run: IDs, times and timings replaced, the
    default claimant written as the documents write it, spaces collapsed (column widths follow
    the IDs), in sorted order (concurrent work)."""
    normal = [
        " ".join(
            TIMESTAMP.sub("<TIME>", SECONDS.sub("<T>s", UUID.sub("<ID>", line.replace(*CLAIMANT)))).split()
        )
        for line in lines
    ]
    return sorted(line for line in normal if line)


def _bash(command: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def run_transcript(block: Block, service: ServiceProcess, namespace: str, cwd: pathlib.Path) -> None:
    script = cwd / "double.sh"
    script.write_text(DOUBLE_SH)
    script.chmod(0o755)
    env = _clean_env(ENTROQ_URL=service.url, ENTROQ_NAMESPACE=namespace)
    for command, expected in commands_and_outputs(block.text):
        done = _bash(command, cwd, env)
        where = f"{block.where}: $ {command}"
        assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert comparable(done.stdout.splitlines()) == comparable(expected), f"{where}\n{done.stdout}"


def check_serve_starts(block: Block, cwd: pathlib.Path) -> None:
    """The last command of the install line, as written, starts the service with its embedded
    store and its data in ./entroq-data (ports from the environment: any free one)."""
    command = block.text.strip().rsplit("&&", 1)[-1].strip()
    assert command == "entroq-redis serve", f"{block.where}: the line no longer ends in `entroq-redis serve`"
    env = _clean_env(ENTROQ_PORT="0", ENTROQ_REDIS_GRPC_PORT="0")
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + 60
    seen: list[str] = []
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = process.stdout.readline() if ready else ""
            seen.append(line)
            if "listening on http://" in line:
                break
            if not line and process.poll() is not None:
                raise AssertionError(
                    f"{block.where}: `{command}` exited {process.returncode}: {process.stderr.read()}"
                )
        else:
            raise AssertionError(f"{block.where}: `{command}` did not listen within 60 s: {seen}")
        assert (cwd / "entroq-data").is_dir(), f"{block.where}: no ./entroq-data after `{command}`"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        process.stdout.close()
        process.stderr.close()
    assert code == 0, f"{block.where}: `{command}` exited {code} on SIGTERM"


def check_ci_command(block: Block) -> None:
    """.ci/run takes the test command from the README with grep and sed: run exactly its line
    and compare with this block's command."""
    (assignment,) = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("test_command=")
    ]
    extracted = _bash(f'{assignment}; printf %s "$test_command"', ROOT, _clean_env()).stdout
    expected = block.text.strip().split("pip install '.[test]' && ", 1)[-1]
    assert extracted == expected, (
        f"{block.where}: .ci/run would run {extracted!r}, the README says {expected!r}"
    )
    assert "pytest" in extracted.split(), extracted


def check_serve_options(block: Block) -> None:
    shown = _bash("entroq-redis serve --help", ROOT, _clean_env())
    assert shown.returncode == 0, shown.stderr
    known = set(re.findall(r"--[a-z][a-z0-9-]*", shown.stdout))
    named = set(re.findall(r"--[a-z][a-z0-9-]*", block.text))
    assert named, f"{block.where}: a serve synopsis with no options"
    assert named <= known, f"{block.where}: not options of serve: {sorted(named - known)}"
    # `[--port 9100]`: a value that is not a placeholder (FILE, N...) is the default the help states.
    wrong = [
        f"{option} {value}"
        for option, value in re.findall(r"\[(--[a-z0-9-]+) ([^\]\s|]+)", block.text)
        if not value.isupper()
        and not re.search(
            rf"default {re.escape(value)}\b|\b{re.escape(value)} \(default\b", _help_of(option, shown.stdout)
        )
    ]
    assert not wrong, f"{block.where}: defaults serve --help does not state: {wrong}"


def _help_of(option: str, usage: str) -> str:
    """The paragraph of ``--help`` output that describes ``option``, on one line."""
    paragraph: list[str] = []
    for line in usage.splitlines():
        if re.match(rf"^  (?:-\w, )?{re.escape(option)}(?=[\s,]|$)", line):
            paragraph = [line]
        elif paragraph and (line.startswith("  -") or not line.strip()):
            break
        elif paragraph:
            paragraph.append(line)
    return " ".join(" ".join(paragraph).split())


TREE_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[\w.]+/?)(?:\s{2,}(?P<about>.*))?$")
NAMED_PATH = re.compile(r"^(?:\w+\.py|\w+/)$")


def check_paths(block: Block) -> None:
    """A tree: a root line (``server/``), its entries two spaces in (each with a description,
    continued on deeper-indented lines). Every entry must exist, and every ``name.py`` or
    ``name/`` its description names, inside the entry when it is a directory, else beside it."""
    lines = [line for line in block.text.splitlines() if line.strip()]
    root = ROOT / lines[0].strip()
    assert root.is_dir(), f"{block.where}: {lines[0].strip()} does not exist"
    missing: list[str] = []
    checked = 0
    entry = root
    for line in lines[1:]:
        found = TREE_ENTRY.match(line)
        if found and len(found.group("indent")) == 2:
            entry = root / found.group("name")
            about = found.group("about") or ""
            checked += 1
            if not entry.exists():
                missing.append(str(entry.relative_to(ROOT)))
        else:
            about = line
        base = entry if entry.is_dir() else entry.parent
        for word in re.split(r"[\s,;:()`]+", about):
            if NAMED_PATH.match(word):
                checked += 1
                if not (base / word).exists():
                    missing.append(str((base / word).relative_to(ROOT)))
    assert checked > len(lines) - 1, f"{block.where}: the tree names too few paths to be checked ({checked})"
    assert not missing, f"{block.where}: named but missing: {missing}"


def run_buf_curl(block: Block, store_url: str, namespace: str) -> None:
    buf = install_buf()
    service = start_service(store_url, "--namespace", namespace)
    try:
        assert service.grpc_url is not None
        command = block.text.replace("127.0.0.1:37706", service.grpc_url.removeprefix("grpc://"))
        assert command != block.text, f"{block.where}: the command no longer calls 127.0.0.1:37706"
        assert shlex.split(command)[:2] == ["buf", "curl"], f"{block.where}: not a buf curl command"
        _insert(store_url, namespace, "jobs")
        env = _clean_env()
        env["PATH"] = str(buf.parent) + os.pathsep + env["PATH"]
        done = _bash(command, ROOT, env)
    finally:
        service.stop()
    assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert '"queue": "jobs"' in done.stdout and '"claimantId": "me"' in done.stdout, done.stdout


def _insert(store_url: str, namespace: str, queue: str) -> None:
    """One task in ``queue``, put straight on the store."""

    async def insert() -> None:
        async with entroq_redis.connect(store_url, namespace=namespace) as eq:
            await eq.modify([entroq_redis.TaskData(queue=queue, value=b"readme")])

    trio.run(insert)


def run_authz_transcript(block: Block, store_url: str, namespace: str) -> None:
    service = start_service(store_url, "--namespace", namespace, "--grpc-port", "0", *REGO_FLAGS)
    address = service.url.removeprefix("http://").rstrip("/")
    try:
        for command, expected in commands_and_outputs(block.text):
            assert "localhost:9100" in command, f"{block.where}: $ {command} does not call localhost:9100"
            done = _bash(command.replace("localhost:9100", address), ROOT, _clean_env())
            where = f"{block.where}: $ {command}"
            assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            problem = excerpt_mismatch(expected, done.stdout)
            assert problem is None, f"{where}\n{problem}\n--- printed:\n{done.stdout}"
    finally:
        service.stop()


REQUEST = re.compile(
    r"^(?P<who>\w+)\s+(?P<method>GET|POST)\s+(?P<path>/\S*)\s*(?:\((?P<note>[^)]*)\))?\s*->\s*"
    r"(?P<status>\d{3})\s+(?P<message>.*)$"
)
TASKS_PATH = re.compile(r"^/api/v0/queues/(?P<queue>.+)/tasks$")
TOKENS = {"alice": ALICE, "bob": BOB, "nobody": "nobody"}


def send_authz_requests(block: Block, store_url: str, namespace: str) -> None:
    """Each line a request to a service with the example policy, in order; its answer's status
    and message as the line says. Alice's and bob's queues hold a task each."""
    lines = [line for line in block.text.splitlines() if line.strip()]
    requests = [REQUEST.match(line) for line in lines]
    assert requests and all(requests), f"{block.where}: not WHO METHOD PATH -> STATUS MESSAGE: {lines}"
    for queue in ("/alice/jobs", "/bob/secret"):
        _insert(store_url, namespace, queue)
    service = start_service(store_url, "--namespace", namespace, "--grpc-port", "0", *REGO_FLAGS)
    try:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for line, found in zip(lines, requests, strict=True):
                assert found is not None
                note = found.group("note") or ""
                token = TOKENS[found.group("who")]
                if note == "the bad JWT":
                    claims = {"sub": found.group("who"), "iss": JWT_ISSUER, "aud": JWT_AUDIENCE}
                    token = signed_jwt(json.dumps({**claims, "exp": str(int(time.time()) + 3600)}))
                path = found.group("path")
                named = TASKS_PATH.match(path)
                if named:
                    path = f"/api/v0/queues/{quote(named.group('queue'), safe='')}/tasks"
                body = None
                if note.startswith("insert "):
                    body = {"inserts": [{"queue": note.removeprefix("insert "), "value": b64("readme")}]}
                answer = http.request(
                    found.group("method"), path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
                got = f"{answer.status_code} {answer.json().get('message')}"
                want = f"{found.group('status')} {found.group('message')}"
                assert got == want, f"{block.where}: {line}\nanswered {got}: {answer.text}"
    finally:
        service.stop()


HEADER = re.compile(r"^[A-Za-z0-9-]+: ")


def excerpt_mismatch(expected: list[str], printed: str) -> str | None:
    """Why ``printed`` is not what the excerpt ``expected`` shows (None: it is)."""
    wanted: list[str] = []
    for line in expected:
        if line[:1].isspace() and wanted:
            wanted[-1] += line.strip()
        elif line.strip():
            wanted.append(line.strip())
    got = [line.strip() for line in printed.splitlines() if line.strip()]
    status = bool(got) and got[0].startswith("HTTP/")
    index = 0
    for position, line in enumerate(got):
        in_headers = status and position > 0 and HEADER.match(line) and not line.startswith("{")
        pattern = wanted[index] if index < len(wanted) else None
        if pattern is not None and _matches(pattern, line):
            index += 1
        elif not in_headers:
            return f"printed {line!r}, the document shows {pattern!r}"
    if index < len(wanted):
        return f"not printed: {wanted[index:]}"
    return None


def _matches(pattern: str, line: str) -> bool:
    """``...`` stands for any text; an HTTP status line may go on with a reason phrase; IDs and
    times in ms may differ."""

    def normal(text: str) -> str:
        return MILLIS.sub('"<MS>"', UUID.sub("<ID>", text))

    regex = ".*".join(re.escape(part) for part in normal(pattern).split("..."))
    if pattern.startswith("HTTP/"):
        regex += r"(?: .*)?"
    return re.fullmatch(regex, normal(line)) is not None


def _clean_env(**extra: str) -> dict[str, str]:
    """The reader's environment: no ENTROQ_* settings of the test session, and entroq-redis as
    installed next to this Python first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return {**env, **extra}
