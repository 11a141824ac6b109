"""``--authz rego``: the policy evaluated in-process by regopy (rego-cpp), no OPA sidecar.

The policy files and the data are loaded and compiled once at startup; a policy that does
not compile, or that does not give a boolean ``allow`` for an empty request, stops the
service before it listens (:class:`PolicyConfigError`).

regopy 1.5.2 needs care with strings, found while building this (see the tests):

- ``Interpreter.set_input`` cuts strings at a NUL byte and stores them raw, unlike data and
  policy text; and the output JSON (``str(output)``, ``Output.results``) does not escape
  strings, so a queue name holding ``"`` could rewrite the JSON a decision is read from.
- So the input is passed as JSON text (``set_input_term``), which rego-cpp parses like the
  data (NUL and every other character intact, compared in one representation), and the
  answer is read from rego-cpp's node tree (``_convert``), never from its JSON text. The
  data file is re-serialized the same way as the input, so a name written ``"\\u00e9"`` in
  the data and ``"é"`` in a request compare equal.
- The decision is taken from a small wrapper rule that picks the rules the service reads
  (``DECISION_RULES``) out of the decision document: evaluating only those rules is
  about twice as fast as the whole package document.

The service evaluates in child processes (``authz.rego_processes``): rego-cpp leaks memory
on every decision, and a child is replaced before its leak grows large; a decision has a time
limit; and answers come back on a channel of their own, matched to requests by ID
(``authz.rego_channel``), because rego-cpp and a policy's ``print()`` write to stdout. The
event loop waits on a decision from a worker thread.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

import trio

from entroq_redis._extras import require

from .decision import PolicyFailure
from .input import Credentials
from .rego_processes import DECISION_TIMEOUT_S, MAX_RSS_MB, DecisionProcesses

_WRAPPER_PACKAGE = "entroq_redis_embedded_decision"
_ENTRYPOINT = _WRAPPER_PACKAGE + "/decision"
# The rules of the decision document the service reads (``authz.decision``): EntroQ's, plus
# ours (``authenticated``; ``user`` for the audit log; ``readable`` for listings; the doc
# namespace answers ``failed_namespaces`` and ``readable_namespaces``). A rule the
# policy does not define is simply absent from the answer.
DECISION_RULES = (
    "allow",
    "authenticated",
    "failed",
    "errors",
    "user",
    "readable",
    "failed_namespaces",
    "readable_namespaces",
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Decisions evaluated at once (threads, each using one child process): one per core, at most 4.
_PARALLEL = max(1, min(4, os.cpu_count() or 1))


class PolicyConfigError(Exception):
    """The policy files, the data or the document path cannot be used (startup fails)."""


def _wrapper_module(path: Sequence[str]) -> str:
    for segment in path:
        if not _IDENTIFIER.match(segment):
            raise PolicyConfigError(f"--opa-path segment {segment!r} is not a Rego identifier")
    doc = "data." + ".".join(path)
    rules = "\n\n".join(f'decision["{name}"] := {doc}.{name}' for name in DECISION_RULES)
    return f"package {_WRAPPER_PACKAGE}\n\nimport rego.v1\n\n{rules}\n"


class _Compiled:
    """One interpreter with the policy compiled into its own bundle (used by one thread at a time)."""

    def __init__(self, modules: Sequence[tuple[str, str]], data_json: str) -> None:
        import regopy

        self.interpreter = regopy.Interpreter()
        for name, source in modules:
            try:
                self.interpreter.add_module(name, source)
            except regopy.RegoError as exc:
                raise PolicyConfigError(f"{name}: {_rego_message(exc, source)}") from None
        try:
            self.interpreter.add_data_json(data_json)
            self.bundle = self.interpreter.build(None, [_ENTRYPOINT])
        except regopy.RegoError as exc:
            raise PolicyConfigError(f"the policy does not compile: {_rego_message(exc, '')}") from None

    def evaluate(self, document_json: str) -> Any:
        from regopy import rego_shared as c

        try:
            self.interpreter.set_input_term(document_json)
        except c.RegoError as exc:
            raise PolicyFailure(
                f"the embedded policy engine refused the input: {_rego_message(exc, '')}"
            ) from None
        output = c.rego_bundle_query_entrypoint(self.interpreter._impl, self.bundle._impl, _ENTRYPOINT)
        try:
            if not c.rego_output_ok(output):
                # rego-cpp often says only "<error>" (a rule with conflicting values, a built-in error).
                raise PolicyFailure(
                    f"the policy failed while evaluating: {_rego_message(c.rego_output_string(output), '')}"
                )
            return _convert(c.rego_output_node(output))
        finally:
            c.rego_free_output(output)


def _convert(node: Any) -> Any:
    """A rego-cpp node as a Python value (object, array or set -> dict or list)."""
    from regopy.rego_shared import NodeKind, rego_node_get, rego_node_size, rego_node_type, rego_node_value

    kind = rego_node_type(node)
    if kind in (NodeKind.Term, NodeKind.Scalar):
        return _convert(rego_node_get(node, 0))
    if kind in (NodeKind.Results, NodeKind.Result, NodeKind.Terms):
        # Results > Result > Terms (its expressions): the wrapper's query has one of each.
        return _convert(rego_node_get(node, 0)) if rego_node_size(node) else None
    if kind == NodeKind.Object:
        items = (rego_node_get(node, i) for i in range(rego_node_size(node)))
        return {_convert(rego_node_get(item, 0)): _convert(rego_node_get(item, 1)) for item in items}
    if kind in (NodeKind.Array, NodeKind.Set):
        return [_convert(rego_node_get(node, i)) for i in range(rego_node_size(node))]
    if kind == NodeKind.Undefined:
        return None
    value = rego_node_value(node)
    if kind == NodeKind.String:
        return _string(value)
    if kind == NodeKind.Boolean:
        return value == "true"
    if kind == NodeKind.Int:
        return int(value)
    if kind == NodeKind.Float:
        return float(value)
    if kind == NodeKind.Null:
        return None
    raise PolicyFailure(f"the policy answered a value of kind {kind.name}")


def _string(value: str) -> str:
    """A string node's text. Strings parsed from JSON or Rego (input, data, literals) are kept
    in their escaped form (``a\\"b``); strings a built-in made (``concat``) are quoted
    (``"user: a"``). Both decode with the JSON rules; anything else is taken as is."""
    text = value if len(value) >= 2 and value[0] == value[-1] == '"' else f'"{value}"'
    try:
        decoded = json.loads(text)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def _rego_message(error: Any, source: str) -> str:
    """The useful part of a rego-cpp error: its messages, with line numbers where known."""
    text = str(error)
    messages = re.findall(r"\(errormsg \d+:([^)\n]*)\)", text)
    positions = re.findall(r"\(error \d+:[^|]*\|(\d+)\|", text)
    if not messages:
        return text.strip().splitlines()[0] if text.strip() else "unknown error"
    parts = []
    for index, message in enumerate(dict.fromkeys(messages)):
        if source and index < len(positions):
            line = source.encode()[: int(positions[index])].count(b"\n") + 1
            parts.append(f"{message} (line {line})")
        else:
            parts.append(message)
    return "; ".join(parts)


class RegoEngine:
    """Evaluates decisions with the loaded policy.

    ``evaluate_sync`` runs in this process (startup checks, tests); ``evaluate``, what the
    service calls per request, runs in a child process (started on first use, stopped by
    ``close``) within ``time_limit_s``; a child holding more than ``max_rss_mb`` after a
    decision is replaced.
    """

    def __init__(
        self,
        modules: Sequence[tuple[str, str]],
        data_json: str,
        *,
        time_limit_s: float = DECISION_TIMEOUT_S,
        max_rss_mb: float = MAX_RSS_MB,
    ) -> None:
        self._local = _Compiled(modules, data_json)
        self._local_lock = threading.Lock()
        self._children = DecisionProcesses(
            modules, data_json, time_limit_s=time_limit_s, max_rss_mb=max_rss_mb
        )
        self._limiter = trio.CapacityLimiter(_PARALLEL)

    def evaluate_sync(self, document: dict[str, Any]) -> Any:
        """The decision for an input document, in this process (each call leaks inside rego-cpp)."""
        with self._local_lock:
            return self._local.evaluate(json.dumps(document, ensure_ascii=False))

    async def evaluate(self, credentials: Credentials, document: dict[str, Any]) -> Any:
        """The ``result`` document (the picked rules; None when the document is undefined).

        Raises:
            PolicyFailure: the policy failed while evaluating (a conflict, a built-in error), or
                its process gave no usable answer in time (wrong, late, garbled or none).
        """
        document_json = json.dumps(document, ensure_ascii=False)
        return await trio.to_thread.run_sync(self._children.evaluate, document_json, limiter=self._limiter)

    def close(self) -> None:
        """Stops the child processes."""
        self._children.close()


def load_rego_engine(
    policy_files: Sequence[str],
    data_file: str | None,
    path: Sequence[str],
    *,
    time_limit_s: float = DECISION_TIMEOUT_S,
    max_rss_mb: float = MAX_RSS_MB,
) -> RegoEngine:
    """Loads and compiles the policy, and checks it decides an empty request.

    ``time_limit_s`` bounds each decision the service asks for (slower fails closed, 503);
    ``max_rss_mb`` is the memory above which a decision child is replaced.

    Raises:
        PolicyConfigError: a file cannot be read, the policy does not compile, the data is
            not a JSON object, or the policy has no boolean ``allow`` at ``path``.
    """
    # Without the [rego] extra: one line naming the install command (the CLI checks first).
    require("rego", "--authz rego")
    if not policy_files:
        raise PolicyConfigError("--authz rego needs at least one --policy FILE")
    modules = []
    for name in policy_files:
        try:
            with open(name, encoding="utf-8") as handle:
                modules.append((name, handle.read()))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyConfigError(f"cannot read policy {name}: {exc}") from None
    data: Any = {}
    if data_file:
        try:
            with open(data_file, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PolicyConfigError(f"cannot read policy data {data_file}: {exc}") from None
        if not isinstance(data, dict):
            raise PolicyConfigError(f"policy data {data_file} must be a JSON object")
    modules.append(("entroq-redis-decision.rego", _wrapper_module(path)))
    engine = RegoEngine(
        modules, json.dumps(data, ensure_ascii=False), time_limit_s=time_limit_s, max_rss_mb=max_rss_mb
    )
    try:
        probe = engine.evaluate_sync({"authz": {}, "queues": []})
    except PolicyFailure as exc:
        raise PolicyConfigError(f"the policy fails on an empty request: {exc}") from None
    if not isinstance(probe, dict) or not isinstance(probe.get("allow"), bool):
        raise PolicyConfigError(
            f"the policy gives no boolean data.{'.'.join(path)}.allow for an empty request "
            "(define 'default allow := false')"
        )
    return engine
