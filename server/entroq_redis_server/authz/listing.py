"""Filtering a listing (Queues, QueueStats, Tasks by IDs) by what the caller may READ.

Asking the policy about every listed name in one input made a listing of 5,000 foreign
queues cost seconds and a gigabyte of decision memory. The cost here follows what the
caller may see, in two ways, both exactly as strict as asking per name, and both fail closed
(a denial that cannot be pinned on an asked entry shows nothing of that batch):

1. The policy states the caller's read grants (``readable`` in its answer: a list of
   ``{"exact": q}`` / ``{"prefix": p}`` specs). The service asks about exactly those specs
   as READ entries in one decision; each spec the policy grants shows the names it covers
   (``exact`` equal, or the name starting with ``prefix``), and a name no granted spec
   covers is not shown. A policy's ``readable`` can therefore only hide names: a spec the
   policy does not also grant on its own is dropped. ``deploy/authz/policy.rego`` defines it;
   a policy that defines ``readable`` promises it lists every grant that lets the caller
   READ (a grant left out hides its queues from listings, never reveals anything).
2. Otherwise (EntroQ's own policies): by path prefix, top down. The distinct prefixes of
   the names at each ``/`` (``/a/``, then ``/a/b/``, ...) are asked as
   ``{"prefix": P, "actions": ["READ"]}`` entries; a granted prefix shows every name under
   it at once (a prefix entry asks for every queue under it, EntroQ's meaning of a prefix
   in the input), and only the names under denied prefixes are asked about at the next
   level; a name with no deeper prefix, or alone under its prefix, is asked exactly. Names
   a caller may read cost a few decisions per prefix; names it may not read still cost an
   exact entry each, in bounded batches.

Every decision's input is kept under the service's input limit (batches by count and size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence

from .decision import Decision, read_specs
from .input import READ, QueueEntry

# One listing decision asks about at most this many entries (and at most the byte budget
# the service passes in): small inputs keep a decision's memory small.
LISTING_BATCH = 25
# Per entry, besides its name: {"exact":"","actions":["READ"]}, and a margin for escapes.
ENTRY_OVERHEAD_BYTES = 48

Decide = Callable[[Sequence[QueueEntry]], Awaitable[Decision]]


class Unauthenticated(Exception):
    """The policy says the caller's credentials are bad (401)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ListingFilter:
    """Asks ``decide`` about batches of at most LISTING_BATCH entries and ``batch_bytes``."""

    decide: Decide
    batch_bytes: int

    async def readable(self, names: Iterable[str]) -> set[str]:
        """The names among ``names`` the caller may READ.

        Raises:
            Unauthenticated: the policy answered ``authenticated: false``.
            PolicyFailure: the policy's ``readable`` is malformed, or the engine failed.
        """
        wanted = sorted(set(names))
        first = await self.decide([])
        if first.authenticated is False:
            raise Unauthenticated()
        specs = read_specs(first.readable)
        if specs is not None:
            granted = await self._granted([QueueEntry(exact=e, prefix=p, actions=(READ,)) for e, p in specs])
            return covered(wanted, granted)
        if not wanted:
            return set()
        return await self._by_prefix(wanted)

    async def _by_prefix(self, wanted: list[str]) -> set[str]:
        shown: set[str] = set()
        undecided = wanted
        depth = 1
        while undecided:
            groups: dict[str, list[str]] = {}
            exact: list[str] = []
            for name in undecided:
                prefix = path_prefix(name, depth)
                if prefix is None:
                    exact.append(name)
                else:
                    groups.setdefault(prefix, []).append(name)
            for prefix, under in list(groups.items()):
                if len(under) == 1:  # one name: asking it exactly is final and no dearer
                    exact += under
                    del groups[prefix]
            entries = [QueueEntry(prefix=p, actions=(READ,)) for p in groups]
            entries += [QueueEntry(exact=n, actions=(READ,)) for n in exact]
            granted = await self._granted(entries)
            undecided = []
            for item in entries:
                under = groups[item.prefix] if item.prefix else [item.exact]
                if item in granted:
                    shown.update(under)
                elif item.prefix:
                    undecided += under
            depth += 1
        return shown

    async def _granted(self, entries: Sequence[QueueEntry]) -> set[QueueEntry]:
        granted: set[QueueEntry] = set()
        for batch in batches(entries, self.batch_bytes):
            decided = granted_entries(await self.decide(batch), batch)
            if decided is None:
                raise Unauthenticated()
            granted |= decided
        return granted


def path_prefix(name: str, depth: int) -> str | None:
    """The name up to and including its ``depth``-th ``/``, if that is shorter than the name."""
    end = -1
    for _ in range(depth):
        end = name.find("/", end + 1)
        if end < 0:
            return None
    return name[: end + 1] if end + 1 < len(name) else None


def batches(entries: Sequence[QueueEntry], batch_bytes: int) -> list[list[QueueEntry]]:
    """Entries in order, cut into batches of at most LISTING_BATCH entries and about
    ``batch_bytes`` of input (a single entry is never cut)."""
    result: list[list[QueueEntry]] = []
    current: list[QueueEntry] = []
    size = 0
    for item in entries:
        cost = len(item.exact.encode()) + len(item.prefix.encode()) + ENTRY_OVERHEAD_BYTES
        if current and (len(current) >= LISTING_BATCH or size + cost > batch_bytes):
            result.append(current)
            current, size = [], 0
        current.append(item)
        size += cost
    if current:
        result.append(current)
    return result


def granted_entries(decision: Decision, asked: Sequence[QueueEntry]) -> set[QueueEntry] | None:
    """The asked entries the decision grants, or None when the credentials are bad (401).

    A denial that cannot be pinned on asked entries (a failed entry that is none of them,
    or a denial with nothing failed) grants nothing: fail closed.
    """
    if decision.permits:
        return set(asked)
    if decision.authenticated is False:
        return None
    by_key = {(e.exact, e.prefix): e for e in asked}
    refused = set()
    for failed in decision.failed:
        match = by_key.get((failed.exact, failed.prefix))
        if match is None:
            return set()
        refused.add(match)
    if not decision.failed:
        return set()
    return set(asked) - refused


def covered(names: Iterable[str], granted: Iterable[QueueEntry]) -> set[str]:
    """The names an exact entry equals or a prefix entry starts."""
    exact = {e.exact for e in granted if e.exact}
    prefixes = tuple(sorted({e.prefix for e in granted if not e.exact}))
    return {n for n in names if n in exact or (prefixes and n.startswith(prefixes))}
