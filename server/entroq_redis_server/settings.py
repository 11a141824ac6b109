"""The service's settings (the ``serve`` command's flags)."""

from __future__ import annotations

import dataclasses

import entroq_redis

from .authz.settings import AuthzSettings
from .core.values import ValueEncoding
from .grpc.settings import GrpcSettings
from .listen.listener_settings import ListenerSettings
from .logs import LogFormat, LogLevel

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
    host: str = "127.0.0.1"
    port: int = 9100
    namespaces: tuple[str, ...] = ("eq",)
    test_any_namespace: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    claim_wait_cap_s: float | None = None
    allow_evicting_store: bool = False
    metrics_interval_s: float = 15.0
    metrics_max_queues: int = 1000
    graceful_timeout_s: float = 10.0
    workers: int = 1
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    authz: AuthzSettings = dataclasses.field(default_factory=AuthzSettings)
    value_encoding_default: ValueEncoding = "base64"
    durability: entroq_redis.Durability | None = None
    listeners: ListenerSettings = dataclasses.field(default_factory=ListenerSettings)
    grpc: GrpcSettings | None = None
    ui: bool = True
    ui_refresh_s: float = DEFAULT_UI_REFRESH_S

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
