"""Reads a namespace straight from the store and checks that its indexes agree with its records.

After a crash (of the store, or of the service between two calls) a half-applied script
would show here: a record without its queue entry, a queue entry without a record, a queue
listed while empty, a claim index or histogram out of step. The layout is lua/README.md
section 2, the record format section 3; this reader is independent of the scripts.
"""

from __future__ import annotations

import collections
import dataclasses
import struct

import redis

HEADER = struct.Struct(">Biqqqii")


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    version: int
    at_ms: int
    claims: int
    queue: str
    claimant: str
    value: bytes


def parse(task_id: str, raw: bytes) -> Record:
    fmt, version, at_ms, _created, _modified, claims, _attempt = HEADER.unpack_from(raw)
    if fmt != 1:
        raise ValueError(f"task {task_id}: record format {fmt}")
    offset = HEADER.size
    (length,) = struct.unpack_from(">H", raw, offset)
    queue = raw[offset + 2 : offset + 2 + length]
    offset += 2 + length
    (length,) = struct.unpack_from(">H", raw, offset)
    claimant = raw[offset + 2 : offset + 2 + length]
    offset += 2 + length
    (length,) = struct.unpack_from(">I", raw, offset)
    offset += 4 + length
    return Record(task_id, version, at_ms, claims, queue.decode(), claimant.decode(), raw[offset:])


def read_namespace(client: redis.Redis, namespace: str) -> tuple[dict[str, Record], list[str]]:
    """Every task record of the namespace, and every problem its indexes show."""
    prefix = "{" + namespace + "}:"
    keys = [k.decode() for k in client.scan_iter(match=prefix + "*", count=1000)]
    records: dict[str, Record] = {}
    problems: list[str] = []
    task_keys = [k for k in keys if k.startswith(prefix + "t:")]
    for start in range(0, len(task_keys), 1000):
        chunk = task_keys[start : start + 1000]
        for key, raw in zip(chunk, client.mget(chunk), strict=True):
            if raw is None:
                continue  # deleted between SCAN and MGET (only if something still runs)
            task_id = key[len(prefix) + 2 :]
            try:
                records[task_id] = parse(task_id, raw)
            except (ValueError, struct.error) as exc:
                problems.append(f"unreadable record {key}: {exc}")

    by_queue: dict[str, dict[str, Record]] = collections.defaultdict(dict)
    for record in records.values():
        by_queue[record.queue][record.id] = record
    listed = {q.decode() for q in client.zrange(prefix + "queues", 0, -1)}
    indexed_queues = {k[len(prefix) + 2 :] for k in keys if k.startswith(prefix + "q:")}
    if listed != set(by_queue):
        problems.append(f"queue list {sorted(listed ^ set(by_queue))[:5]} differs from the records' queues")
    if indexed_queues != set(by_queue):
        problems.append(f"queue indexes {sorted(indexed_queues ^ set(by_queue))[:5]} without records")
    for queue in indexed_queues | set(by_queue):
        tasks = by_queue.get(queue, {})
        index = {m.decode(): int(s) for m, s in client.zrange(prefix + "q:" + queue, 0, -1, withscores=True)}
        if index != {r.id: r.at_ms for r in tasks.values()}:
            wrong = sorted(set(index.items()) ^ {(r.id, r.at_ms) for r in tasks.values()})[:5]
            problems.append(f"queue {queue!r}: index and records differ: {wrong}")
        claimed_index = {
            m.decode(): int(s) for m, s in client.zrange(prefix + "c:" + queue, 0, -1, withscores=True)
        }
        held = {r.id: r.at_ms for r in tasks.values() if r.claims > 0 and r.claimant}
        if claimed_index != held:
            problems.append(
                f"queue {queue!r}: claim index differs: {sorted(set(claimed_index) ^ set(held))[:5]}"
            )
        histogram = {int(k): int(v) for k, v in client.hgetall(prefix + "h:" + queue).items()}
        counts = collections.Counter(r.claims for r in tasks.values() if r.claims > 0)
        if histogram != dict(counts):
            problems.append(f"queue {queue!r}: claims histogram {histogram} != {dict(counts)}")
        present = {int(m) for m in client.zrange(prefix + "m:" + queue, 0, -1)}
        if present != set(counts):
            problems.append(f"queue {queue!r}: claim counts {sorted(present)} != {sorted(counts)}")
    return records, problems
