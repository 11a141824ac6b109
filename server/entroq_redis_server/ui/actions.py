"""The dashboard's forms: login, logout, and the versioned requeue/delete of tasks.

Every POST passes the two guards of ``access`` first (same-origin and the form's token); then it is
an ordinary call through the core, so a read-only user gets the authorizer's 403 here even
when no button was drawn for it.
"""

from __future__ import annotations

import urllib.parse

from quart import Response, request
from werkzeug.datastructures import Headers, MultiDict

import entroq_redis

from ..core.errors import bad_request, unsupported_media_type
from ..core.namespaces import NAMESPACE_HEADER
from ..http_front import body_bytes, current_request_id
from . import quarantine
from .access import (
    CSRF_COOKIE,
    CSRF_FIELD,
    MAX_TOKEN_CHARS,
    NAMESPACE_COOKIE,
    TOKEN_COOKIE,
    check_origin,
    check_token,
)
from .dashboard import Dashboard

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = quarantine.MAX_SELECTED + 10
WEEK_S = 7 * 24 * 3600


def register(dash: Dashboard) -> None:
    @dash.route("/ui/login")
    async def login_form() -> Response:
        return dash.render("login.html", message="")

    @dash.route("/ui/login", methods=("POST",))
    async def login() -> Response:
        form = await _form()
        token = form.get("token", "").strip()
        namespace = form.get("namespace", "").strip()
        if len(token) > MAX_TOKEN_CHARS or any(ord(c) < 0x21 or ord(c) == 0x7F for c in token):
            raise bad_request("the token holds characters a bearer token cannot have")
        headers = Headers()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if namespace:
            headers[NAMESPACE_HEADER] = namespace
        # Bad credentials or an unknown namespace answer here, with the login form again.
        await dash.calls.authenticate(headers, current_request_id())
        response = see_other("/ui/")
        for name, value in ((TOKEN_COOKIE, token), (NAMESPACE_COOKIE, namespace)):
            if value:
                dash.set_cookie(response, name, value, max_age=WEEK_S)
            else:
                dash.set_cookie(response, name, "", max_age=0)
        return response

    @dash.route("/ui/logout", methods=("POST",))
    async def logout() -> Response:
        await _form()
        response = see_other("/ui/login")
        dash.set_cookie(response, TOKEN_COOKIE, "", max_age=0)
        return response

    @dash.route("/ui/action", methods=("POST",))
    async def action() -> Response:
        form = await _form()
        queue = form.get("q", "")
        if not queue:
            raise bad_request("the form names no queue (field q)")
        chosen = quarantine.action_of(form.get("action", ""), queue)
        selected = quarantine.parse_selection(form.getlist("task"))
        current = {}
        if chosen == "requeue":
            # The values a full change must carry (its version is still the one the page showed).
            current = {t.id: t for t in await dash.tasks(queue, ids=[s.id for s in selected])}
        request_message = quarantine.modify_request(chosen, queue, selected, current)
        try:
            await dash.call("Modify", request_message)
        except entroq_redis.DependencyError as exc:
            failed = {f.id: f for f in exc.failures}
            if not failed.keys() & {s.id for s in selected}:
                raise
            changed = [(s, failed[s.id]) for s in selected if s.id in failed]
            rest = [s for s in selected if s.id not in failed]
            return dash.render(
                "action_result.html", 409, action=chosen, queue=queue, done=0, changed=changed, rest=rest
            )
        return dash.render(
            "action_result.html", action=chosen, queue=queue, done=len(selected), changed=[], rest=[]
        )


def see_other(location: str) -> Response:
    return Response("", status=303, headers={"Location": location})


async def _form() -> MultiDict[str, str]:
    """The guarded form of an action (403 unless it passes both guards of ``access``)."""
    check_origin(request.method, request.headers, f"{request.scheme}://{request.host}")
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != FORM:
        raise unsupported_media_type(content_type)
    raw = await body_bytes()
    try:
        fields = urllib.parse.parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"unreadable form: {exc}") from None
    form = MultiDict(fields)
    check_token(request.cookies.get(CSRF_COOKIE, ""), form.get(CSRF_FIELD, ""))
    return form
