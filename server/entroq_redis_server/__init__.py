"""entroq-redis's service: EntroQ's JSON API (REST and Connect, on Quart) and its gRPC API (a raw
ASGI app on its own port), on trio + Hypercorn.

Each front end (``rest``, ``connect``, ``grpc``) translates its wire format to one typed call that
``core`` runs on the ``entroq_redis`` library's public API, and back; no queue logic lives here.
Run it with ``entroq-redis serve``, or from code::

    settings = ServiceSettings(store_url="redis://localhost:6379", port=9100)
    trio.run(serve, settings)
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

if TYPE_CHECKING:
    from .authz import (
        AuthzSettings,
        PolicyAuthorizer,
        PolicyConfigError,
        check_authz_settings,
        open_authorizer,
    )
    from .core.calls import Calls
    from .core.hooks import AllowAll, Authorizer, Call
    from .core.namespaces import NAMESPACE_HEADER
    from .grpc.settings import GrpcSettings, check_grpc_settings
    from .http_app import create_app
    from .listen.listener_settings import ListenerSettings, check_listener_settings
    from .listen.listeners import BoundListeners, ListenError, bind_listeners, tls_context
    from .logs import configure_logging
    from .service import serve, serve_workers
    from .settings import ServiceSettings

# The public names load on first use (``_lazy`` says why).
_HOMES = {
    "create_app": ".http_app",
    "PolicyAuthorizer": ".authz",
    "check_authz_settings": ".authz",
    "open_authorizer": ".authz",
    "PolicyConfigError": ".authz",
    "AuthzSettings": ".authz",
    "Calls": ".core.calls",
    "AllowAll": ".core.hooks",
    "Authorizer": ".core.hooks",
    "Call": ".core.hooks",
    "ListenerSettings": ".listen.listener_settings",
    "check_listener_settings": ".listen.listener_settings",
    "BoundListeners": ".listen.listeners",
    "ListenError": ".listen.listeners",
    "bind_listeners": ".listen.listeners",
    "tls_context": ".listen.listeners",
    "NAMESPACE_HEADER": ".core.namespaces",
    "configure_logging": ".logs",
    "serve": ".service",
    "serve_workers": ".service",
    "ServiceSettings": ".settings",
    "GrpcSettings": ".grpc.settings",
    "check_grpc_settings": ".grpc.settings",
}


__getattr__ = lazy_getattr(__name__, globals(), _HOMES)


__all__ = [
    "NAMESPACE_HEADER",
    "AllowAll",
    "Authorizer",
    "AuthzSettings",
    "BoundListeners",
    "Call",
    "Calls",
    "GrpcSettings",
    "ListenError",
    "ListenerSettings",
    "PolicyAuthorizer",
    "PolicyConfigError",
    "ServiceSettings",
    "bind_listeners",
    "check_authz_settings",
    "check_grpc_settings",
    "check_listener_settings",
    "configure_logging",
    "create_app",
    "open_authorizer",
    "serve",
    "serve_workers",
    "tls_context",
]
