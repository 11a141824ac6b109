"""Values are bytes end to end; queue names and IDs may hold any text."""

from __future__ import annotations

import os

import pytest

from entroq_redis import EntroQ, TaskData, TaskID

ALL_BYTES = bytes(range(256))


async def test_every_byte_value_round_trips(eq: EntroQ) -> None:
    (inserted,), _ = await eq.modify(inserts=[TaskData("bin", value=ALL_BYTES * 3)])
    assert inserted.value == ALL_BYTES * 3
    claimed = await eq.try_claim("bin")
    assert claimed is not None and claimed.value == ALL_BYTES * 3
    _, (changed,) = await eq.modify(changes=[claimed.as_change(value=ALL_BYTES[::-1])])
    assert changed.value == ALL_BYTES[::-1]
    (listed,) = await eq.tasks("bin")
    assert listed.value == ALL_BYTES[::-1]


async def test_one_mebibyte_value_round_trips(eq: EntroQ) -> None:
    value = os.urandom(1024 * 1024)
    (inserted,), _ = await eq.modify(inserts=[TaskData("big", value=value)])
    claimed = await eq.try_claim("big")
    assert claimed is not None and claimed.value == value
    assert (await eq.tasks(ids=[inserted.id]))[0].value == value


async def test_empty_value(eq: EntroQ) -> None:
    (inserted,), _ = await eq.modify(inserts=[TaskData("empty")])
    assert inserted.value == b""


@pytest.mark.parametrize(
    "name",
    [
        "with space",
        "a/b/c",
        "/leading/slash",
        "ünïcødé/队列/🚀",
        "colon:and{braces}",
        "percent%2Fencoded",
        "tab\tnl\n",
        "nul\x00byte",
    ],
)
async def test_queue_names_with_any_text(eq: EntroQ, name: str) -> None:
    (inserted,), _ = await eq.modify(inserts=[TaskData(name, value=b"x", id=f"id {name}")])
    assert inserted.queue == name and inserted.id == f"id {name}"
    assert await eq.queues(exact=[name]) == {name: 1}
    assert [t.id for t in await eq.tasks(name)] == [inserted.id]
    claimed = await eq.try_claim(name)
    assert claimed is not None and claimed.queue == name
    await eq.modify(deletes=[TaskID(claimed.id, claimed.version, name)])
    assert await eq.queues() == {}


async def test_lua_special_characters_in_names_and_ids(eq: EntroQ) -> None:
    # Characters that mean something to Lua patterns, to Redis key syntax or to our own
    # wake messages (the colon) must be plain data everywhere.
    name = "%s %d .* [^a] (x) :: {eq}: \\ '\" --[[ ]]"
    (inserted,), _ = await eq.modify(inserts=[TaskData(name, id="%d:{x}*?")])
    assert await eq.queues(prefixes=["%s"]) == {name: 1}
    assert (await eq.tasks(ids=["%d:{x}*?"]))[0].queue == name
    await eq.modify(deletes=[inserted.as_id()])
