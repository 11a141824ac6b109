"""Who a dashboard request acts as, and the guards every action passes. I/O free.

Credentials: the request's own ``Authorization`` header (a reverse proxy may set it) or, when
there is none, the token the login form stored in an HttpOnly, SameSite=Strict cookie, sent to
the core as ``Authorization: Bearer <token>``. So the dashboard is authorized exactly as the
API is: the core and the authorizer see the same headers an API client would send.

Actions (every unsafe method) must pass two checks, both failing closed:

1. the browser says the request comes from our own pages: ``Sec-Fetch-Site: same-origin``.
   Browsers leave that header out on plain-http origins other than localhost; only then is
   an ``Origin`` equal to this request's own origin accepted in its place;
2. the form's ``csrf`` field equals the per-browser token in the ``eq_csrf`` cookie (set with
   the first page; HttpOnly and SameSite=Strict, so another site can neither read it nor make
   the browser send it).
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets

from werkzeug.datastructures import Headers

from ..core.hooks import HeaderMap
from ..core.namespaces import NAMESPACE_HEADER

TOKEN_COOKIE = "eq_token"
NAMESPACE_COOKIE = "eq_ns"
CSRF_COOKIE = "eq_csrf"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/ui"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Longer cookies are not ours (the core refuses longer Authorization headers anyway).
MAX_TOKEN_CHARS = 8192


class Refused(Exception):
    """An action that failed a guard (HTTP 403), with the reason shown to the user."""


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What one request acts as.

    Attributes:
        headers: The headers the core sees (Authorization, EntroQ-Namespace), nothing else.
        logged_in: Whether the credentials came from the login cookie (a logout makes sense).
        csrf: This browser's action token (new if the request had none: the response sets it).
        new_csrf: Whether ``csrf`` is new.
    """

    headers: Headers
    logged_in: bool
    csrf: str
    new_csrf: bool


def access_of(headers: HeaderMap, cookies: HeaderMap) -> Access:
    """The identity of a request from its headers and cookies."""
    core = Headers()
    logged_in = False
    authorization = headers.get("Authorization")
    token = cookies.get(TOKEN_COOKIE) or ""
    if authorization:
        core["Authorization"] = authorization
    elif token and len(token) <= MAX_TOKEN_CHARS:
        core["Authorization"] = f"Bearer {token}"
        logged_in = True
    namespace = headers.get(NAMESPACE_HEADER) or (cookies.get(NAMESPACE_COOKIE) or "")
    if namespace:
        core[NAMESPACE_HEADER] = namespace
    csrf = cookies.get(CSRF_COOKIE) or ""
    new_csrf = len(csrf) != 43  # token_urlsafe(32)
    if new_csrf:
        csrf = secrets.token_urlsafe(32)
    return Access(core, logged_in, csrf, new_csrf)


def check_origin(method: str, headers: HeaderMap, own_origin: str) -> None:
    """Raises Refused unless an unsafe request comes from our own pages (guard 1)."""
    if method in SAFE_METHODS:
        return
    site = headers.get("Sec-Fetch-Site")
    if site is None:
        if headers.get("Origin") != own_origin:
            raise Refused("refused: this action was not sent from the dashboard's own pages")
    elif site != "same-origin":
        raise Refused(f"refused: a {site} request cannot act on the dashboard (Sec-Fetch-Site)")


def check_token(csrf_cookie: str, csrf_field: str) -> None:
    """Raises Refused unless the form carries this browser's action token (guard 2)."""
    if not csrf_cookie or not hmac.compare_digest(csrf_cookie.encode(), csrf_field.encode()):
        raise Refused("refused: the form's token does not match this browser's; reload the page and retry")
