"""EntroQ's authorization input document (docs/reference/entroq-protocol.md 7). I/O free.

The document a policy sees is EntroQ's, plus the namespace the call works in and, for
claims and modifies that name one, the claimant ID the call acts as::

    {"input": {"authz": {"type"?, "credentials"?},
               "queues": [{"exact"?, "prefix"?, "actions": [...]}, ...],
               "namespaces"?: [{"exact"?, "prefix"?, "actions": [...]}, ...],
               "namespace": "eq",
               "claimant_id"?: "alice#1"}}

``namespace`` and ``claimant_id`` are ours (EntroQ's 830a143 input has neither): a service
serving several namespaces can scope grants by ``namespace``, and a policy can bind claimant
IDs to users with ``claimant_id`` (whoever sends a claimant ID may renew, change or delete the
tasks it holds). EntroQ's own policies never read them and work unchanged.

``namespaces`` lists the *doc* namespaces a document-store call touches (EntroQ v1.1's input
has this list, but its service never fills it in), with the same actions as queues: READ to
list docs (and a doc depend), CLAIM to claim docs or doc sets, INSERT, CHANGE and DELETE for a
modify's doc items. It is present only when a call touches docs, so task calls give EntroQ's
own policies the same input as before. A policy authorizes it by answering ``failed_namespaces``
(``authz.decision``): a policy that does not (EntroQ's own) is refused every doc call.

``authz`` is the caller's ``Authorization`` header split at its first space (``Bearer abc``
-> type ``Bearer``, credentials ``abc``; a single word is credentials only). The scheme is
case-insensitive (RFC 9110), so ``bearer abc`` and ``BEARER abc`` reach the policy as type
``Bearer`` too; other schemes pass as sent. A bearer token of exactly three dot-separated
parts is a JWT (RFC 7519's compact form) and must look like one (base64url parts, the first
two JSON objects): anything else is refused as malformed (401) before any policy sees it,
because a policy's JWT built-ins error on it and that would read as an engine outage. ``exact`` and
``prefix`` are omitted when empty; there is one queue entry per item of the request, in
request order, with no de-duplication. ``testuser`` is never taken from a request.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..core.hooks import HeaderMap

CLAIM = "CLAIM"
DELETE = "DELETE"
CHANGE = "CHANGE"
INSERT = "INSERT"
READ = "READ"

# A header longer than this is refused as malformed before any policy sees it (real bearer
# tokens, JWTs included, are far shorter; Hypercorn caps the whole header block anyway).
MAX_AUTHORIZATION_CHARS = 8192
BEARER = "Bearer"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class CredentialsError(Exception):
    """The request carries no usable ``Authorization`` header (answered 401)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """The caller's ``Authorization`` header, split as EntroQ splits it."""

    type: str = ""
    credentials: str = ""
    # The call being authorized (not part of the header; see input_document): its namespace,
    # and the claimant ID a claim or modify acts as ("" when it names none).
    namespace: str = ""
    claimant_id: str = ""

    def to_json(self) -> dict[str, str]:
        body = {}
        if self.type:
            body["type"] = self.type
        if self.credentials:
            body["credentials"] = self.credentials
        return body

    def header(self) -> str:
        """The header value again, as EntroQ forwards it to OPA (type and credentials, trimmed)."""
        return f"{self.type} {self.credentials}".strip()


def read_credentials(headers: HeaderMap) -> Credentials:
    """The caller's credentials.

    Raises:
        CredentialsError: no ``Authorization`` header, an empty one, a scheme with nothing
            after it, control characters, or more than MAX_AUTHORIZATION_CHARS characters.
    """
    value = headers.get("Authorization")
    if value is None or not value.strip():
        raise CredentialsError("missing credentials: send an Authorization header (Bearer <token>)")
    if len(value) > MAX_AUTHORIZATION_CHARS or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise CredentialsError("malformed Authorization header")
    kind, space, rest = value.partition(" ")
    if not space:
        return Credentials(credentials=kind)
    if not rest.strip():
        raise CredentialsError(f"malformed Authorization header: no credentials after {kind!r}")
    if kind.lower() == BEARER.lower():
        kind = BEARER
        if rest.count(".") == 2 and not _looks_like_jwt(rest):
            raise CredentialsError("malformed bearer token: three dot-separated parts but not a JWT")
    return Credentials(type=kind, credentials=rest)


def _looks_like_jwt(token: str) -> bool:
    """Whether a three-part token is base64url parts whose first two decode to JSON objects
    (the shape only: the policy verifies the signature and the claims)."""
    parts = token.split(".")
    if not all(_BASE64URL.fullmatch(part) for part in parts):
        return False
    for part in parts[:2]:
        try:
            decoded = json.loads(
                base64.urlsafe_b64decode(part.rstrip("=") + "=" * (-len(part.rstrip("=")) % 4))
            )
        except (binascii.Error, ValueError, RecursionError):
            return False
        if not isinstance(decoded, dict):
            return False
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class QueueEntry:
    """One queue/action item of the input (or of a policy's ``failed`` list)."""

    exact: str = ""
    prefix: str = ""
    actions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.exact:
            body["exact"] = self.exact
        if self.prefix:
            body["prefix"] = self.prefix
        body["actions"] = list(self.actions)
        return body


def entry(queue: str, action: str) -> QueueEntry:
    return QueueEntry(exact=queue, actions=(action,))


def input_document(
    credentials: Credentials, entries: Sequence[QueueEntry], namespaces: Sequence[QueueEntry] = ()
) -> dict[str, Any]:
    """The ``input`` value sent to the policy (the OPA request body is ``{"input": this}``);
    ``namespaces`` are the doc namespace entries (omitted when there are none)."""
    document: dict[str, Any] = {"authz": credentials.to_json(), "queues": [e.to_json() for e in entries]}
    if namespaces:
        document["namespaces"] = [e.to_json() for e in namespaces]
    if credentials.namespace:
        document["namespace"] = credentials.namespace
    if credentials.claimant_id:
        document["claimant_id"] = credentials.claimant_id
    return document


def input_size(document: dict[str, Any]) -> int:
    """The bytes of ``{"input": document}`` as UTF-8 JSON: what an engine is handed."""
    return len(json.dumps({"input": document}, ensure_ascii=False, separators=(",", ":")).encode())


def claim_entries(queues: Iterable[str], finish_queues: Iterable[str]) -> list[QueueEntry]:
    """CLAIM on each requested queue; DELETE on the queue of each task finished with the claim
    (``finish``, this service's extension: those are deletes)."""
    return [entry(q, CLAIM) for q in queues] + [entry(q, DELETE) for q in finish_queues]


def read_entries(queues: Iterable[str]) -> list[QueueEntry]:
    return [entry(q, READ) for q in queues]


def doc_modify_entries(request: Any) -> list[QueueEntry]:
    """The doc namespace entries of a ModifyRequest, in request order: INSERT per doc insert,
    CHANGE per doc change (a doc never changes namespace; a doc set's lease change included),
    DELETE per doc delete, READ per doc depend."""
    return (
        [entry(d.namespace, INSERT) for d in request.doc_inserts]
        + [entry(c.old_id.namespace, CHANGE) for c in request.doc_changes]
        + [entry(d.namespace, DELETE) for d in request.doc_deletes]
        + [entry(d.namespace, READ) for d in request.doc_depends]
    )


def doc_claim_entries(claim: Any) -> list[QueueEntry]:
    """CLAIM on the doc namespace of a one-key claim, or on each claimed set's."""
    if claim.sets:
        return [entry(s.set.namespace, CLAIM) for s in claim.sets]
    return [entry(claim.namespace, CLAIM)]
