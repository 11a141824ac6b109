"""``entroq-redis serve``: runs the store (embedded Valkey unless --redis is given).

Until the HTTP service lands this starts the embedded store and prints its URL.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import trio

from .._embedded import open_embedded_store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the service (embedded Valkey by default)")
    parser.add_argument("--data", default="./entroq-data", help="embedded store data directory")
    parser.add_argument("--fsync", choices=["everysec", "always"], default="everysec")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    async def serve() -> None:
        async with open_embedded_store(args.data, fsync=args.fsync) as store:
            print(f"embedded store listening at {store.url} (data in {store.data_dir})", flush=True)
            await trio.sleep_forever()

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)
    return 0
