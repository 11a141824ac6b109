"""The protocol core every front end (REST, Connect, gRPC) shares. No I/O of its own.

A request's path: a front end decodes its bytes (``wire`` for JSON, the gRPC front end for
protobuf) into one typed ``api.*`` message of ``schema``; ``calls`` runs it (namespace from
``namespaces``, authorization through the ``hooks.Authorizer``, the library call, store
metrics from ``metrics``); ``errors`` maps every failure to one :class:`errors.ApiError`
(HTTP status, gRPC code, details) that each front end only renders. ``values`` converts task
values between the store's bytes and JSON; ``generations`` tells which EntroQ HTTP client
generation is calling; ``request_ids`` and ``draining`` are per-request bookkeeping.
"""
