"""Authorization: the service's one entry point is :func:`open_authorizer` (the ``Authorizer``
for ``--authz none|opahttp|rego``); :func:`check_authz_settings` fails early on settings that
cannot work.

Inside: ``authorizer`` (what each call asks of the policy, in which order), ``input``
(credentials and the policy's input document), ``decision`` (reading a policy's answer),
``listing`` and ``modify`` (listings filtered, moves re-checked by the store), ``sessions``,
``audit``, and the engines: ``opa`` (an OPA server over HTTP) and ``rego`` (rego-cpp in child
processes: ``rego_processes``, ``rego_channel``, ``rego_child``).

The names load on first use (PEP 562): a rego child process runs ``authz.rego_child`` and must
not import the service (Quart, Hypercorn, the library) with this package.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .authorizer import PolicyAuthorizer, check_authz_settings, open_authorizer
    from .rego import PolicyConfigError
    from .settings import AuthzSettings

_HOMES = {
    "PolicyAuthorizer": ".authorizer",
    "check_authz_settings": ".authorizer",
    "open_authorizer": ".authorizer",
    "PolicyConfigError": ".rego",
    "AuthzSettings": ".settings",
}


__getattr__ = lazy_getattr(__name__, globals(), _HOMES)


__all__ = [
    "AuthzSettings",
    "PolicyAuthorizer",
    "PolicyConfigError",
    "check_authz_settings",
    "open_authorizer",
]
