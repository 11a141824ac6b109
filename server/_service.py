"""Running the service: Hypercorn's trio worker, graceful shutdown, several worker processes.

Shutdown order (SIGINT/SIGTERM, or the caller's trigger): waiting claims are cancelled and
answer 503 at once; Hypercorn stops accepting and gives in-flight requests
``graceful_timeout_s`` to finish; then the library clients close. (The embedded store, when
the CLI started one, stops after all of this: it is opened outside ``serve``.)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

import entroq_redis

from ._app import create_app
from ._authz import open_authorizer
from ._calls import Calls
from ._draining import Draining
from ._hooks import Authorizer
from ._metrics import MULTIPROC_ENV, Metrics
from ._namespaces import open_namespaces
from ._settings import ServiceSettings

log = logging.getLogger(__name__)

ShutdownTrigger = Callable[[], Awaitable[None]]


def hypercorn_config(settings: ServiceSettings) -> Config:
    config = Config()
    config.bind = [settings.bind]
    config.graceful_timeout = settings.graceful_timeout_s
    # Workers (service processes) keep connections alive between a client's requests.
    config.keep_alive_timeout = 75
    # Hypercorn's default accept backlog is 100. Long-poll claims hold thousands of
    # connections, and waiters reconnecting at once (after a restart, a deploy) arrive in bursts;
    # with a full accept queue and SYN cookies on, Linux answers their first data with a reset.
    # The kernel caps this at net.core.somaxconn.
    config.backlog = 4096
    config.accesslog = None
    # Hypercorn's messages go through the standard logging tree (configured by the CLI), once.
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


@contextlib.contextmanager
def signal_trigger() -> Iterator[ShutdownTrigger]:
    """A shutdown trigger that returns on the first SIGINT or SIGTERM.

    The signals stay caught for the whole block, so a second one during the graceful
    shutdown cannot kill the process halfway (the graceful timeout bounds the shutdown).
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def first_signal() -> None:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

        yield first_signal


async def serve(
    settings: ServiceSettings,
    *,
    sockets: Sockets | None = None,
    shutdown_trigger: ShutdownTrigger | None = None,
    authorizer: Authorizer | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves EntroQ's HTTP API until the shutdown trigger returns.

    Args:
        settings: How to run.
        sockets: Already bound listening sockets (worker processes share the parent's).
        shutdown_trigger: Returns to start a graceful shutdown; default: SIGINT/SIGTERM.
        authorizer: The per-call authorization hook (default: the one ``settings.authz`` asks
            for; allow all with mode none).
        task_status: Started with the list of URLs the service listens on.

    Raises:
        entroq_redis.UnsafeStoreError: the store may evict keys (and that was not allowed).
    """
    with contextlib.ExitStack() as stack:
        trigger = shutdown_trigger or stack.enter_context(signal_trigger())
        await _serve(settings, sockets, trigger, authorizer, task_status)


async def _serve(
    settings: ServiceSettings,
    sockets: Sockets | None,
    trigger: ShutdownTrigger,
    authorizer: Authorizer | None,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    metrics = Metrics(settings.metrics_interval_s, settings.metrics_max_queues)
    draining = Draining()
    async with (
        # The policy loads first: a bad one stops the service before it touches the store.
        open_authorizer(settings.authz, metrics) as configured_authorizer,
        open_namespaces(
            settings.store_url,
            settings.namespaces,
            any_namespace=settings.test_any_namespace,
            allow_evicting_store=settings.allow_evicting_store,
            durability=settings.durability,
        ) as namespaces,
    ):
        authorizer = authorizer or configured_authorizer
        try:
            # Fail now on an unsafe store; an unreachable one may come back (see /readyz).
            async with namespaces.client(namespaces.default) as client:
                await client.ping()
        except entroq_redis.StoreUnavailableError as exc:
            log.warning("the store is not reachable yet (requests get 503 until it is): %s", exc)
        calls = Calls(
            namespaces, metrics, draining, authorizer=authorizer, claim_wait_cap_s=settings.claim_wait_cap_s
        )
        app = create_app(settings, calls)

        async def shutdown() -> None:
            await trigger()
            draining.begin()

        config = hypercorn_config(settings)
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, None),
            config,
            sockets=sockets,
            shutdown_trigger=shutdown,
            task_status=task_status,
        )


def _worker_main(settings: ServiceSettings, sockets: Sockets) -> None:
    """Entry point of one worker process (spawned: imports fresh, sees the metrics dir)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    trio.run(lambda: serve(settings, sockets=sockets))


async def serve_workers(
    settings: ServiceSettings,
    *,
    shutdown_trigger: ShutdownTrigger | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Runs ``settings.workers`` service processes on one listening socket.

    The processes share a prometheus-client multiprocess directory (created here, removed
    on exit), so any worker's /metrics reports the whole service. Each worker shuts down
    gracefully on SIGTERM; this parent sends it on its own shutdown and waits for them.
    """
    with contextlib.ExitStack() as stack:
        trigger = shutdown_trigger or stack.enter_context(signal_trigger())
        await _supervise(settings, trigger, task_status)


async def _supervise(
    settings: ServiceSettings, trigger: ShutdownTrigger, task_status: trio.TaskStatus[list[str]]
) -> None:
    config = hypercorn_config(settings)
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        # Listening before the workers start: early connections wait in the backlog.
        sock.listen(config.backlog)
    binds = [f"http://{_address(sock.getsockname())}" for sock in sockets.insecure_sockets]
    metrics_dir = tempfile.mkdtemp(prefix="entroq-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    try:
        for _ in range(settings.workers):
            process = context.Process(target=_worker_main, args=(settings, sockets), daemon=False)
            process.start()
            processes.append(process)
        task_status.started(binds)
        async with trio.open_nursery() as nursery:
            exited = trio.Event()

            async def watch(process: Any) -> None:
                await trio.to_thread.run_sync(process.join, abandon_on_cancel=True)
                exited.set()

            for process in processes:
                nursery.start_soon(watch, process)

            async def until_trigger() -> None:
                await trigger()
                exited.set()

            nursery.start_soon(until_trigger)
            await exited.wait()  # shutdown asked, or a worker died: stop them all
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)
            await trio.to_thread.run_sync(lambda: [p.join() for p in processes])
            nursery.cancel_scope.cancel()
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        for sock in sockets.insecure_sockets:
            sock.close()
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _address(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
