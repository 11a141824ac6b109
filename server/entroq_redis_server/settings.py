"""The service's settings; each field with an ``Option`` is one of the ``serve`` command's
flags (see ``options``: its default and help are declared here only)."""

from __future__ import annotations

import dataclasses
from typing import get_args

import entroq_redis

from .authz.settings import AuthzSettings
from .core.values import ENCODINGS, ValueEncoding
from .grpc.settings import GrpcSettings
from .listen.listener_settings import ListenerSettings
from .logs import LogFormat, LogLevel
from .options import MIB, Option, setting

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_UI_REFRESH_S = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How one service process runs.

    Attributes:
        store_url: The Redis/Valkey store (redis://, rediss://, unix://), or any node of a
            Redis/Valkey Cluster (redis+cluster://, rediss+cluster://).
        host: Address to listen on.
        port: Port to listen on (0 picks a free one).
        namespaces: Namespaces served; the first is the default (see ``core.namespaces``).
        test_any_namespace: Serve any namespace named by the request header (tests only).
        max_body_bytes: Larger request bodies get 413.
        claim_wait_cap_s: Longest a blocking claim waits, whatever the client asks (None: no cap).
        allow_evicting_store: Run on a store whose maxmemory-policy may evict keys.
        metrics_interval_s: ``entroq_queue_size`` is re-read from the store at most this often.
        metrics_max_queues: ``entroq_queue_size`` covers at most this many queues, the largest
            (ties by name); 0: every queue.
        graceful_timeout_s: On shutdown, in-flight requests get this long to finish.
        workers: Number of service processes sharing the listening socket.
        log_level: Least severe log records written (each worker process applies it).
        log_format: "text" lines or "json" objects, one per line (see ``logs``).
        authz: How calls are authorized (``--authz``; see ``authz``).
        value_encoding_default: How task values travel for callers whose client generation
            nothing in the request reveals: "base64" (seed era) or "json" (see ``core.generations``).
        durability: Replica (and AOF) acknowledgements every claim and modify waits for
            (``--wait-replicas``, ``--wait-timeout-ms``, ``--wait-fsync``); None: no waiting.
        listeners: TLS, connection timeouts and caps, h2c, the metrics listener (see
            ``listen.listener_settings``).
        grpc: The gRPC listener (``grpc.settings``), on ``host``; None: no gRPC.
        ui: Serve the dashboard at ``/ui`` (``--ui``/``--no-ui``; see ``ui``).
        ui_refresh_s: How often the dashboard's live queue table re-reads the store's queue
            stats (once per interval for all open pages together).
    """

    store_url: str
    host: str = setting("127.0.0.1", Option("--host", "address to listen on (default %(default)s)"))
    port: int = setting(9100, Option("--port", "port (default %(default)s; 0 = any free)"))
    namespaces: tuple[str, ...] = setting(
        ("eq",),
        Option(
            "--namespace",
            "namespace to serve (repeatable; the first is the default; default %(default)s); "
            "requests pick one with the EntroQ-Namespace header",
            kind="list",
            metavar="NAME",
        ),
    )
    # Testing only, so not in --help and refused unless ENTROQ_REDIS_TESTING=1: serve any
    # namespace a request names in its EntroQ-Namespace header (the suite gives each test its own).
    test_any_namespace: bool = setting(False, Option("--test-any-namespace", "", kind="switch", hidden=True))
    max_body_bytes: int = setting(
        DEFAULT_MAX_BODY_BYTES,
        Option(
            "--max-body-mb", "request body limit in MiB (413 beyond)", metavar="MIB", type=float, scale=MIB
        ),
    )
    claim_wait_cap_s: float | None = setting(
        None,
        Option(
            "--claim-wait-cap",
            "longest a blocking claim waits whatever the client asks (default: no cap; 504 when it ends)",
            metavar="SECONDS",
            type=float,
        ),
    )
    allow_evicting_store: bool = setting(
        False,
        Option(
            "--allow-evicting-store",
            "run even if the store's maxmemory-policy may evict tasks",
            kind="switch",
        ),
    )
    metrics_interval_s: float = setting(
        15.0,
        Option("--metrics-interval", "seconds between queue size refreshes (metrics)", metavar="SECONDS"),
    )
    metrics_max_queues: int = setting(
        1000,
        Option(
            "--metrics-max-queues",
            "queues covered by entroq_queue_size: the largest (ties by name), and "
            "entroq_queue_size_omitted_queues counts the rest (default %(default)s; 0 = all)",
            metavar="N",
        ),
    )
    graceful_timeout_s: float = setting(
        10.0,
        Option("--graceful-timeout", "seconds in-flight requests get at shutdown", metavar="SECONDS"),
    )
    workers: int = setting(1, Option("--workers", "service processes sharing the port", metavar="N"))
    log_level: LogLevel = setting(
        "info",
        Option(
            "--log-level",
            "least severe log messages written to stderr (default %(default)s)",
            choices=get_args(LogLevel),
        ),
    )
    log_format: LogFormat = setting(
        "text",
        Option(
            "--log-format",
            "text lines, or json: one JSON object per line (time, level, logger, message)",
            choices=get_args(LogFormat),
        ),
    )
    authz: AuthzSettings = dataclasses.field(default_factory=AuthzSettings)
    value_encoding_default: ValueEncoding = setting(
        "base64",
        Option(
            "--value-encoding-default",
            "task values for EntroQ clients whose generation a request does not reveal: base64 "
            "(seed-era clients) or json (PyPI entroq 0.12+); see docs/migrating.md",
            choices=ENCODINGS,
        ),
    )
    durability: entroq_redis.Durability | None = None
    listeners: ListenerSettings = dataclasses.field(default_factory=ListenerSettings)
    grpc: GrpcSettings | None = None
    ui: bool = setting(
        True,
        Option(
            "--ui",
            "serve the web dashboard at /ui on the HTTP port (default on; --no-ui turns it off)",
            kind="toggle",
        ),
    )
    ui_refresh_s: float = setting(
        DEFAULT_UI_REFRESH_S,
        Option(
            "--ui-refresh",
            "how often the dashboard's live queue table re-reads the queue stats, once for all "
            "open pages (default %(default)s)",
            metavar="SECONDS",
        ),
    )

    @property
    def bind(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def grpc_bind(self) -> str | None:
        """Where the gRPC listener binds (None: no gRPC listener)."""
        if self.grpc is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc.port}"

    @property
    def metrics_bind(self) -> str | None:
        """Where the metrics listener binds (None: ``/metrics`` is served on ``bind``)."""
        port = self.listeners.metrics_port
        if port is None:
            return None
        host = self.listeners.metrics_host or self.host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{port}"
