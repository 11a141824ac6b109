"""A policy's answer, read strictly, and the HTTP answers it leads to. I/O free.

The answer is EntroQ's ``result`` document: ``{"allow": bool, "failed": [{exact?, prefix?,
actions}], "errors": ["..."]}``, plus optional fields of ours:

- ``authenticated``: a policy that sets it to ``false`` says the credentials themselves are
  bad (401), not merely short of a permission (403). EntroQ's own policies do not define it,
  so their denials are 403.
- ``user``: who the credentials are (a string), written to the audit log; anything else
  is ignored (the log then names a fingerprint of the credentials instead).
- ``readable``: for listings, the queue specs (``{"exact": q}`` or ``{"prefix": p}``) under
  which the caller may READ; read by ``authz.listing``, which checks its shape.
- ``failed_namespaces`` and ``readable_namespaces``: the same as ``failed`` and ``readable``,
  for the doc namespaces of the input's ``namespaces`` list. A call that touches docs is
  allowed only when the policy defines ``failed_namespaces`` and it is empty: a policy that
  does not know doc namespaces (EntroQ's own) never lets a doc call through.

Everything else fails closed: an undefined document, a non-boolean ``allow`` or malformed
lists are a failing policy engine (503), never an allow.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from typing import Any

from ..core import errors as _errors
from ..core import schema as _schema
from ..core.errors import ApiError
from .input import QueueEntry

# The AuthzDep actions EntroQ maps; anything else in a ``failed`` entry becomes a WARNING.
KNOWN_ACTIONS = frozenset({"CLAIM", "DELETE", "CHANGE", "INSERT", "READ"})
DENIED_MESSAGE = "queue action denied"
HIDDEN_QUEUE_NOTE = "the queue the named task is in (not shown)"
DOC_NAMESPACE_NOTE = "doc namespace"
UNJUDGED_NAMESPACES = (
    "the authorization policy does not judge doc namespaces (it defines no failed_namespaces), "
    "so document-store calls are refused"
)

AuthzDep: Any = _schema.message_class("AuthzDep")


class PolicyFailure(Exception):
    """The policy engine could not give a usable decision (unreachable, timed out, erred,
    or answered something malformed). The call is refused with 503."""


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    authenticated: bool | None
    failed: tuple[QueueEntry, ...]
    errors: tuple[str, ...]
    user: str | None = None
    readable: Any = None  # the policy's raw ``readable`` (None: undefined)
    # The doc namespace entries not granted (None: the policy does not define them).
    failed_namespaces: tuple[QueueEntry, ...] | None = None
    readable_namespaces: Any = None

    @property
    def permits(self) -> bool:
        """Allowed, with nothing failed: a policy saying allow while listing failed entries
        contradicts itself, and the contradiction is read as a denial."""
        return self.allow and not self.failed and not self.failed_namespaces

    def permits_namespaces(self) -> bool:
        """Allowed for a call that touches doc namespaces: the policy must have judged them."""
        return self.permits and self.failed_namespaces is not None

    def for_namespaces(self) -> Decision:
        """This decision as a listing of doc namespaces reads it (``authz.listing``): the doc
        namespace answers in place of the queue ones; no judgement of them is a denial."""
        return Decision(
            self.allow and self.failed_namespaces is not None,
            self.authenticated,
            self.failed_namespaces or (),
            self.errors,
            self.user,
            self.readable_namespaces,
        )


def parse_result(result: Any) -> Decision:
    """Reads a policy's ``result`` document.

    Raises:
        PolicyFailure: the document is undefined or malformed.
    """
    if result is None:
        raise PolicyFailure(
            "the policy gave no decision (undefined document: check --opa-path and the policy)"
        )
    if not isinstance(result, dict):
        raise PolicyFailure(f"the policy's decision is a {type(result).__name__}, not an object")
    allow = result.get("allow")
    if not isinstance(allow, bool):
        raise PolicyFailure("the policy's decision has no boolean 'allow'")
    authenticated = result.get("authenticated")
    if authenticated is not None and not isinstance(authenticated, bool):
        raise PolicyFailure("the policy's 'authenticated' is not a boolean")
    user = result.get("user")
    failed_namespaces = result.get("failed_namespaces")
    return Decision(
        allow,
        authenticated,
        _failed(result.get("failed")),
        _errors_of(result.get("errors")),
        user if isinstance(user, str) and user else None,
        result.get("readable"),
        _failed(failed_namespaces) if failed_namespaces is not None else None,
        result.get("readable_namespaces"),
    )


def read_specs(value: object) -> list[tuple[str, str]] | None:
    """The policy's ``readable`` as (exact, prefix) pairs, None when it is undefined.

    Raises:
        PolicyFailure: it is not a list of objects with one string ``exact`` or ``prefix``.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise PolicyFailure("the policy's 'readable' is not a list")
    specs = []
    for item in value:
        if not isinstance(item, dict):
            raise PolicyFailure("an entry of the policy's 'readable' is not an object")
        exact, prefix = item.get("exact"), item.get("prefix")
        value = exact if exact is not None else prefix
        if (exact is None) == (prefix is None) or not isinstance(value, str) or not value:
            raise PolicyFailure("an entry of the policy's 'readable' needs one non-empty 'exact' or 'prefix'")
        specs.append((value, "") if exact is not None else ("", value))
    return specs


