"""pytest fixtures for testing code that uses entroq-redis against a real store.

Loaded by pytest on its own once entroq-redis is installed (a ``pytest11`` entry point);
nothing starts until a test asks for a fixture:

- ``entroq_store_url`` (session): a store's URL: $ENTROQ_TEST_REDIS_URL if set, else an
  embedded Valkey started once per session (needs the embedded extra).
- ``entroq_namespace``: a fresh namespace for one test; its keys are deleted afterwards.
- ``entroq``: a connected ``EntroQ`` on the store, in ``entroq_namespace``. An async
  fixture: it runs under pytest-trio, or under anyio's pytest plugin (``@pytest.mark.anyio``)
  on asyncio or trio.
- ``entroq_service`` (session): ``entroq-redis serve`` on the session's store, on free
  ports, serving any namespace a request names (needs the server extra); connect with
  ``entroq_redis.connect(entroq_service.url, namespace=entroq_namespace)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from .._client import EntroQ
from .._connect import connect
from ._service import Service, running_service
from ._store import clear_namespace, embedded_store, fresh_namespace

STORE_URL_ENV = "ENTROQ_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def entroq_store_url() -> Iterator[str]:
    """The URL of the session's store: $ENTROQ_TEST_REDIS_URL, or an embedded Valkey."""
    external = os.environ.get(STORE_URL_ENV)
    if external:
        yield external
        return
    with embedded_store() as url:
        yield url


@pytest.fixture
def entroq_namespace(entroq_store_url: str) -> Iterator[str]:
    """A namespace no other test uses; every key of it is deleted after the test."""
    name = fresh_namespace()
    yield name
    # On a thread of its own: the test may have left an event loop running on this one (a sync
    # API built on asyncio, such as Playwright's), and anyio.run refuses to nest in it.
    _clear_on_a_thread_of_its_own(entroq_store_url, name)


def _clear_on_a_thread_of_its_own(store_url: str, namespace: str) -> None:
    failures: list[BaseException] = []

    def clear() -> None:
        try:
            anyio.run(clear_namespace, store_url, namespace)
        except BaseException as exc:  # handed to the test's thread below
            failures.append(exc)

    thread = threading.Thread(target=clear, name="entroq-clear-namespace")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


@pytest.fixture
async def entroq(entroq_store_url: str, entroq_namespace: str) -> AsyncIterator[EntroQ]:
    """A client connected to the session's store, in this test's namespace."""
    async with connect(entroq_store_url, namespace=entroq_namespace) as client:
        yield client


@pytest.fixture(scope="session")
def entroq_service(entroq_store_url: str) -> Iterator[Service]:
    """``entroq-redis serve`` on the session's store, serving every namespace (per request)."""
    with running_service(entroq_store_url, any_namespace=True) as service:
        yield service
