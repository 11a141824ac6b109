"""Public names that load on first use (PEP 562), for the packages whose ``__init__`` must stay
cheap: the policy engine's child processes (``authz.rego_child``) import one module of this
package and must not pay for Quart, Hypercorn and the library (about 40 MB each)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, namespace: dict[str, Any], homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``homes`` is imported from its module
    (relative to ``package``) when first read, then kept in ``namespace`` (the module's globals).
    A module of a missing extra (Quart without ``[server]``) raises MissingExtraError, naming the
    install command."""

    def getattr_(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(home, package)
        except ModuleNotFoundError as exc:
            # Imported here, not above: importing entroq_redis loads the whole library, which
            # this module exists to spare the rego children.
            from entroq_redis._extras import EXTRA_WHAT, MissingExtraError, extra_of, install_command

            extra = extra_of(exc)
            if extra is None:
                raise
            raise MissingExtraError(
                f"{package}.{name} needs {EXTRA_WHAT[extra]}: {install_command(extra)}"
            ) from exc
        value = getattr(module, name)
        namespace[name] = value
        return value

    return getattr_
