"""Where ``serve``'s settings come from: the command line, the environment, a TOML file.

Every option of ``serve`` may also be given as an environment variable, ``ENTROQ_`` and the
option's name in capitals (``--max-body-mb`` is ``ENTROQ_MAX_BODY_MB``; the store URL keeps its
old name ``ENTROQ_REDIS_URL``, the gRPC port ``ENTROQ_REDIS_GRPC_PORT``), or as a key of the TOML
file named by ``--config`` (or ``ENTROQ_CONFIG``), the option's name without dashes
(``max-body-mb = 10``; ``max_body_mb`` too). The first found wins: flag, environment, file,
built-in default. A repeatable option takes a comma-separated list from the environment and a
TOML list from the file; a switch takes true/false (1/0, yes/no, on/off). A secret can come from
a file: ``--redis-file``, ``ENTROQ_REDIS_URL_FILE`` or ``redis-file = "/run/secrets/url"``.

The layers are applied as argparse defaults just before ``serve``'s arguments are parsed, so
argparse's own conversion and checks apply to every source; a bad value names where it came
from (``$ENTROQ_PORT: invalid int value: 'x'``) in one line, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._secret_options import SecretFromFile, read_secret_file
from ._serve_options import env_names

CONFIG_ENV = "ENTROQ_CONFIG"
# The names these options had before every option had one (deploy files and users set them):
# the store URL's here, the settings options' where they are declared (``env_names``).
ENV_NAMES = {"redis": "ENTROQ_REDIS_URL", **env_names()}
# Options that never come from the environment or a file.
COMMAND_LINE_ONLY = {"help", "version", "config"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def fail(message: str) -> NoReturn:
    print(f"entroq-redis serve: {message}", file=sys.stderr)
    sys.exit(2)


def env_name(action: argparse.Action) -> str:
    base = ENV_NAMES.get(action.dest, "ENTROQ_" + action.dest.upper())
    return base + "_FILE" if isinstance(action, SecretFromFile) else base


def long_name(action: argparse.Action) -> str:
    """The option's name without dashes: ``--max-body-mb`` -> ``max-body-mb`` (the TOML key)."""
    longs = [o for o in action.option_strings if o.startswith("--")]
    return (longs or action.option_strings)[0].lstrip("-")


def configurable(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options that may come from the environment or a file (hidden ones may not)."""
    return [
        a
        for a in parser._actions
        if a.option_strings and a.dest not in COMMAND_LINE_ONLY and a.help != argparse.SUPPRESS
    ]


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction | argparse.BooleanOptionalAction)


def _is_list(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def _switch(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    fail(f"{where}: {value!r} is not true or false (1/0, yes/no, on/off)")


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    """One value for ``action`` from the environment or the file, checked as argparse would."""
    if isinstance(value, bool | dict | list):
        fail(f"{where}: {value!r} is not a single value")
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        type_name = getattr(action.type, "__name__", "")
        reason = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else f"invalid {type_name} value"
        fail(f"{where}: {reason}: {text!r}")
    if action.choices is not None and converted not in action.choices:
        fail(f"{where}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def layered_value(action: argparse.Action, env: dict[str, str], file: dict[str, Any], path: str) -> Any:
    """The action's value from the environment, else the file, else ``...`` (neither has it)."""
    name = env_name(action)
    if name in env:
        where, raw = f"${name}", env[name]
        if _is_list(action):
            return [_convert(action, item.strip(), where) for item in raw.split(",") if item.strip()]
    else:
        key = long_name(action)
        found = [k for k in (key, key.replace("-", "_")) if k in file]
        if not found:
            return ...
        where, raw = f"{path}: {found[0]}", file[found[0]]
        if _is_list(action):
            items = raw if isinstance(raw, list) else [raw]
            return [_convert(action, item, where) for item in items]
    if _is_switch(action):
        return _switch(raw, where)
    if isinstance(action, SecretFromFile):
        try:
            return read_secret_file(str(raw))
        except ValueError as exc:
            fail(f"{where}: {exc}")
    return _convert(action, raw, where)


def read_config_file(path: str, known: set[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        fail(f"--config {path}: {exc.strerror or exc}")
    except tomllib.TOMLDecodeError as exc:
        fail(f"--config {path}: not TOML: {exc}")
    unknown = sorted(k for k in data if k.replace("_", "-") not in known)
    if unknown:
        fail(f"--config {path}: no such option: {', '.join(unknown)} (keys are serve's option names)")
    return data


def config_path(argv: Sequence[str]) -> str | None:
    """--config's value on the command line, else $ENTROQ_CONFIG."""
    for index, word in enumerate(argv):
        if word == "--":
            break
        if word == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    return os.environ.get(CONFIG_ENV) or None


def given_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests of the options the command line names (the parser takes no abbreviations)."""
    words = list(argv[: list(argv).index("--")] if "--" in argv else argv)
    named = {w.split("=", 1)[0] for w in words if w.startswith("-")}
    return {a.dest for a in parser._actions if named.intersection(a.option_strings)}


def apply_layers(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> Callable[[argparse.Namespace], None]:
    """Sets the defaults of ``parser``'s options from the environment and the config file;
    returns what to run on the parsed arguments (lists, and where each setting came from)."""
    actions = configurable(parser)
    path = config_path(argv)
    known = {o.lstrip("-").replace("_", "-") for a in actions for o in a.option_strings if o.startswith("--")}
    file = read_config_file(path, known) if path else {}
    env = dict(os.environ)
    given = given_on_command_line(parser, argv)
    lists: dict[str, list[Any]] = {}
    sources: dict[str, str] = {}
    for action in actions:
        value = layered_value(action, env, file, path or "")
        if value is ...:
            continue
        sources[action.dest] = "environment" if env_name(action) in env else "config file"
        if _is_list(action):
            # argparse appends flags to a list default: keep it aside, used only without a flag.
            lists[action.dest] = value
        else:
            action.default = value

    def finish(args: argparse.Namespace) -> None:
        for dest, value in lists.items():
            if getattr(args, dest, None) is None:
                setattr(args, dest, value)
        args.setting_sources = {dest: "command line" for dest in given} | {
            dest: source for dest, source in sources.items() if dest not in given
        }

    return finish


def annotate_help(parser: argparse.ArgumentParser) -> None:
    """Adds each option's environment variable and, unless its help names it, its default."""
    for action in configurable(parser):
        notes = [f"env {env_name(action)}" + (" (commas between values)" if _is_list(action) else "")]
        help_text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS, [], ()) and not isinstance(
            action, SecretFromFile
        )
        if shown and "default" not in help_text:
            notes.append(f"default {default}")
        action.help = f"{help_text} [{'; '.join(notes)}]".replace("%", "%%").replace(
            "%%(default)s", "%(default)s"
        )
