"""entroq-redis's HTTP service: EntroQ's JSON API (REST and Connect) on Quart (trio) + Hypercorn.

It translates the wire format to calls of the ``entroq_redis`` library's public API and
back; no queue logic lives here. Run it with ``entroq-redis serve``, or from code::

    settings = ServiceSettings(store_url="redis://localhost:6379", port=9100)
    trio.run(serve, settings)
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._authz import PolicyAuthorizer, check_authz_settings, open_authorizer
    from ._authz_rego import PolicyConfigError
    from ._authz_settings import AuthzSettings
    from ._calls import Calls
    from ._hooks import AllowAll, Authorizer, Call
    from ._listener_settings import ListenerSettings, check_listener_settings
    from ._listeners import BoundListeners, ListenError, bind_listeners, tls_context
    from ._namespaces import NAMESPACE_HEADER
    from ._service import serve, serve_workers
    from ._settings import ServiceSettings
    from .grpc.settings import GrpcSettings, check_grpc_settings

# The public names load on first use (PEP 562), not with the package: the policy engine's child
# processes (``_authz_rego_child``) import one module of this package and must not pay for
# Quart, Hypercorn and the library (about 40 MB each).
_HOMES = {
    "create_app": "._app",
    "PolicyAuthorizer": "._authz",
    "check_authz_settings": "._authz",
    "open_authorizer": "._authz",
    "PolicyConfigError": "._authz_rego",
    "AuthzSettings": "._authz_settings",
    "Calls": "._calls",
    "AllowAll": "._hooks",
    "Authorizer": "._hooks",
    "Call": "._hooks",
    "ListenerSettings": "._listener_settings",
    "check_listener_settings": "._listener_settings",
    "BoundListeners": "._listeners",
    "ListenError": "._listeners",
    "bind_listeners": "._listeners",
    "tls_context": "._listeners",
    "NAMESPACE_HEADER": "._namespaces",
    "serve": "._service",
    "serve_workers": "._service",
    "ServiceSettings": "._settings",
    "GrpcSettings": ".grpc.settings",
    "check_grpc_settings": ".grpc.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


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
    "create_app",
    "open_authorizer",
    "serve",
    "serve_workers",
    "tls_context",
]
