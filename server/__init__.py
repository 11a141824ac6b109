"""entroq-redis's HTTP service: EntroQ's JSON API (REST and Connect) on Quart (trio) + Hypercorn.

It translates the wire format to calls of the ``entroq_redis`` library's public API and
back; no queue logic lives here. Run it with ``entroq-redis serve``, or from code::

    settings = ServiceSettings(store_url="redis://localhost:6379", port=9100)
    trio.run(serve, settings)
"""

from ._app import create_app
from ._authz import PolicyAuthorizer, check_authz_settings, open_authorizer
from ._authz_rego import PolicyConfigError
from ._authz_settings import AuthzSettings
from ._calls import Calls
from ._hooks import AllowAll, Authorizer, Call
from ._namespaces import NAMESPACE_HEADER
from ._service import serve, serve_workers
from ._settings import ServiceSettings

__all__ = [
    "NAMESPACE_HEADER",
    "AllowAll",
    "Authorizer",
    "AuthzSettings",
    "Call",
    "Calls",
    "PolicyAuthorizer",
    "PolicyConfigError",
    "ServiceSettings",
    "check_authz_settings",
    "create_app",
    "open_authorizer",
    "serve",
    "serve_workers",
]
