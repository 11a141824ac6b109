"""The HTTP backend: talks to an entroq-redis service (or any EntroQ HTTP server).

Not implemented yet: it arrives with the HTTP service.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def open_http_backend(url: str, *, token: str | None = None) -> AsyncIterator[Any]:
    raise NotImplementedError("the HTTP backend arrives with the HTTP service")
    yield
