"""``entroq-redis serve``: EntroQ's HTTP API, on the embedded Valkey unless --redis is given.

Prints the URL it listens on (``entroq-redis listening on http://HOST:PORT ...``, https with
TLS) once it accepts connections, and the metrics listener's (``entroq-redis metrics on
URL/metrics``) when it has one. The listening sockets are bound before the embedded store
starts: a port in use is one line on stderr and exit status 1, with no store started.
SIGINT/SIGTERM shut down cleanly: waiting claims return (503), in-flight requests finish, the
library closes, and the embedded store stops last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import trio
from entroq_redis_server.settings import ServiceSettings

from .._durability import Durability
from .._embedded import open_embedded_store
from .._errors import EntroQError
from .._extras import MissingExtraError, require
from ._options import version_parent
from ._secret_options import file_argument, url_argument
from ._serve_authz import AuthzSetupError, add_authz_options, authz_settings
from ._serve_check import check_serve_args
from ._serve_config import CONFIG_ENV, annotate_help, apply_layers
from ._serve_grpc import GrpcSetupError, add_grpc_options, grpc_settings
from ._serve_listeners import ListenerSetupError, add_listener_options, bind_listeners, listener_settings
from ._serve_logging import configure_logging
from ._serve_options import add_setting_options, settings_from_args

DEFAULT_DATA_DIR = "./entroq-data"
_DURABILITY_FIELDS = {field.name: field for field in dataclasses.fields(Durability)}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[version_parent()],
        help="run the HTTP service (embedded Valkey by default)",
        description="Serve EntroQ's HTTP JSON API (REST and Connect) and gRPC API on a Redis/Valkey "
        "store. Every option can also be set by the environment variable named in its help, or in "
        "the TOML file --config names (keys: the option names, e.g. max-body-mb = 20); the command "
        "line wins over the environment, which wins over the file.",
        # Exact option names only: where each setting came from is read off the command line.
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"read settings from this TOML file (default ${CONFIG_ENV}); see above",
    )
    add_setting_options(parser, ServiceSettings, "log_level", "log_format", "host", "port")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--redis",
        metavar="URL",
        help="use this store (redis://, rediss://, unix://) or cluster (redis+cluster://HOST:PORT, "
        "any node) instead of the embedded Valkey; default $ENTROQ_REDIS_URL. Every local user "
        "can read command lines (ps): give a URL holding a password in $ENTROQ_REDIS_URL or "
        "--redis-file",
        **url_argument("ENTROQ_REDIS_URL or --redis-file FILE"),
    )
    store.add_argument("--redis-file", dest="redis", **file_argument("the --redis URL"))
    store.add_argument(
        "--data", metavar="DIR", help=f"embedded store data directory (default {DEFAULT_DATA_DIR})"
    )
    add_setting_options(parser, ServiceSettings, "namespaces", "workers")
    parser.add_argument(
        "--fsync", choices=["everysec", "always"], default="everysec", help="embedded store AOF fsync"
    )
    add_setting_options(
        parser,
        ServiceSettings,
        "max_body_bytes",
        "claim_wait_cap_s",
        "allow_evicting_store",
        "metrics_interval_s",
        "metrics_max_queues",
        "graceful_timeout_s",
        "value_encoding_default",
    )
    # The library's Durability, which has no "no waiting" value of its own (None is).
    parser.add_argument(
        "--wait-replicas",
        type=int,
        default=0,
        metavar="N",
        help="after each claim and modify, wait until N replicas have it (WAIT); not confirmed in "
        "time = 503 with reason outcome_unknown (default 0: no waiting)",
    )
    parser.add_argument(
        "--wait-fsync",
        action="store_true",
        help="wait until the primary (and the --wait-replicas replicas) fsynced it to their AOF "
        "(WAITAOF; Valkey, Redis >= 7.2)",
    )
    parser.add_argument(
        "--wait-timeout-ms",
        type=int,
        default=_DURABILITY_FIELDS["timeout_ms"].default,
        metavar="MS",
        help="how long --wait-replicas / --wait-fsync wait (default %(default)s)",
    )
    add_setting_options(parser, ServiceSettings, "ui", "ui_refresh_s", "test_any_namespace")
    add_authz_options(parser)
    add_listener_options(parser)
    add_grpc_options(parser)
    annotate_help(parser)
    parser.configure = apply_layers
    parser.set_defaults(handler=run)


@contextlib.asynccontextmanager
async def _store_url(args: argparse.Namespace) -> AsyncIterator[str]:
    if args.redis:
        yield args.redis
        return
    async with open_embedded_store(args.data, fsync=args.fsync, owner="entroq-redis serve") as store:
        # The address without the password: stdout ends up in logs.
        print(
            f"embedded store at {store.address} (valkey-server PID {store.pid}; data in {store.data_dir}, "
            f"password in {store.password_file})",
            flush=True,
        )
        yield store.url


def run(args: argparse.Namespace) -> int:
    missing = _missing_extra(args)
    if missing:
        print(missing, file=sys.stderr)
        return 1
    from entroq_redis_server import serve, serve_workers

    problem = check_serve_args(args)
    if problem:
        print(f"entroq-redis serve: {problem}", file=sys.stderr)
        return 2
    args.data = args.data or DEFAULT_DATA_DIR
    configure_logging(args.log_level, args.log_format)
    try:
        authz = authz_settings(args)
    except AuthzSetupError as exc:
        print(f"entroq-redis serve: {exc}", file=sys.stderr)
        return exc.status
    try:
        durability = _durability(args)
    except ValueError as exc:
        print(f"entroq-redis serve: {exc}", file=sys.stderr)
        return 2
    try:
        grpc = grpc_settings(args)
    except GrpcSetupError as exc:
        print(f"entroq-redis serve: {exc}", file=sys.stderr)
        return 2
    try:
        listeners = listener_settings(args)
        # Bound before the store starts: a port in use stops here, with nothing started.
        bound = bind_listeners(args.host, args.port, listeners, grpc)
    except ListenerSetupError as exc:
        print(f"entroq-redis serve: {exc}", file=sys.stderr)
        return exc.status

    async def main() -> None:
        async with _store_url(args) as url:
            settings = settings_from_args(
                ServiceSettings,
                args,
                store_url=url,
                authz=authz,
                durability=durability,
                listeners=listeners,
                grpc=grpc,
            )
            runner = serve if args.workers == 1 else serve_workers
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(partial(runner, settings, listeners=bound))
                for bind in binds:
                    print(
                        f"entroq-redis listening on {bind} (namespace {settings.namespaces[0]}, "
                        f"{args.workers} worker{'s' if args.workers > 1 else ''})",
                        flush=True,
                    )
                for url in bound.grpc_urls(listeners.tls):
                    assert grpc is not None  # a gRPC listener was bound for it
                    print(f"entroq-redis gRPC listening on {url} ({grpc.values} schema)", flush=True)
                for url in bound.metrics_urls(listeners.scheme):
                    print(f"entroq-redis metrics on {url}", flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        error = _entroq_error(exc)
        if error is None:
            raise
        # A setup problem (unsafe or unusable store): say what, without a traceback.
        print(f"entroq-redis serve: {error}", file=sys.stderr)
        return 1
    finally:
        bound.close()
    return 0


def _missing_extra(args: argparse.Namespace) -> str | None:
    """The install command serve needs first, in one line (None: everything is installed).
    The service itself runs in this process only after this: a client-only install (no
    ``[server]``) gets this line, not an ImportError from the service's modules."""
    try:
        require("server", "entroq-redis serve")
        if not args.redis:
            require("embedded", "entroq-redis serve without --redis")
        if args.authz == "rego":
            require("rego", "entroq-redis serve --authz rego")
    except MissingExtraError as exc:
        return str(exc)
    return None


def _durability(args: argparse.Namespace) -> Durability | None:
    """The --wait-* flags as the library's Durability (None: no waiting)."""
    if args.wait_replicas == 0 and not args.wait_fsync:
        return None
    try:
        return Durability(replicas=args.wait_replicas, timeout_ms=args.wait_timeout_ms, fsync=args.wait_fsync)
    except ValueError as exc:
        raise ValueError(f"--wait-replicas/--wait-timeout-ms: {exc}") from None


def _entroq_error(exc: BaseException) -> EntroQError | None:
    """The EntroQError behind ``exc`` (task groups wrap it in exception groups), if any."""
    if isinstance(exc, EntroQError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _entroq_error(exc.exceptions[0])
    return None
