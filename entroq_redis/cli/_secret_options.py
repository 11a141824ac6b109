"""Command-line options that may carry a secret (a store URL with a password, a token).

Every local user can read every process's arguments (``ps``, ``/proc/PID/cmdline``), so such a
value may come from an environment variable or a file instead; given as an argument it still
works, with one warning on stderr that says how to move it off the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._masked_url import url_has_secret

_warned: set[str] = set()


def warn_visible(flag: str, instead: str) -> None:
    """Warns once per flag that its value, a secret, is visible to every local user."""
    if flag in _warned:
        return
    _warned.add(flag)
    print(
        f"entroq-redis: warning: the {flag} argument holds a secret, and every local user can "
        f"read command lines (ps); give it in {instead} instead",
        file=sys.stderr,
        flush=True,
    )


def read_secret_file(path: str) -> str:
    """The secret a file holds, without surrounding whitespace (``echo`` and editors add a
    final newline; Kubernetes and Docker secrets are mounted as files).

    Raises:
        ValueError: the file cannot be read, or is empty.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return text


def store_once(
    action: argparse.Action, namespace: argparse.Namespace, value: str, option_string: str | None
) -> None:
    """Stores ``value`` under the action's ``dest``, refusing two different options for one
    value (``--token`` and ``--token-file``). argparse's mutually exclusive groups would say
    the same, but a group copied from a parent parser (every client command's options) loses
    its help section on Python 3.11, so the options check each other here.
    """
    given: dict[str, str | None] = namespace.__dict__.setdefault("_secret_options_given", {})
    earlier = given.get(action.dest)
    if action.dest in given and earlier != option_string:
        raise argparse.ArgumentError(action, f"not allowed with argument {earlier}")
    given[action.dest] = option_string
    setattr(namespace, action.dest, value)


class SecretFromFile(argparse.Action):
    """``--x-file FILE``: stores the secret FILE holds under the option's ``dest``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        try:
            secret = read_secret_file(str(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        store_once(self, namespace, secret, option_string)


class VisibleSecret(argparse.Action):
    """A secret given as an argument: stored as is, with a warning that names ``instead``,
    where it should come from. ``secret_if`` tells whether a value is secret (a URL is only
    when it holds a password). An argparse default (from the environment) never passes through
    an action, so it never warns.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        instead: str,
        secret_if: Callable[[str], bool] = lambda _value: True,
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.instead = instead
        self.secret_if = secret_if

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = str(values)
        if self.secret_if(value):
            warn_visible(option_string or self.dest, self.instead)
        store_once(self, namespace, value, option_string)


def url_argument(instead: str) -> dict[str, Any]:
    """``add_argument`` keywords for a URL that may hold a password."""
    return {"action": VisibleSecret, "instead": instead, "secret_if": url_has_secret}


def secret_argument(instead: str) -> dict[str, Any]:
    """``add_argument`` keywords for a value that is always secret (a token)."""
    return {"action": VisibleSecret, "instead": instead}


def file_argument(what: str) -> dict[str, Any]:
    """``add_argument`` keywords for ``--x-file FILE``, reading ``what`` (give ``dest``: the
    option it stands in for) from a file instead of the command line."""
    return {
        "metavar": "FILE",
        "action": SecretFromFile,
        "default": argparse.SUPPRESS,
        "help": f"read {what} from FILE (e.g. a mounted Kubernetes or Docker secret)",
    }
