"""The suite's own shape: test modules import support modules only, never each other.

A test module imported by another is collected twice (its tests run twice) or, imported as a
module to avoid that, couples two test files; what they share lives in a support module
(a name without the ``test_`` prefix).
"""

from __future__ import annotations

import ast
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def imported_test_modules(source: str) -> list[str]:
    """The ``test_*`` modules (or ``test_*`` names, which pytest would collect again) that
    ``source`` imports, in any import form, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names = [base] if base else []
            # ``from . import test_x`` and ``from tests import test_x`` name the module in the alias.
            names += [f"{base}.{alias.name}" for alias in node.names]
        found += [name for name in names if any(part.startswith("test_") for part in name.split("."))]
    return found


def test_the_scan_sees_every_import_form() -> None:
    source = (
        "import test_a\nimport tests.test_b as b\nfrom test_c import x\nfrom .test_d import y\n"
        "from . import test_e\nfrom tests import test_f\nfrom support import test_helper_name\n"
        "def f():\n    import test_g\n"
    )
    assert imported_test_modules(source) == [
        "test_a",
        "tests.test_b",
        "test_c",
        "test_c.x",
        "test_d",
        "test_d.y",
        ".test_e",
        "tests.test_f",
        "support.test_helper_name",
        "test_g",
    ]
    assert imported_test_modules("import support\nfrom battery.lua_lint import analyse\n") == []


def test_no_test_module_is_imported_by_another() -> None:
    offenders = {
        str(path.relative_to(TESTS)): names
        for path in sorted(TESTS.rglob("*.py"))
        if (names := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def commands_run(source: str) -> list[str]:
    """The programs named first in a list or tuple of strings (how subprocess is called here)."""
    return [
        node.elts[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.List | ast.Tuple)
        and node.elts
        and isinstance(node.elts[0], ast.Constant)
        and isinstance(node.elts[0].value, str)
    ]


def test_no_test_needs_git() -> None:
    """The suite runs from any copy of the source (an unpacked archive has no .git): no test
    runs git."""
    assert "git" in commands_run('subprocess.run(["git", "ls-files"])')
    runs_git = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("*.py"))
        if "git" in commands_run(path.read_text(encoding="utf-8"))
    ]
    assert runs_git == []
