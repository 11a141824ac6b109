"""The Hypercorn configuration of the gRPC listener.

The HTTP listener's configuration suits short requests and long polls one per connection; a
gRPC client multiplexes all its calls on one long-lived HTTP/2 connection (reference section
3), so three settings differ:

- ``keep_alive_max_requests``: Hypercorn closes a connection with GOAWAY after 1,000 requests
  by default, and grpcio then fails the call in flight with UNAVAILABLE: here, practically never;
- ``h2_max_concurrent_streams``: every blocking claim of a Go worker process is one stream of
  its one connection; Hypercorn's default of 100 would hold the 101st back;
- the idle timeout: a connection with no stream open closes after ``--grpc-idle-timeout``
  (default an hour) without a frame, and frames (PINGs) on an idle connection keep it open
  rather than start the HTTP listener's header timer (``ConnectionClock(long_lived=True)``).
"""

from __future__ import annotations

import copy

from hypercorn.config import Config

from .settings import GrpcSettings

# "Never" for a connection: 2**62 requests.
UNLIMITED_REQUESTS = 2**62


def grpc_config(http_config: Config, settings: GrpcSettings) -> Config:
    """The gRPC listener's Config: the HTTP listener's, with the settings above."""
    config = copy.copy(http_config)
    config.keep_alive_max_requests = UNLIMITED_REQUESTS
    config.h2_max_concurrent_streams = settings.max_concurrent_streams
    config.keep_alive_timeout = settings.idle_timeout_s
    # One HTTP/2 frame of a request body may not exceed this; 16 KiB is HTTP/2's default and
    # the largest every client must accept, so bodies arrive in small chunks as they are read.
    config.h2_max_inbound_frame_size = 2**14
    return config
