"""Running the service: Hypercorn's trio worker, graceful shutdown, several worker processes.

Shutdown order (SIGINT/SIGTERM, or the caller's trigger): waiting claims are cancelled and
answer 503 at once; the listeners stop accepting and in-flight requests get
``graceful_timeout_s`` to finish; then the library clients close. (The embedded store, when
the CLI started one, stops after all of this: it is opened outside ``serve``.)

The listening sockets are bound before the store is touched (``bind_listeners``; the CLI binds
before it even starts the embedded store), and connections are served by ``listen.listeners``.
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
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

import entroq_redis

from .authz.authorizer import open_authorizer
from .core.calls import Calls
from .core.draining import Draining
from .core.hooks import Authorizer
from .core.metrics import MULTIPROC_ENV, Metrics
from .core.namespaces import open_namespaces
from .grpc.app import create_grpc_app
from .grpc.listener import grpc_config
from .http_app import create_app
from .listen.listeners import BoundListeners, GrpcListener, bind_listeners, run_listeners
from .listen.metrics_app import create_metrics_app
from .logs import configure_logging
from .settings import ServiceSettings

log = logging.getLogger(__name__)

ShutdownTrigger = Callable[[], Awaitable[None]]


def hypercorn_config(settings: ServiceSettings) -> Config:
    listeners = settings.listeners
    config = Config()
    config.bind = [settings.bind]
    config.graceful_timeout = settings.graceful_timeout_s
    # Hypercorn's idle timer (the connection clock in ``listen.connection`` enforces it too).
    config.keep_alive_timeout = listeners.idle_timeout_s
    # The TLS handshake is part of reading the first request's header (``listen.connection``).
    config.ssl_handshake_timeout = listeners.header_timeout_s
    # Not Hypercorn's read_timeout: it bounds every read, and a long-poll claim sends nothing
    # while it waits (the connection clock and Quart's BODY_TIMEOUT bound the reads that matter).
    config.read_timeout = None
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
    listeners: BoundListeners | None = None,
    shutdown_trigger: ShutdownTrigger | None = None,
    authorizer: Authorizer | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves EntroQ's HTTP API until the shutdown trigger returns.

    Args:
        settings: How to run.
        listeners: Already bound listening sockets (the CLI binds before it starts a store;
            worker processes share the parent's); default: bound here, closed on return.
        shutdown_trigger: Returns to start a graceful shutdown; default: SIGINT/SIGTERM.
        authorizer: The per-call authorization hook (default: the one ``settings.authz`` asks
            for; allow all with mode none).
        task_status: Started with the list of URLs the service listens on.

    Raises:
        entroq_redis.UnsafeStoreError: the store may evict keys (and that was not allowed).
        ListenError: ``listeners`` not given, and an address cannot be bound.
    """
    with contextlib.ExitStack() as stack:
        trigger = shutdown_trigger or stack.enter_context(signal_trigger())
        if listeners is None:
            listeners = bind_listeners(settings)
            stack.callback(listeners.close)
        await _serve(settings, listeners, trigger, authorizer, task_status)


async def _serve(
    settings: ServiceSettings,
    listeners: BoundListeners,
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
        metrics_app = create_metrics_app(calls) if listeners.metrics else None
        grpc = None
        if settings.grpc is not None and listeners.grpc:
            grpc_app = create_grpc_app(settings.grpc, calls)
            grpc = GrpcListener(
                wrap_app(cast(ASGIFramework, grpc_app), 0, "asgi"),
                grpc_config(config, settings.grpc),
                settings.grpc.idle_timeout_s,
            )
        await run_listeners(
            config,
            settings.listeners,
            listeners,
            wrap_app(app, config.wsgi_max_body_size, None),
            wrap_app(cast(ASGIFramework, metrics_app), 0, "asgi") if metrics_app else None,
            shutdown,
            task_status=task_status,
            grpc=grpc,
        )


def _worker_main(settings: ServiceSettings, listeners: BoundListeners) -> None:
    """Entry point of one worker process (spawned: imports fresh, sees the metrics dir)."""
    configure_logging(settings.log_level, settings.log_format, with_process=True)
    trio.run(lambda: serve(settings, listeners=listeners))


async def serve_workers(
    settings: ServiceSettings,
    *,
    listeners: BoundListeners | None = None,
    shutdown_trigger: ShutdownTrigger | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Runs ``settings.workers`` service processes on one listening socket (``listeners``, or
    bound here and closed on return).

    The processes share a prometheus-client multiprocess directory (created here, removed
    on exit), so any worker's /metrics reports the whole service. Each worker shuts down
    gracefully on SIGTERM; this parent sends it on its own shutdown and waits for them.
    """
    with contextlib.ExitStack() as stack:
        trigger = shutdown_trigger or stack.enter_context(signal_trigger())
        if listeners is None:
            listeners = bind_listeners(settings)
            stack.callback(listeners.close)
        await _supervise(settings, listeners, trigger, task_status)


async def _supervise(
    settings: ServiceSettings,
    listeners: BoundListeners,
    trigger: ShutdownTrigger,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    # The sockets listen already: connections arriving before the workers start wait in the backlog.
    binds = listeners.urls(settings.listeners.scheme)
    metrics_dir = tempfile.mkdtemp(prefix="entroq-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    try:
        for _ in range(settings.workers):
            process = context.Process(target=_worker_main, args=(settings, listeners), daemon=False)
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
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(metrics_dir, ignore_errors=True)
