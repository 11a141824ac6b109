"""Test your own workers against a real store, in one line.

Context managers (each starts real processes and stops them on exit):

- ``embedded_store()`` (sync) / ``open_store()`` (async): an embedded Valkey on a free
  loopback port (the ``embedded`` extra); the first yields its URL, the second the store.
- ``open_entroq(url=None)`` (async): a connected ``EntroQ`` on a fresh namespace, of its
  own embedded store when no URL is given.
- ``running_service(store_url, *serve_args)`` (sync): ``entroq-redis serve`` as a subprocess
  on free ports, returned once /readyz answers 200 (the ``server`` extra); it yields a
  ``Service`` with ``url``, ``grpc_url``, ``metrics_url``. ``start_service`` is the same
  without the ``with``.

And a pytest plugin (``entroq_redis.testing.pytest_plugin``, loaded on its own by pytest):
fixtures ``entroq_store_url``, ``entroq_namespace``, ``entroq``, ``entroq_service``.

Nothing here imports the store binary or the service until it is used, so this module
imports in a client-only install. There is no fakeredis option: see docs/testing.md.
"""

from ._service import Service, ServiceStartError, running_service, serve_command, start_service
from ._store import clear_namespace, embedded_store, fresh_namespace, open_entroq, open_store

__all__ = [
    "Service",
    "ServiceStartError",
    "clear_namespace",
    "embedded_store",
    "fresh_namespace",
    "open_entroq",
    "open_store",
    "running_service",
    "serve_command",
    "start_service",
]
