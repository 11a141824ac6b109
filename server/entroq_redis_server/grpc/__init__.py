"""EntroQ's native gRPC API (``api.EntroQ`` on port 37706) as a small raw ASGI application.

Served by Hypercorn over h2c (plaintext HTTP/2 with prior knowledge), or HTTP/2 over TLS when the
service has TLS, on a listener of its own (``listen.listeners``), beside the HTTP API. This
package only moves bytes and headers: every call
runs through the service's ``Calls`` (authorization, namespace, metrics, the library), and
every failure is mapped by ``core.errors`` as for REST and Connect.

- ``settings``: the gRPC listener's settings (port, value schema, limits);
- ``framing``: gRPC's length-prefixed messages and ``grpc-timeout``;
- ``values``: EntroQ v1's ``google.protobuf.Value`` task values <-> the stored bytes;
- ``status``: an ``ApiError`` as gRPC trailers (``grpc-status-details-bin`` included);
- ``health``: ``grpc.health.v1`` messages;
- ``app``: the ASGI application (routing, the call, the response);
- ``listener``: the Hypercorn configuration of the gRPC listener;
- ``streams``: HTTP/2 for thousands of concurrent calls on one connection (round-robin scheduler).

Nothing is imported here: ``settings`` imports ``grpc.settings``, and that must not load the
application (the policy engine's child processes import the settings modules only).
"""
