"""Reads the Lua scripts shipped with the package (lua/ in the source tree).

The scripts are package data of ``entroq_redis.lua``: in a wheel they sit in
``entroq_redis/lua/``; in an editable install setuptools maps that package to the
repository's ``lua/`` folder. When the package is imported straight from a source
checkout (the repository root on sys.path, bypassing the editable finder), the
scripts are read from ``lua/`` beside it.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from importlib import resources
from importlib.resources.abc import Traversable

from ._contract import SCRIPT_NAMES


@functools.cache
def _lua_folder() -> Traversable:
    try:
        return resources.files("entroq_redis.lua")
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parent.parent / "lua"


@functools.cache
def script_source(name: str) -> str:
    """The source of ``lua/<name>.lua``."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no script named {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    return _lua_folder().joinpath(f"{name}.lua").read_text(encoding="utf-8")


def script_sha(name: str) -> str:
    """The SHA1 that EVALSHA uses for the script."""
    return hashlib.sha1(script_source(name).encode()).hexdigest()
