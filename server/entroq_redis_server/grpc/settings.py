"""The gRPC listener's settings (the ``serve`` command's ``--grpc-*`` flags)."""

from __future__ import annotations

import dataclasses
from typing import Literal

# EntroQ's port: its Go client, eqc, eqlink and eqjournal dial host:37706.
DEFAULT_GRPC_PORT = 37706
# The Go client's default maximum message size (docs/reference/entroq-v1-grpc-and-docs.md 3).
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# A Go client runs every blocking claim of a process on one HTTP/2 connection, one stream each;
# Hypercorn's default of 100 would make the 101st wait. Each open stream costs a trio task.
DEFAULT_MAX_CONCURRENT_STREAMS = 10_000
# A gRPC client keeps its connection for hours (grpc-go closes an idle channel's connections
# after 30 minutes itself); an hour without any stream or frame ends it.
DEFAULT_IDLE_TIMEOUT_S = 3600.0

GrpcValues = Literal["value", "bytes"]


@dataclasses.dataclass(frozen=True, slots=True)
class GrpcSettings:
    """How the gRPC listener serves.

    Attributes:
        port: Port to listen on (0: any free port) on the service's host.
        values: The schema: "value" (EntroQ v1, ``google.protobuf.Value`` task values, stored as
            their JSON text) or "bytes" (the seed's raw bytes values, v0.9-era clients).
        max_message_bytes: Larger request messages get RESOURCE_EXHAUSTED.
        max_concurrent_streams: HTTP/2 streams (calls) one connection may have open at once.
        idle_timeout_s: A connection with no stream open and no frame received this long closes.
    """

    port: int = DEFAULT_GRPC_PORT
    values: GrpcValues = "value"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


def check_grpc_settings(settings: GrpcSettings) -> None:
    """Raises ValueError, naming the flag, for settings that cannot work."""
    if not 0 <= settings.port <= 65535:
        raise ValueError("--grpc-port must be a port number (0: off; free: any free port)")
    if settings.values not in ("value", "bytes"):
        raise ValueError("--grpc-values must be value or bytes")
    if settings.max_message_bytes < 1:
        raise ValueError("--grpc-max-message-mb must be positive")
    if not 1 <= settings.max_concurrent_streams <= 2**31 - 1:
        raise ValueError("--grpc-max-streams must be between 1 and 2147483647")
    if not settings.idle_timeout_s > 0:
        raise ValueError("--grpc-idle-timeout must be a positive number of seconds")
