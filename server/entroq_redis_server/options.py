"""Each setting's ``serve`` option, declared once, on the settings dataclass's field.

A field made with :func:`setting` carries its default and an :class:`Option`: the flag, its
help, how its text is read, and (rarely) an environment variable other than ``ENTROQ_`` and the
flag's name. ``entroq-redis serve`` builds its argparse options, its environment variables and
its TOML keys from these (entroq_redis/cli/_serve_options.py), and its settings objects back
from the parsed arguments, so a default or a help text lives here only.

Standard library only: the settings modules that use this are imported to build ``serve``'s
parser, which must work (``serve --help`` included) in a client-only install, without the
service's dependencies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

OPTION = "entroq_redis_option"
MIB = 1024 * 1024

# value: takes one value; switch: --flag sets True; toggle: --flag / --no-flag; list: repeatable,
# collected into a tuple.
Kind = Literal["value", "switch", "toggle", "list"]


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """How one setting is given to ``serve``.

    Attributes:
        flag: The long option (``--max-body-mb``); its name without dashes is the TOML key, and
            ``ENTROQ_`` with it in capitals the environment variable (unless ``env``).
        help: The help text; ``%(default)s`` is the option's default.
        kind: See ``Kind``.
        metavar: The value's name in ``--help``.
        type: Reads the option's text (default: the type of the default, or str).
        choices: The values allowed.
        scale: The setting is the option's value times this (``--max-body-mb`` in MiB for a
            setting in bytes); the option's default is the setting's divided by it.
        env: The environment variable, when it is not the one the flag's name gives.
        hidden: For the test suite only: not in ``--help``, not read from the environment or
            a config file.
    """

    flag: str
    help: str
    kind: Kind = "value"
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    scale: int = 1
    env: str | None = None
    hidden: bool = False

    @property
    def dest(self) -> str:
        """The attribute argparse stores the option's value under (``max_body_mb``)."""
        return self.flag.lstrip("-").replace("-", "_")


def setting(default: Any, option: Option) -> Any:
    """A dataclass field with ``default`` whose ``serve`` option is ``option``."""
    return dataclasses.field(default=default, metadata={OPTION: option})


def option_of(field: dataclasses.Field[Any]) -> Option | None:
    option = field.metadata.get(OPTION)
    return option if isinstance(option, Option) else None


def option_default(field: dataclasses.Field[Any]) -> Any:
    """The option's default: the setting's, in the option's unit (``10`` MiB for 10,485,760)."""
    option = option_of(field)
    default: Any = field.default
    if option is None or option.scale == 1 or default is None:
        return default
    whole, rest = divmod(default, option.scale)
    return whole if rest == 0 else default / option.scale


def setting_value(field: dataclasses.Field[Any], value: Any) -> Any:
    """The setting from the option's parsed value."""
    option = option_of(field)
    assert option is not None, field.name
    if option.kind == "list":
        return tuple(value) if value else field.default
    if option.scale != 1 and value is not None:
        return int(value * option.scale)
    return value
