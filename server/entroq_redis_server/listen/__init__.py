"""Listening sockets and connections: binding before the store, Hypercorn's protocol code
under the service's connection rules (timeouts, per-address cap, h2c choice), TLS, and the
separate metrics listener."""
