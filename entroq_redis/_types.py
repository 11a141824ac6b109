"""The task queue's data types, named as EntroQ's Python client names them.

Times are integer milliseconds since the epoch on the store's clock (``*_ms`` fields);
the ``at``, ``created`` and ``modified`` properties give them as aware UTC datetimes.
Values are bytes end to end.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Literal

ChangeMode = Literal["full", "lease", "reset_claims"]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def ms_to_datetime(ms: int) -> datetime.datetime:
    """Converts ms since the epoch to an aware UTC datetime."""
    return _EPOCH + datetime.timedelta(milliseconds=ms)


def datetime_to_ms(moment: datetime.datetime) -> int:
    """Converts a datetime (naive means UTC) to ms since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)


def arrival_ms(at: datetime.datetime | int | None) -> int:
    """Normalizes an arrival given as datetime, ms or None (now) to ms; 0 means now."""
    if at is None:
        return 0
    if isinstance(at, datetime.datetime):
        return datetime_to_ms(at)
    if isinstance(at, bool) or not isinstance(at, int):
        raise TypeError(f"at must be a datetime, integer ms or None, not {type(at).__name__}")
    return at


def as_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    """Task values are bytes; text is accepted and stored as UTF-8."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"value must be bytes or str, not {type(value).__name__}")


@dataclasses.dataclass(frozen=True, slots=True)
class TaskID:
    """Names one version of a task. ``queue`` may be empty (= wherever the task is)."""

    id: str
    version: int
    queue: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimSlot:
    """One slot of a batched claim that names its own claimant and lease (lua/claim.lua's
    "each" form), so one store call can claim for several callers at once."""

    claimant: str
    duration_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class TaskData:
    """A task to insert.

    Args:
        queue: The queue to insert into (non-empty).
        at: Arrival as a datetime or ms since the epoch; None or <= 0 means now.
        value: The payload.
        attempt: Worker retry counter to start from.
        err: Worker error text to start from.
        id: A caller-chosen ID (at most 64 bytes); None lets the store generate a UUIDv4.
        delay_ms: Arrival relative to the store's clock; overrides ``at`` when given.
    """

    queue: str
    at: datetime.datetime | int | None = None
    value: bytes = b""
    attempt: int = 0
    err: str = ""
    id: str | None = None
    delay_ms: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskChange:
    """A change to one version of a task; it replaces queue, arrival, value, attempt and err.

    Args:
        id: The task's ID.
        version: The version the change applies to; any other version fails the modify.
        queue: The queue the task ends up in.
        at: New arrival (datetime or ms); None or <= 0 means now (releases a claim).
        value: New payload.
        attempt: New retry counter.
        err: New error text.
        old_queue: The queue the caller believes the task is in (informational).
        delay_ms: Arrival relative to the store's clock; overrides ``at`` when given.
        mode: "full" (default), "lease" (only the arrival moves; queue, value, attempt and
            err are kept) or "reset_claims" (a full change that also zeroes ``claims``).
    """

    id: str
    version: int
    queue: str
    at: datetime.datetime | int | None = None
    value: bytes = b""
    attempt: int = 0
    err: str = ""
    old_queue: str = ""
    delay_ms: int | None = None
    mode: ChangeMode = "full"


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One version of a task as the store holds it."""

    queue: str
    id: str
    version: int
    at_ms: int
    claimant: str
    value: bytes
    created_ms: int
    modified_ms: int
    claims: int
    attempt: int
    err: str

    @property
    def at(self) -> datetime.datetime:
        return ms_to_datetime(self.at_ms)

    @property
    def created(self) -> datetime.datetime:
        return ms_to_datetime(self.created_ms)

    @property
    def modified(self) -> datetime.datetime:
        return ms_to_datetime(self.modified_ms)

    def as_id(self) -> TaskID:
        """This version of the task, for a delete or a depend."""
        return TaskID(self.id, self.version, self.queue)

    def as_change(self, **overrides: Any) -> TaskChange:
        """A change of this version that keeps every field not overridden.

        Overridable: queue, at, value, attempt, err, delay_ms, mode. As in EntroQ, the
        current arrival is kept unless overridden, so a claimed task stays claimed by
        the modifier; pass ``at=None`` to release it now.
        """
        fields: dict[str, Any] = {
            "queue": self.queue,
            "at": self.at_ms,
            "value": self.value,
            "attempt": self.attempt,
            "err": self.err,
        }
        unknown = set(overrides) - {"queue", "at", "value", "attempt", "err", "delay_ms", "mode"}
        if unknown:
            raise TypeError(f"as_change() got unexpected overrides: {sorted(unknown)}")
        fields.update(overrides)
        return TaskChange(self.id, self.version, old_queue=self.queue, **fields)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue, all taken at one instant of the store's clock.

    ``num_available`` counts tasks with at <= now; ``num_claimed`` tasks with at > now,
    claims > 0 and a claimant (a live lease or a delayed retry held by its worker);
    ``num_future`` the other tasks with at > now; ``max_claims`` the largest claims count.
    """

    name: str
    num_tasks: int
    num_claimed: int = 0
    num_available: int = 0
    num_future: int = 0
    max_claims: int = 0
