"""How the service authorizes calls (the ``serve`` command's ``--authz`` flags)."""

from __future__ import annotations

import dataclasses
from typing import Literal

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
    """

    mode: AuthzMode = "none"
    opa_url: str = DEFAULT_OPA_URL
    opa_path: str = DEFAULT_OPA_PATH
    opa_timeout_s: float = DEFAULT_OPA_TIMEOUT_S
    policy_files: tuple[str, ...] = ()
    policy_data_file: str | None = None
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    audit_log: str | None = None


def document_path(opa_path: str) -> tuple[str, ...]:
    """The segments of the decision document under ``data``: ``/v1/data/a/b`` -> ("a", "b").

    Raises:
        ValueError: the path is not of the form /v1/data/<segment>/...
    """
    parts = [p for p in opa_path.split("/") if p]
    if len(parts) < 3 or parts[:2] != ["v1", "data"]:
        raise ValueError(f"--opa-path must look like /v1/data/<package path>, not {opa_path!r}")
    return tuple(parts[2:])
