"""``entroq-redis serve``'s authorization flags: --authz, --opa-url, --opa-path, --opa-timeout,
--policy, --policy-data (EntroQ's flag names, dashed), and ours: --allow-example-credentials
(the example policy's published credentials are refused without it), --authz-max-input-bytes,
--audit-log. Each is declared on its ``AuthzSettings`` field (defaults: EntroQ's own).
"""

from __future__ import annotations

import argparse
import logging

from entroq_redis_server.authz.settings import AuthzSettings

from .._masked_url import masked_url
from ._example_credentials import example_credentials_in_file
from ._serve_options import add_setting_options, settings_from_args


def add_authz_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "authorization (EntroQ's model: a Rego policy decides per queue and action)"
    )
    add_setting_options(
        group,
        AuthzSettings,
        "mode",
        "opa_url",
        "opa_path",
        "opa_timeout_s",
        "policy_files",
        "policy_data_file",
    )
    # Not a setting of the service: checked here, before it starts.
    group.add_argument(
        "--allow-example-credentials",
        action="store_true",
        help="start even though the policy data holds the example policy's published JWT secret or "
        "tokens (deploy/authz/data.json, found by value in any file): anyone can sign in with them, "
        "so only for a local demo (rego refuses to start without this flag). With opahttp the "
        "service cannot see the OPA server's data: check it there",
    )
    add_setting_options(group, AuthzSettings, "max_input_bytes", "audit_log")


class AuthzSetupError(Exception):
    """The authorization flags cannot work. ``status`` is the exit code (2: usage, 1: a policy
    that does not load)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def authz_settings(args: argparse.Namespace) -> AuthzSettings:
    """The service's AuthzSettings from the flags, checked (rego: the policy is loaded and
    compiled now, so a bad one stops ``serve`` before anything starts).

    Raises:
        AuthzSetupError: with a message for the operator.
    """
    from entroq_redis_server import PolicyConfigError, check_authz_settings

    if args.authz != "rego" and (args.policy or args.policy_data):
        raise AuthzSetupError("--policy and --policy-data need --authz rego", 2)
    if args.authz == "rego" and not args.policy:
        raise AuthzSetupError("--authz rego needs at least one --policy FILE", 2)
    if args.opa_timeout <= 0:
        raise AuthzSetupError("--opa-timeout must be positive", 2)
    if args.authz_max_input_bytes < 1024:
        raise AuthzSetupError("--authz-max-input-bytes must be at least 1024", 2)
    if args.authz == "none" and args.audit_log:
        raise AuthzSetupError("--audit-log needs --authz opahttp or rego (it records authorization)", 2)
    settings = settings_from_args(AuthzSettings, args)
    try:
        check_authz_settings(settings)
    except PolicyConfigError as exc:
        raise AuthzSetupError(f"authorization: {exc}", 1) from None
    _check_example_credentials(settings, allow=args.allow_example_credentials)
    if settings.mode != "none":
        where = (
            masked_url(settings.opa_url) if settings.mode == "opahttp" else ", ".join(settings.policy_files)
        )
        logging.getLogger(__name__).info(
            "authorization: %s (%s, document %s)", settings.mode, where, settings.opa_path
        )
    return settings


def _check_example_credentials(settings: AuthzSettings, *, allow: bool) -> None:
    """Refuses (exit 2) policy data holding the example's published credentials, or with
    ``allow`` logs a warning. Runs after the data is known to load as JSON."""
    if settings.mode != "rego" or not settings.policy_data_file:
        return
    found = example_credentials_in_file(settings.policy_data_file)
    if not found:
        return
    what = f"--policy-data {settings.policy_data_file} holds the example policy's published credentials"
    if not allow:
        raise AuthzSetupError(
            f"{what} ({'; '.join(found)}): anyone can sign in with them. Set your own (see "
            "docs/operations/security.md, Example credentials), or pass --allow-example-credentials "
            "for a local demo",
            2,
        )
    logging.getLogger(__name__).warning(
        "authorization: %s (%s): anyone can sign in as the example's users; for a local demo only",
        what,
        "; ".join(found),
    )
