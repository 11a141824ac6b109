"""The documentation site builds, strictly: `mkdocs build --strict` on mkdocs.yml, as CI runs it.

A broken link, a page missing from the nav or a nav entry without its page, a docstring the API
page cannot render, an OpenAPI document the HTTP reference cannot render, or a build-time block
that fails is a warning, and strict mode makes any warning fail the build. The site is written to
a temporary directory, never into the tree.
"""

from __future__ import annotations

import html
import os
import pathlib
import re
import subprocess
import sys

import entroq_redis

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_site_builds_strictly(tmp_path: pathlib.Path) -> None:
    site = tmp_path / "site"
    # The service's settings come from ENTROQ_* variables: the configuration page shows the
    # built-in defaults, not the test session's. Material's banner about MkDocs 2 is noise here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTROQ_")}
    env["NO_MKDOCS_2_WARNING"] = "1"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            "mkdocs.yml",
            "--site-dir",
            site,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    # --strict fails on warnings; say so here too, in case a plugin logs one without failing.
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    # What the generated pages must hold: the API from the docstrings, the HTTP routes from the
    # OpenAPI document, every serve option, the Lua contract and the proto.
    api = text_of(site / "api" / "index.html")
    assert "try_claim" in api and "DependencyError" in api
    http = text_of(site / "http-api" / "index.html")
    assert "POST /api/v0/modify" in http and "POST /api/v0/claim/wait" in http
    configuration = text_of(site / "operations" / "configuration" / "index.html")
    assert "--grpc-max-streams" in configuration and "ENTROQ_MAX_BODY_MB" in configuration
    lua = text_of(site / "lua" / "index.html")
    assert "6. modify.lua" in lua and "MAX_ITEMS" in lua
    grpc = text_of(site / "grpc" / "index.html")
    assert "service EntroQ {" in grpc
    for page in site.rglob("*.html"):
        # Markdown an extension should have consumed (an include, a tab, an API directive)
        # would otherwise reach the reader as text.
        leftover = re.findall(r"(?m)^\s*(?:--8<--|:::|\[OAD\(|=== \"|\?\?\? ).*$", text_of(page))
        assert not leftover, f"{page.relative_to(site)}: {leftover[:3]}"


def text_of(page: pathlib.Path) -> str:
    """A built page's text, tags removed (code is split into highlighted spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_the_api_page_names_every_public_name() -> None:
    """A name added to entroq_redis.__all__ gets its entry on the API page."""
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    # The public submodule (entroq_redis.testing) has its own entry; the rest are __all__'s names.
    documented = set(re.findall(r"^::: entroq_redis\.(\w+)$", page, re.M))
    assert "testing" in documented
    documented.discard("testing")
    public = set(entroq_redis.__all__) - {"__version__"}
    assert documented == public, (
        f"docs/api.md lacks {sorted(public - documented)}, names unknown {sorted(documented - public)}"
    )
