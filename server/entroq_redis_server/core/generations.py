"""Which generation of EntroQ client is calling: its protocol, and how it writes task values.

One service answers every EntroQ HTTP client generation at once (the compatibility plan,
docs/reference/entroq-client-generations.md 5): the seed clients (0.10, base64 values), the
PyPI ``entroq`` 0.12 to 0.14 clients (JSON values, protocol 1) and 0.15 (JSON values,
``entroq-protocol: 2``). Protocols differ in fields the wire decoder reads either way (``byMs``,
``mode``), so the protocol only needs checking; the value encoding has to be decided per request,
from what the request reveals, strongest evidence first:

1. ``EntroQ-Value-Encoding: base64|json`` (our extension; this project's own HTTP client sends it);
2. ``entroq-protocol: 2`` (only 0.15 sends it): JSON;
3. the route: ``/api/v0/queues/{queue}/tasks`` is the seed's (base64), ``/api/v0/tasks`` every
   later client's (JSON), and so are the document store's routes (REST and Connect: no seed-era
   client has documents);
4. a modify body's shape: the document-store lists (``docInserts``...), present even when empty,
   or a value that is not a string: JSON; an insert with ``"id": null`` and a string ``atMs``
   (the seed Python client): base64;
5. what this claimant's earlier unambiguous requests (1 to 4) showed, remembered per namespace,
   caller credentials and claimant ID in a bounded LRU: claim bodies are identical across
   generations, so this is what tells a seed worker's claims from a JSON-era worker's when
   nothing else does;
6. ``User-Agent: python-httpx/...`` (the 0.12+ clients; not authoritative, a caller may inject
   its own HTTP client): JSON;
7. the service's default (``--value-encoding-default``, base64 unless set).

The memory is per service process (with ``--workers N`` each process learns on its own) and
forgets the least recently seen claimant beyond ``remember`` entries, so it is bounded whatever
the number of claimants.

What one caller sends must never change how another caller's values are read or written. So a
request teaches the memory only once it has been authorized and served (``learn``, called by
the front end after the call succeeded: a refused request teaches nothing), and what is learned
is keyed by the caller's credentials (a fingerprint of the whole ``Authorization`` header) as
well as the claimant ID: a caller naming someone else's claimant ID, with other credentials or
none, reads and writes only its own entry.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .errors import bad_request, unimplemented
from .values import BASE64, ENCODINGS, JSON, ValueEncoding

PROTOCOL_HEADER = "entroq-protocol"
SERVED_PROTOCOLS = (1, 2)
# What every response says (EntroQ's FormatProtocols): the 0.15 client reads it, whatever the
# status, before its first real request, and refuses a server that does not list 2.
SERVED_HEADER_VALUE = ",".join(map(str, SERVED_PROTOCOLS))
VALUE_ENCODING_HEADER = "EntroQ-Value-Encoding"
DEFAULT_REMEMBERED_CLAIMANTS = 10_000

# (namespace, credentials fingerprint, claimant ID): whose encoding the claimant memory holds.
MemoryKey = tuple[str, str, str]

# Which route a request came by: the seed's task path form, the later query form, a document
# store route, or another.
Route = Literal["seed_tasks", "tasks", "docs", "other"]

# The document lists of a ModifyRequest (JSON and proto names): every 0.12+ client sends all
# four on every modify, even empty.
_DOC_LISTS = frozenset(
    {
        "docInserts",
        "docChanges",
        "docDeletes",
        "docDepends",
        "doc_inserts",
        "doc_changes",
        "doc_deletes",
        "doc_depends",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """What one request says about its client.

    Attributes:
        protocol: The EntroQ protocol the request is read under (1 without the header).
        values: How task values are read from and written to this request's JSON.
        evidence: Which rule decided ``values`` (header, protocol, route, body, claimant,
            user-agent, default); for logs and tests.
        lesson: What the claimant memory learns from this request once it is served
            (``Generations.learn``): its memory key and the encoding rules 1 to 4 found, or None.
    """

    protocol: int
    values: ValueEncoding
    evidence: str
    lesson: tuple[MemoryKey, ValueEncoding] | None = None


def protocol(values: Sequence[str]) -> int:
    """The protocol a request declares in ``entroq-protocol`` (1 when absent).

    Raises:
        ApiError: 400 for several values or a malformed one; 501 for a protocol this server
            does not serve, naming what to upgrade.
    """
    if not values:
        return 1
    if len(values) > 1 or "," in values[0]:
        raise bad_request(f"{PROTOCOL_HEADER} must name exactly one protocol, got {', '.join(values)!r}")
    text = values[0].strip()
    if not text.isdigit() or int(text) < 1:
        raise bad_request(f"{PROTOCOL_HEADER} must be a protocol number, got {text!r}")
    number = int(text)
    if number not in SERVED_PROTOCOLS:
        raise unimplemented(
            f"this server serves EntroQ protocols {SERVED_HEADER_VALUE} and the client speaks {number}: "
            f"upgrade the server (entroq-redis), or use a client that speaks protocol "
            f"{' or '.join(map(str, SERVED_PROTOCOLS))}"
        )
    return number


def _declared_encoding(values: Sequence[str]) -> ValueEncoding | None:
    if not values:
        return None
    text = values[0].strip().lower()
    if len(values) > 1 or text not in ENCODINGS:
        raise bad_request(
            f"{VALUE_ENCODING_HEADER} must be one of {', '.join(ENCODINGS)}, got {', '.join(values)!r}"
        )
    return JSON if text == JSON else BASE64


def _task_data_values(body: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], bool]]:
    """(TaskData object, is an insert) for every insert and change in a modify body."""
    found: list[tuple[Mapping[str, Any], bool]] = []
    # Anything but a list is left to the parser's 400 ({"changes": 5} must not fail here).
    inserts, changes = body.get("inserts"), body.get("changes")
    for item in inserts if isinstance(inserts, list) else ():
        if isinstance(item, Mapping):
            found.append((item, True))
    for change in changes if isinstance(changes, list) else ():
        if isinstance(change, Mapping):
            data = change.get("newData", change.get("new_data"))
            if isinstance(data, Mapping):
                found.append((data, False))
    return found


def body_encoding(body: Mapping[str, Any] | None) -> ValueEncoding | None:
    """The value encoding a modify body's shape reveals, or None when it could be either."""
    if not body:
        return None
    if _DOC_LISTS.intersection(body):
        return JSON  # every 0.12+ client sends all four, even empty
    data = _task_data_values(body)
    if any("value" in d and not isinstance(d["value"], str) for d, _ in data):
        return JSON  # base64 is always a string; the seed never sends null
    if any(insert and "id" in d and d["id"] is None and isinstance(d.get("atMs"), str) for d, insert in data):
        return BASE64  # the seed Python client: "id": null, "atMs": "0"
    return None


