"""entroq-redis: EntroQ's task queue (claim + atomic modify, versioned tasks) on Redis/Valkey.

Typical use::

    async with entroq_redis.connect("redis://localhost:6379") as eq:
        await eq.modify(inserts=[TaskData("jobs", value=b"hello")])
        task = await eq.claim("jobs", duration_ms=30_000)
        ...  # do the work
        await eq.modify(deletes=[task.as_id()])
"""

from ._client import EntroQ
from ._connect import connect
from ._contract import CONTRACT_VERSION
from ._doc_types import (
    ClaimedDocs,
    Doc,
    DocChange,
    DocChangeMode,
    DocData,
    DocID,
    DocSet,
    ModifyResult,
    NamespaceStats,
)
from ._durability import Durability
from ._embedded import open_embedded
from ._errors import (
    ClaimTimeoutError,
    DependencyError,
    DependencyFailure,
    DocDependencyFailure,
    EntroQError,
    InvalidArgumentError,
    OutcomeUnknownError,
    PermissionDeniedError,
    StoreError,
    StoreUnavailableError,
    UnsafeStoreError,
)
from ._keys import Keys
from ._types import ChangeMode, ClaimSlot, QueueStats, Task, TaskChange, TaskData, TaskID
from ._worker import Worker, WorkerEvent
from ._worker_compat import EntroQWorker, StopWorker, renewing
from ._worker_docs import DocNeed, TakenDocs
from ._worker_lease import Lease, hold_lease
from ._worker_outcomes import Backoff, Finish, MoveTaskError, RetryTaskError, default_err_queue

__version__ = "0.1.0"

__all__ = [
    "CONTRACT_VERSION",
    "Backoff",
    "ChangeMode",
    "ClaimSlot",
    "ClaimTimeoutError",
    "ClaimedDocs",
    "DependencyError",
    "DependencyFailure",
    "Doc",
    "DocChange",
    "DocChangeMode",
    "DocData",
    "DocDependencyFailure",
    "DocID",
    "DocNeed",
    "DocSet",
    "Durability",
    "EntroQ",
    "EntroQError",
    "EntroQWorker",
    "Finish",
    "InvalidArgumentError",
    "Keys",
    "Lease",
    "ModifyResult",
    "MoveTaskError",
    "NamespaceStats",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "QueueStats",
    "RetryTaskError",
    "StopWorker",
    "StoreError",
    "StoreUnavailableError",
    "TakenDocs",
    "Task",
    "TaskChange",
    "TaskData",
    "TaskID",
    "UnsafeStoreError",
    "Worker",
    "WorkerEvent",
    "__version__",
    "connect",
    "default_err_queue",
    "hold_lease",
    "open_embedded",
    "renewing",
]
