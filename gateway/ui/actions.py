"""What the buttons do: sign in and out, deploy, cancel, roll back, webhook deliveries
and tokens. Each is one `/v1` call, then a redirect to the page that shows the result
(the session carries the write's consistency token, so that page already has it)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from deployforge_client.errors import APIError

from gateway.ui.api import sign_in, sign_out
from gateway.ui.handling import (
    COOKIE,
    HTTP,
    LOGIN_CSRF_COOKIE,
    PREFIX,
    STORE,
    api_base_url,
    api_of,
    redirect,
    relay_headers,
    render,
    safe_next,
    same_secret,
    set_cookie,
)
from gateway.ui.pages import quoted

routes = web.RouteTableDef()


def _text(form: Any, name: str, *, limit: int = 2048) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _login_page(request: web.Request, error: str | None, status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "login_csrf": token,
            "error": error,
            "next": safe_next(request.query.get("next")),
            "user_email": None,
            "csrf_token": "",
            "path": request.path,
        },
        status=status,
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return _login_page(request, None)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    # Login CSRF: the form's token must be the one this browser was given with it.
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = _text(form, "login_csrf", limit=128)
    if not expected or not same_secret(sent, expected):
        return _login_page(request, "The sign-in form expired: try again.", 403)
    email, password = _text(form, "email", limit=254), _text(form, "password", limit=512)
    if not email or not password:
        return _login_page(request, "Enter your email and password.", 400)
    try:
        cookie = await sign_in(
            api_base_url(request), request.config_dict[HTTP], request.config_dict[STORE],
            email, password, relay_headers(request),
        )  # fmt: skip
    except APIError as exc:
        message = "Wrong email or password." if exc.status in (400, 401, 422) else exc.message
        return _login_page(request, message, exc.status)
    response = redirect(request, safe_next(_text(form, "next")))
    set_cookie(request, response, COOKIE, cookie)
    response.del_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    await sign_out(api_of(request))
    response = redirect(request, f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


@routes.post("/services/{id}/deploy")
async def deploy(request: web.Request) -> web.Response:
    form = await request.post()
    body: dict[str, Any] = {"environment_id": _text(form, "environment_id", limit=64)}
    if ref := _text(form, "ref", limit=255):
        body["ref"] = ref
    created = await api_of(request).post(
        f"/v1/services/{quoted(request.match_info['id'])}/deployments", body
    )
    return redirect(request, f"{PREFIX}/deployments/{quote(created['id'])}")


@routes.post("/deployments/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    did = request.match_info["id"]
    await api_of(request).post(f"/v1/deployments/{quoted(did)}/cancel")
    return redirect(request, f"{PREFIX}/deployments/{quoted(did)}")


@routes.post("/deployments/{id}/rollback")
async def rollback(request: web.Request) -> web.Response:
    form = await request.post()
    body = {}
    if target := _text(form, "to_deployment_id", limit=64):
        body["to_deployment_id"] = target
    created = await api_of(request).post(
        f"/v1/deployments/{quoted(request.match_info['id'])}/rollback", body
    )
    return redirect(request, f"{PREFIX}/deployments/{quoted(created['id'])}")


@routes.post("/webhooks/{id}/deliveries/{delivery}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    await api_of(request).post(
        f"/v1/webhooks/deliveries/{quoted(request.match_info['delivery'])}/redeliver"
    )
    return redirect(request, f"{PREFIX}/webhooks/{quoted(request.match_info['id'])}")


@routes.post("/webhooks/{id}/test")
async def test(request: web.Request) -> web.Response:
    await api_of(request).post(f"/v1/webhooks/{quoted(request.match_info['id'])}/test")
    return redirect(request, f"{PREFIX}/webhooks/{quoted(request.match_info['id'])}")


@routes.post("/webhooks/{id}/replay")
async def replay(request: web.Request) -> web.Response:
    form = await request.post()
    since = _text(form, "since", limit=64)
    if since and len(since) == 16:  # <input type=datetime-local>: minutes, no zone
        since += ":00Z"
    await api_of(request).post(
        f"/v1/webhooks/{quoted(request.match_info['id'])}/replay", {"since": since}
    )
    return redirect(request, f"{PREFIX}/webhooks/{quoted(request.match_info['id'])}")


@routes.post("/webhooks/{id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    api = api_of(request)
    wid = quoted(request.match_info["id"])
    rotated = await api.post(f"/v1/webhooks/{wid}/rotate-secret", {})
    hook = await api.get(f"/v1/webhooks/{wid}")
    deliveries = await api.items(f"/v1/webhooks/{wid}/deliveries", limit=50)
    # The new secret is shown once, on this answer only (never in a URL).
    return render(
        request,
        "webhook.html",
        {"webhook": hook, "deliveries": deliveries, "new_secret": rotated.get("secret")},
    )


@routes.post("/tokens")
async def create_token(request: web.Request) -> web.Response:
    form = await request.post()
    scopes = [s for s in form.getall("scopes", []) if isinstance(s, str)] or ["read"]
    api = api_of(request)
    body = {"name": _text(form, "name", limit=200), "scopes": scopes}
    issued = await api.post("/v1/tokens", body)
    items = await api.items("/v1/tokens", limit=200)
    return render(request, "tokens.html", {"tokens": items, "issued": issued})


@routes.post("/tokens/{id}/revoke")
async def revoke_token(request: web.Request) -> web.Response:
    await api_of(request).delete(f"/v1/tokens/{quoted(request.match_info['id'])}")
    return redirect(request, f"{PREFIX}/tokens")


@routes.post("/drift-findings/{id}/{action:acknowledge|reopen}")
async def finding_action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    await api_of(request).post(f"/v1/drift-findings/{quoted(request.match_info['id'])}/{action}")
    return redirect(request, f"{PREFIX}/drift")
