"""``serve``'s options from the service's settings classes, and the settings back from them.

Each setting that is a ``serve`` option declares its flag, help, default and (rarely) its
environment variable once, on its dataclass field (``entroq_redis_server.options``); this
module only lays them out in ``--help`` and converts. The settings modules import nothing of
the service's dependencies, so the parser builds in a client-only install.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from entroq_redis_server.authz.settings import AuthzSettings
from entroq_redis_server.grpc.settings import GrpcSettings
from entroq_redis_server.listen.listener_settings import ListenerSettings
from entroq_redis_server.options import Option, option_default, option_of, setting_value
from entroq_redis_server.settings import ServiceSettings

SETTINGS_CLASSES: tuple[type[Any], ...] = (ServiceSettings, AuthzSettings, ListenerSettings, GrpcSettings)
Settings = TypeVar("Settings")
_ARGPARSE_ACTIONS = {"switch": "store_true", "toggle": argparse.BooleanOptionalAction, "list": "append"}


def _fields(cls: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    return {field.name: field for field in dataclasses.fields(cls)}


def add_setting_options(container: Any, cls: type[Any], *names: str) -> None:
    """Adds the options of ``cls``'s settings ``names`` to a parser or argument group, in order."""
    fields = _fields(cls)
    for name in names:
        field = fields[name]
        option = option_of(field)
        if option is None:
            raise ValueError(f"{cls.__name__}.{name} is not a serve option")
        container.add_argument(option.flag, **_argument(field, option))


def _argument(field: dataclasses.Field[Any], option: Option) -> dict[str, Any]:
    default = option_default(field)
    help_text = argparse.SUPPRESS if option.hidden else option.help
    if option.kind == "list":
        # argparse appends to a list default: none here, the setting's default applies without a flag.
        return {
            "action": "append",
            "metavar": option.metavar,
            "help": help_text.replace("%(default)s", ", ".join(map(str, default))),
        }
    if option.kind in ("switch", "toggle"):
        return {"action": _ARGPARSE_ACTIONS[option.kind], "default": default, "help": help_text}
    argument: dict[str, Any] = {"default": default, "help": help_text}
    value_type = option.type or (type(default) if isinstance(default, int | float) else None)
    if value_type is not None:
        argument["type"] = value_type
    if option.choices is not None:
        argument["choices"] = option.choices
    if option.metavar is not None:
        argument["metavar"] = option.metavar
    return argument


def settings_from_args(cls: type[Settings], args: argparse.Namespace, **given: Any) -> Settings:
    """A ``cls`` from the parsed options of its settings, and ``given`` for the others."""
    values = dict(given)
    for name, field in _fields(cls).items():
        option = option_of(field)
        if option is not None and name not in given:
            values[name] = setting_value(field, getattr(args, option.dest))
    return cls(**values)


def options() -> dict[str, Option]:
    """Every settings option, by the argparse dest it is stored under."""
    return {
        option.dest: option
        for cls in SETTINGS_CLASSES
        for field in dataclasses.fields(cls)
        if (option := option_of(field)) is not None
    }


def env_names() -> dict[str, str]:
    """The environment variables of the options that do not use the one their name gives."""
    return {dest: option.env for dest, option in options().items() if option.env is not None}
