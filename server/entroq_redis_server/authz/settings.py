"""How the service authorizes calls (the ``serve`` command's ``--authz`` flags, declared on the
fields: see ``options``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..options import Option, setting

AuthzMode = Literal["none", "opahttp", "rego"]
AUTHZ_MODES: tuple[AuthzMode, ...] = ("none", "opahttp", "rego")

# EntroQ's defaults (its --opa_url and --opa_path), so a policy deployed for EntroQ works as is.
DEFAULT_OPA_URL = "http://localhost:8181"
DEFAULT_OPA_PATH = "/v1/data/entroq/authz"
DEFAULT_OPA_TIMEOUT_S = 2.0
# The largest policy input a request may need: a modify of 1,000 items whose changes all move
# (2,000 entries) with 1,024-byte queue names is about 2.2 MB, and so is a claim of 1,000
# queues finishing 1,000 tasks. 4 MiB leaves room for that plus escaping; beyond it the
# request is refused with 413 before any engine sees it.
DEFAULT_MAX_INPUT_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class AuthzSettings:
    """Which policy decides, and where it lives.

    Attributes:
        mode: ``none`` (every call allowed), ``opahttp`` (ask an OPA server) or ``rego``
            (evaluate the policy in-process with regopy).
        opa_url: The OPA server (opahttp).
        opa_path: The decision document: the URL path on the OPA server, and for rego the
            same document (``/v1/data/entroq/authz`` is ``data.entroq.authz``).
        opa_timeout_s: How long one policy decision may take before the call is refused (503):
            the OPA request (opahttp), or the evaluation in a child process (rego).
        policy_files: Rego modules loaded at startup (rego).
        policy_data_file: A JSON object loaded as the policy's ``data`` at startup (rego).
        max_input_bytes: The largest policy input one request may produce (413 beyond).
        audit_log: Where one JSON line per authorized call goes ("-": stderr; None: nowhere).
    """

    mode: AuthzMode = setting(
        "none",
        Option(
            "--authz",
            "none (default: every call allowed), opahttp (ask an OPA server) or rego (evaluate "
            "--policy in-process)",
            choices=AUTHZ_MODES,
        ),
    )
    opa_url: str = setting(
        DEFAULT_OPA_URL, Option("--opa-url", "OPA server for opahttp (default %(default)s)", metavar="URL")
    )
    opa_path: str = setting(
        DEFAULT_OPA_PATH,
        Option(
            "--opa-path",
            "decision document: the OPA URL path, and for rego the same document (default %(default)s)",
            metavar="PATH",
        ),
    )
    opa_timeout_s: float = setting(
        DEFAULT_OPA_TIMEOUT_S,
        Option(
            "--opa-timeout",
            "longest a policy decision may take (opahttp: the OPA request; rego: the evaluation in its "
            "child process, which is then replaced); slower is a refusal (503) (default %(default)s)",
            metavar="SECONDS",
        ),
    )
    policy_files: tuple[str, ...] = setting(
        (),
        Option(
            "--policy", "Rego module for rego (repeatable), loaded at startup", kind="list", metavar="FILE"
        ),
    )
    policy_data_file: str | None = setting(
        None, Option("--policy-data", "JSON object loaded as the policy's data (rego)", metavar="FILE")
    )
    max_input_bytes: int = setting(
        DEFAULT_MAX_INPUT_BYTES,
        Option(
            "--authz-max-input-bytes",
            "largest policy input one request may produce; larger is refused with 413 before the "
            "policy sees it (default %(default)s: a modify of 1,000 moves with 1,024-byte queue names fits)",
            metavar="BYTES",
        ),
    )
    audit_log: str | None = setting(
        None,
        Option(
            "--audit-log",
            "write one JSON line per authorized call (who, what, outcome, request ID) to PATH "
            "(appended, created 0600), or '-' for stderr (default: no audit log)",
            metavar="PATH",
        ),
    )


def document_path(opa_path: str) -> tuple[str, ...]:
    """The segments of the decision document under ``data``: ``/v1/data/a/b`` -> ("a", "b").

    Raises:
        ValueError: the path is not of the form /v1/data/<segment>/...
    """
    parts = [p for p in opa_path.split("/") if p]
    if len(parts) < 3 or parts[:2] != ["v1", "data"]:
        raise ValueError(f"--opa-path must look like /v1/data/<package path>, not {opa_path!r}")
    return tuple(parts[2:])