def claimant_of(body: Mapping[str, Any] | None) -> str:
    """The claimant a request body names ("" if none)."""
    if not body:
        return ""
    claimant = body.get("claimantId", body.get("claimant_id"))
    return claimant if isinstance(claimant, str) else ""


def _unambiguous(
    number: int, encoding_values: Sequence[str], route: Route, body: Mapping[str, Any] | None
) -> tuple[str, ValueEncoding | None]:
    """(evidence, encoding) from rules 1 to 4 of the module doc; encoding None if they do not tell."""
    declared = _declared_encoding(encoding_values)
    if declared is not None:
        return "header", declared
    if number >= 2:
        return "protocol", JSON
    if route == "seed_tasks":
        return "route", BASE64
    if route in ("tasks", "docs"):
        return "route", JSON
    return "body", body_encoding(body)


class Generations:
    """Identifies each request's client generation; remembers claimants' value encodings.

    Args:
        default: The value encoding of callers nothing identifies.
        remember: How many claimants' encodings to remember (least recently seen forgotten).
    """

    def __init__(self, default: ValueEncoding = BASE64, remember: int = DEFAULT_REMEMBERED_CLAIMANTS) -> None:
        if default not in ENCODINGS:
            raise ValueError(f"the default value encoding must be one of {ENCODINGS}, not {default!r}")
        self.default = default
        self.remember = remember
        # One claimant ID in two namespaces, or sent with two credentials, may be two clients.
        self._claimants: collections.OrderedDict[MemoryKey, ValueEncoding] = collections.OrderedDict()

    def identify(
        self,
        *,
        protocol_values: Sequence[str],
        encoding_values: Sequence[str],
        user_agent: str,
        route: Route = "other",
        body: Mapping[str, Any] | None = None,
        claimant: str = "",
        namespace: str = "",
        credentials: str = "",
    ) -> Caller:
        """Decides the protocol and value encoding of one request (rules in the module doc).

        ``claimant`` (else the body's ``claimantId``), ``namespace`` (as the request names
        it) and ``credentials`` (the ``Authorization`` header, "" without one) key the claimant
        memory. Nothing is learned here: pass the result to ``learn`` once the call succeeded.

        Raises:
            ApiError: a bad ``entroq-protocol`` (400/501) or ``EntroQ-Value-Encoding`` (400).
        """
        number = protocol(protocol_values)
        key = (namespace, _fingerprint(credentials), claimant or claimant_of(body))
        evidence, values = _unambiguous(number, encoding_values, route, body)
        if values is not None:
            return Caller(number, values, evidence, (key, values) if key[2] else None)
        learned = self._claimants.get(key) if key[2] else None
        if learned is not None:
            self._claimants.move_to_end(key)
            return Caller(number, learned, "claimant")
        if user_agent.lower().startswith("python-httpx/"):
            return Caller(number, JSON, "user-agent")
        return Caller(number, self.default, "default")

    def learn(self, caller: Caller) -> None:
        """Remembers what a served request showed about its claimant (see the module doc:
        call it only for a request that was authorized and succeeded)."""
        if caller.lesson is None or self.remember <= 0:
            return
        key, values = caller.lesson
        self._claimants[key] = values
        self._claimants.move_to_end(key)
        while len(self._claimants) > self.remember:
            self._claimants.popitem(last=False)

    def remembered(self, claimant: str, namespace: str = "", credentials: str = "") -> ValueEncoding | None:
        """The encoding learned for a claimant, if any (for tests and diagnostics)."""
        return self._claimants.get((namespace, _fingerprint(credentials), claimant))


def _fingerprint(credentials: str) -> str:
    """A key for the caller's credentials that does not keep the credentials themselves."""
    if not credentials:
        return ""
    return hashlib.sha256(credentials.encode("utf-8", "surrogatepass")).hexdigest()[:32]
