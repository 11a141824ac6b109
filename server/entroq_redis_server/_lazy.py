"""Public names that load on first use (PEP 562), for the packages whose ``__init__`` must stay
cheap: the policy engine's child processes (``authz.rego_child``) import one module of this
package and must not pay for Quart, Hypercorn and the library (about 40 MB each)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, namespace: dict[str, Any], homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``homes`` is imported from its module
    (relative to ``package``) when first read, then kept in ``namespace`` (the module's globals)."""

    def getattr_(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        namespace[name] = value
        return value

    return getattr_
