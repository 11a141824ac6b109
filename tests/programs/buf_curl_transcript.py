"""Prints a transcript of `buf curl` calls against the gRPC listener: health, Time, an insert, a claim,
a modify that fails with its dependency details, and a claim that ends at its deadline.

    python tests/programs/buf_curl_transcript.py              # starts its own service (embedded store)
    python tests/programs/buf_curl_transcript.py HOST:PORT    # a running service's gRPC listener

Installs buf from npm first if needed (tests/buf_support.py). Each call is shown as the command line,
then what buf printed (the reply on stdout, an error on stderr) and its exit code (a failed RPC exits
with its gRPC code times 8); of `-v` output only the request's grpc-timeout, the response's status line
and its status trailers. buf prints error details as base64 wire bytes; the decoded ModifyDeps follow
as `#` lines. Exits 1 if a call did not end as the transcript says it should.

The claim's DEADLINE_EXCEEDED ("context deadline exceeded") is buf's own deadline: connect-go sends it
as grpc-timeout and its timer fires a network hop before the service's, so the service sees the stream
reset and records the call as CANCELLED (tests/test_grpc_buf_curl.py checks that it ends the call).
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import re
import secrets
import sys
import tempfile

TESTS = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import grpc_support  # noqa: E402
from buf_support import HEALTH_PROTO, PROTOS, BufCurl, Call, install_buf, version_of  # noqa: E402

QUEUE = "transcript/jobs"
# Of buf's -v output, the lines that show the exchange: the deadline it sent, the response's
# status line, and the status trailers.
SHOWN_VERBOSE = re.compile(r"> \(#1\) Grpc-Timeout|< \(#1\) (HTTP/|Grpc-Status: |Grpc-Message: )")


def story(curl: BufCurl) -> list[str]:
    """Runs the calls; returns what did not go as expected (empty: all did)."""
    problems: list[str] = []

    def expect(call: Call, code: int | None, what: str) -> None:
        if call.grpc_code != code or (code is None and call.returncode != 0):
            problems.append(f"{what}: exit {call.returncode}, expected gRPC code {code}")

    expect(curl("grpc.health.v1.Health/Check"), None, "health")
    expect(curl("api.EntroQ/Time"), None, "time")
    insert = curl(
        "api.EntroQ/Modify",
        json.dumps({"claimantId": "transcript", "inserts": [{"queue": QUEUE, "value": {"job": 1}}]}),
    )
    expect(insert, None, "insert")
    claim = curl(
        "api.EntroQ/Claim",
        json.dumps({"claimantId": "transcript", "queues": [QUEUE], "durationMs": "30000"}),
    )
    expect(claim, None, "claim")
    if problems:
        return problems
    task = claim.reply()["task"]
    # A change at the version before the claim, and a delete of a task that does not exist.
    failing = {
        "claimantId": "transcript",
        "changes": [{"oldId": {"id": task["id"], "version": 0, "queue": QUEUE}, "newData": {"queue": QUEUE}}],
        "deletes": [{"id": "no-such-task", "version": 0, "queue": QUEUE}],
    }
    refused = curl("api.EntroQ/Modify", json.dumps(failing), verbose=True)
    expect(refused, 5, "dependency error")
    expect(
        curl(
            "api.EntroQ/Claim",
            json.dumps({"claimantId": "transcript", "queues": ["transcript/empty"], "durationMs": "30000"}),
            timeout=2,
            verbose=True,
        ),
        4,
        "claim deadline",
    )
    return problems


def decoded(call: Call) -> list[str]:
    """The ModifyDep details of a failed call, one `#` line each."""
    if call.grpc_code is None:
        return []
    pb2 = grpc_support.v1().pb2
    lines = []
    for detail in call.error().get("details", []):
        if detail.get("type") != "api.ModifyDep":
            continue
        dep = pb2.ModifyDep.FromString(base64.b64decode(detail["value"] + "=="))
        lines.append(
            f"# {detail['type']}: type={pb2.ActionType.values_by_number[dep.type].name} id={dep.id.id!r} "
            f"version={dep.id.version} queue={dep.id.queue!r} msg={dep.msg!r}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", help="host:port of a gRPC listener (default: start a service)")
    parser.add_argument("--buf", help="the buf binary (default: install it from npm)")
    parser.add_argument("--namespace", help="EntroQ-Namespace to work in (default: a fresh one)")
    args = parser.parse_args()
    binary = pathlib.Path(args.buf) if args.buf else install_buf()
    namespace = args.namespace or "transcript" + secrets.token_hex(4)
    service = None
    scratch = tempfile.TemporaryDirectory(prefix="entroq-transcript-")
    address = args.address
    if address is None:
        from conftest import start_service

        service = start_service(None, "--data", scratch.name, "--test-any-namespace", "--grpc-port", "free")
        address = service.grpc_url
    try:
        curl = BufCurl(
            binary,
            str(address).removeprefix("grpc://"),
            schemas=(PROTOS / "entroq_v1" / "entroq.proto", HEALTH_PROTO),
            headers=(f"entroq-namespace: {namespace}",),
        )
        problems = story(curl)
    finally:
        if service is not None:
            service.stop()
        scratch.cleanup()
    print(f"# buf {version_of(binary)} (npm @bufbuild/buf), gRPC listener {address}, namespace {namespace}\n")
    for call in curl.transcript:
        print(call.shown(TESTS.parent, SHOWN_VERBOSE))
        for line in decoded(call):
            print(line)
        print()
    for problem in problems:
        print(f"UNEXPECTED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
