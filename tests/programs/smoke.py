"""Smoke test of an installed copy: python smoke.py STORE_URL NAMESPACE -> JSON on stdout."""

from __future__ import annotations

import json
import pathlib
import sys

import trio

import entroq_redis
from entroq_redis import TaskData
from entroq_redis._scripts import _lua_folder


async def main(url: str, namespace: str) -> None:
    async with entroq_redis.connect(url, namespace=namespace) as eq:
        await eq.modify(inserts=[TaskData("smoke", value=b"\x00smoke")])
        task = await eq.claim("smoke", duration_ms=1000, timeout_s=5)
        await eq.modify(deletes=[task.as_id()])
        left = await eq.queues()
    print(
        json.dumps(
            {
                "package": entroq_redis.__file__,
                "lua": str(pathlib.Path(str(_lua_folder().joinpath("claim.lua"))).parent),
                "value": task.value.decode("latin-1"),
                "left": left,
            }
        )
    )


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