def _failed(value: Any) -> tuple[QueueEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PolicyFailure("the policy's 'failed' is not a list")
    entries = []
    for item in value:
        if not isinstance(item, dict):
            raise PolicyFailure("an entry of the policy's 'failed' is not an object")
        exact, prefix, actions = item.get("exact", ""), item.get("prefix", ""), item.get("actions", [])
        if not isinstance(exact, str) or not isinstance(prefix, str) or not isinstance(actions, list):
            raise PolicyFailure("an entry of the policy's 'failed' is malformed")
        entries.append(QueueEntry(exact, prefix, tuple(_text(a) for a in actions)))
    return tuple(entries)


def _errors_of(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PolicyFailure("the policy's 'errors' is not a list")
    return tuple(_text(e) for e in value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _quoted(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def unauthenticated(message: str) -> ApiError:
    """401, with the RFC 6750 challenge. The same body for an unknown, expired or forged
    token: nothing tells which (no user enumeration)."""
    return ApiError(
        401,
        _errors.UNAUTHENTICATED,
        message,
        "denied",
        headers={"WWW-Authenticate": 'Bearer realm="entroq"'},
    )


def invalid_credentials() -> ApiError:
    return unauthenticated("invalid credentials")


def denied(decision: Decision, hidden_queues: Collection[str] = ()) -> ApiError:
    """403 with EntroQ's AuthzDep details: one DETAIL per policy error string, one entry per
    failed queue with its actions, and a WARNING for any action EntroQ does not know.

    Queues in ``hidden_queues`` (found by looking a task up, never named by the caller) are
    not revealed: their entry says which actions failed on "the queue of a task named by ID".
    """
    details = [AuthzDep(actions=["DETAIL"], msg=e) for e in decision.errors]
    summary = []
    for failed in decision.failed:
        actions = [a for a in failed.actions if a in KNOWN_ACTIONS]
        if failed.exact in hidden_queues and not failed.prefix:
            details.append(AuthzDep(actions=actions, msg=HIDDEN_QUEUE_NOTE))
            summary.append(f"{'/'.join(failed.actions)} on {HIDDEN_QUEUE_NOTE}")
        else:
            details.append(AuthzDep(actions=actions, exact=failed.exact, prefix=failed.prefix))
            where = _quoted(failed.exact) if not failed.prefix else f"prefix {_quoted(failed.prefix)}"
            summary.append(
                f"{'/'.join(failed.actions)} on {where if failed.exact or failed.prefix else 'no queue'}"
            )
        for action in failed.actions:
            if action not in KNOWN_ACTIONS:
                details.append(AuthzDep(actions=["DETAIL"], exact=f'WARNING: Unknown action "{action}"'))
    for failed in decision.failed_namespaces or ():
        actions = [a for a in failed.actions if a in KNOWN_ACTIONS]
        details.append(
            AuthzDep(actions=actions, exact=failed.exact, prefix=failed.prefix, msg=DOC_NAMESPACE_NOTE)
        )
        where = _quoted(failed.exact) if not failed.prefix else f"prefix {_quoted(failed.prefix)}"
        summary.append(f"{'/'.join(failed.actions)} on doc namespace {where}")
    if not details:
        details.append(AuthzDep(actions=["DETAIL"], msg="the policy denied the request"))
    # A denial that names no queue (a claimant ID the caller may not use, say) is explained
    # by the policy's own messages.
    reasons = summary or list(decision.errors)
    message = DENIED_MESSAGE + (": " + "; ".join(reasons) if reasons else "")
    return ApiError(403, _errors.PERMISSION_DENIED, message, "denied", details)


def namespaces_unjudged(decision: Decision) -> ApiError:
    """403 for a doc call the policy said nothing about (no ``failed_namespaces``)."""
    return denied(dataclasses.replace(decision, errors=(*decision.errors, UNJUDGED_NAMESPACES)))


def input_too_large(size: int, limit: int) -> ApiError:
    """413 for a request whose policy input would exceed --authz-max-input-bytes."""
    return ApiError(
        413,
        _errors.RESOURCE_EXHAUSTED,
        f"the authorization input of this request is {size} bytes, over the limit of {limit} bytes "
        "(--authz-max-input-bytes): send fewer or shorter queue names per request",
        "bad_request",
    )


def engine_unavailable(failure: PolicyFailure) -> ApiError:
    return _errors.unavailable(f"authorization is unavailable: {failure}")
