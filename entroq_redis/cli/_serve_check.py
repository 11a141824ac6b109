"""``serve``'s settings checked before anything starts: one line saying what is wrong (exit 2)
instead of a service that starts and answers 503 to every request."""

from __future__ import annotations

import argparse
import os
import urllib.parse

from .._masked_url import masked_url

# Test-only switches (--test-any-namespace) are refused unless this is set to 1.
TESTING_ENV = "ENTROQ_REDIS_TESTING"
STORE_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def store_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a store (None: it can)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in STORE_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in STORE_SCHEMES)
        return f"--redis {masked_url(url)}: not a store URL (the scheme must be one of {schemes})"
    if parts.scheme == "unix" and not parts.path:
        return f"--redis {masked_url(url)}: a unix:// URL needs the socket's path (unix:///run/valkey.sock)"
    if parts.scheme != "unix":
        try:
            if not parts.hostname:
                return f"--redis {masked_url(url)}: no host"
            port = parts.port
        except ValueError:
            return f"--redis {masked_url(url)}: the port is not a number from 0 to 65535"
        database = parts.path.strip("/")
        if database and not (database.isdigit() and "cluster" not in parts.scheme):
            return f"--redis {masked_url(url)}: the path must be a database number (/0); a cluster has none"
        del port
    return None


def _two_stores(args: argparse.Namespace) -> str | None:
    """A store URL and --data both set (from any sources): refused, not ranked. The command
    line winning here would let a forgotten --data in an image's default command put the tasks
    in the container instead of the store $ENTROQ_REDIS_URL names."""
    if not (args.redis and args.data):
        return None
    sources = getattr(args, "setting_sources", {})
    redis_from, data_from = sources.get("redis", "default"), sources.get("data", "default")
    return (
        f"a store URL (--redis, from the {redis_from}) and --data (from the {data_from}) name two "
        "stores: set one"
    )


def check_serve_args(args: argparse.Namespace) -> str | None:
    """What is wrong with ``serve``'s settings, in one line (None: nothing found)."""
    if args.test_any_namespace and os.environ.get(TESTING_ENV) != "1":
        return f"--test-any-namespace is for the test suite only (it needs {TESTING_ENV}=1)"
    if problem := _two_stores(args):
        return problem
    if args.redis and (problem := store_url_problem(args.redis)):
        return problem
    if args.data and os.path.exists(args.data) and not os.path.isdir(args.data):
        return f"--data {args.data}: not a directory"
    if not args.host:
        return "--host must not be empty"
    for flag, port in (("--port", args.port), ("--metrics-port", args.metrics_port)):
        if port is not None and not 0 <= port <= 65535:
            return f"{flag} {port}: not a port number (0 to 65535; 0 = any free port)"
    if any(not name for name in args.namespace or ()):
        return "--namespace must not be empty"
    checks = (
        (args.workers >= 1, "--workers must be at least 1"),
        (args.max_body_mb > 0, "--max-body-mb must be positive"),
        (args.claim_wait_cap is None or args.claim_wait_cap > 0, "--claim-wait-cap must be positive"),
        (args.metrics_interval >= 0, "--metrics-interval must be 0 (every scrape) or more"),
        (args.metrics_max_queues >= 0, "--metrics-max-queues must be 0 (all) or more"),
        # Not written "<= 0": NaN must fail too.
        (args.ui_refresh > 0, "--ui-refresh must be more than 0 seconds"),
        (args.graceful_timeout >= 0, "--graceful-timeout must be 0 or more"),
        (args.wait_timeout_ms > 0, "--wait-timeout-ms must be positive"),
    )
    for ok, message in checks:
        if not ok:
            return message
    opa = urllib.parse.urlsplit(args.opa_url)
    if opa.scheme not in ("http", "https") or not opa.netloc:
        return f"--opa-url {masked_url(args.opa_url)}: not an http:// or https:// URL"
    return None
