"""Client-side checks of a modify's doc items, for an early, clear InvalidArgumentError.

modify.lua enforces the same rules itself (other languages call it directly); these run in
the library so that every backend (Redis, HTTP, gRPC) refuses a malformed doc item the same
way before anything is sent. The limits are _contract.py's mirrors of the script's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._contract import (
    MAX_DOC_ID_BYTES,
    MAX_DOC_KEY_BYTES,
    MAX_DOC_NAMESPACE_BYTES,
    MAX_INT32,
    MAX_VALUE_BYTES,
)
from ._doc_types import DocChange, DocData, DocID
from ._errors import InvalidArgumentError
from ._types import as_bytes


def _byte_length(value: object, what: str) -> int:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(value).__name__}")
    return len(value.encode("utf-8", "surrogateescape"))


def _check_text(value: object, what: str, low: int, high: int) -> None:
    length = _byte_length(value, what)
    if length < low:
        raise InvalidArgumentError(f"{what} must not be empty")
    if length > high:
        raise InvalidArgumentError(f"{what} is {length} bytes, longer than {high}")


def _check_version(version: object, what: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= MAX_INT32:
        raise InvalidArgumentError(
            f"{what} version must be an integer from 0 to {MAX_INT32}, got {version!r}"
        )


def _check_content(content: object, what: str) -> None:
    try:
        size = len(as_bytes(content))  # type: ignore[arg-type]
    except TypeError as exc:
        raise InvalidArgumentError(f"{what} content: {exc}") from None
    if size > MAX_VALUE_BYTES:
        raise InvalidArgumentError(f"{what} content is {size} bytes, larger than {MAX_VALUE_BYTES}")


def _check_fields(key: object, secondary_key: object, content: object, what: str) -> None:
    _check_text(key, f"{what} key", 0, MAX_DOC_KEY_BYTES)
    _check_text(secondary_key, f"{what} secondary key", 0, MAX_DOC_KEY_BYTES)
    _check_content(content, what)


def check_doc_items(
    inserts: Sequence[DocData],
    changes: Sequence[DocChange],
    deletes: Sequence[DocID],
    depends: Sequence[DocID],
) -> None:
    """Raises InvalidArgumentError for the first malformed doc item; nothing is sent then.

    A doc is named by (namespace, id) and never changes namespace: a change names the doc by
    its namespace and ID, and there is no field to move it. A doc set (empty id, non-empty
    key) may be named only by a lease change. A doc (or set) may be inserted, changed or
    deleted at most once per modify; depends may name any of them again.
    """
    named: set[tuple[str, str, str]] = set()

    def name_once(namespace: str, doc_id: str, key: str, what: str) -> None:
        # A set is ("set", namespace, key), a doc ("doc", namespace, id): they never collide.
        identity = ("set", namespace, key) if not doc_id else ("doc", namespace, doc_id)
        if identity in named:
            thing = f"doc set {key!r}" if not doc_id else f"doc {doc_id!r}"
            raise InvalidArgumentError(
                f"{what}: {thing} in doc namespace {namespace!r} is inserted, changed or deleted "
                "more than once in one modify"
            )
        named.add(identity)

    for index, data in enumerate(inserts, 1):
        what = f"doc insert {index}"
        if not isinstance(data, DocData):
            raise InvalidArgumentError(f"{what} must be a DocData, got {type(data).__name__}")
        _check_text(data.namespace, f"{what} namespace", 1, MAX_DOC_NAMESPACE_BYTES)
        if data.id:
            _check_text(data.id, f"{what} id", 1, MAX_DOC_ID_BYTES)
            name_once(data.namespace, data.id, "", what)
        elif data.id is not None and not isinstance(data.id, str):
            raise InvalidArgumentError(f"{what} id must be a string or None")
        _check_fields(data.key, data.secondary_key, data.content, what)

    for index, change in enumerate(changes, 1):
        what = f"doc change {index}"
        if not isinstance(change, DocChange):
            raise InvalidArgumentError(f"{what} must be a DocChange, got {type(change).__name__}")
        _check_text(change.namespace, f"{what} namespace", 1, MAX_DOC_NAMESPACE_BYTES)
        _check_version(change.version, what)
        if change.mode not in ("full", "lease"):
            raise InvalidArgumentError(f"{what} mode must be 'full' or 'lease', got {change.mode!r}")
        _byte_length(change.id, f"{what} id")
        if not change.id:
            if not change.key:
                raise InvalidArgumentError(f"{what} needs an id, or a key to name a doc set")
            if change.mode != "lease":
                raise InvalidArgumentError(
                    f"{what} names a doc set (empty id, key {change.key!r}): a set may only have its "
                    "lease changed (mode 'lease')"
                )
            _check_text(change.key, f"{what} set key", 1, MAX_DOC_KEY_BYTES)
        else:
            _check_text(change.id, f"{what} id", 1, MAX_DOC_ID_BYTES)
            if change.mode == "full":
                _check_fields(change.key, change.secondary_key, change.content, what)
        name_once(change.namespace, change.id, change.key, what)

    for kind, items in (("doc delete", deletes), ("doc depend", depends)):
        for index, doc_id in enumerate(items, 1):
            what = f"{kind} {index}"
            if not isinstance(doc_id, DocID):
                raise InvalidArgumentError(f"{what} must be a Doc or DocID, got {type(doc_id).__name__}")
            _check_text(doc_id.namespace, f"{what} namespace", 1, MAX_DOC_NAMESPACE_BYTES)
            if not doc_id.id:
                raise InvalidArgumentError(
                    f"{what} needs a doc id (a doc set can only be named by a lease change)"
                )
            _check_text(doc_id.id, f"{what} id", 1, MAX_DOC_ID_BYTES)
            _check_version(doc_id.version, what)
            if kind == "doc delete":
                name_once(doc_id.namespace, doc_id.id, "", what)
