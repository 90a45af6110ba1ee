"""What every page shares: the session from its cookie, CSRF on unsafe methods,
security headers, rendering, and API refusals shown as pages rather than stack traces.

Only aiohttp, Jinja and the SDK are imported here: the UI is a client of `/v1`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import httpx
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from deployforge_client.errors import APIConnectionError, APIError

from gateway.ui.api import SignedOut, UserApi
from gateway.ui.sessions import Session, SessionStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE = web.AppKey("ui_sessions", SessionStore)
# A secret of this gateway process: the UI's calls carry it with the browser's address,
# so the API rate-limits (and logs) the browser, not the gateway calling itself.
RELAY_SECRET = web.AppKey("ui_relay_secret", str)
RELAY_HEADER, CLIENT_HEADER = "X-DeployForge-Relay", "X-DeployForge-Client"
HTTP = web.AppKey("ui_http", httpx.AsyncClient)
API = web.RequestKey("ui_api", UserApi)
COOKIE = "df_session"
LOGIN_CSRF_COOKIE = "df_login_csrf"
PREFIX = "/ui"
# Paths (under /ui) that need no session.
PUBLIC = ("/login", "/static/")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def api_of(request: web.Request) -> UserApi:
    api: UserApi = request[API]
    return api


def session_of(request: web.Request) -> Session:
    return api_of(request).session


def api_base_url(request: web.Request) -> str:
    """The gateway's own socket, as the connection reached it: the UI calls the API
    on the same replica, over loopback when that is how it was reached."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sockname, tuple):
        raise web.HTTPServiceUnavailable(reason="the UI needs the gateway on a TCP socket")
    host, port = sockname[0], sockname[1]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def relay_headers(request: web.Request) -> dict[str, str]:
    """Headers for the UI's API calls: who the browser is, vouched for by the secret."""
    headers = {
        RELAY_HEADER: request.config_dict[RELAY_SECRET],
        CLIENT_HEADER: request.remote or "unknown",
    }
    if forwarded := request.headers.get("X-Forwarded-For"):
        headers["X-Forwarded-For"] = forwarded  # the gateway trusts it only if told to
    return headers


def is_secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name, value, path=PREFIX, httponly=True, samesite="Lax", secure=is_secure(request),
        max_age=12 * 3600,
    )  # fmt: skip


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    api: UserApi | None = request.get(API)
    base = {
        "request": request,
        "user_email": api.session.email if api else None,
        "csrf_token": api.session.csrf_token if api else "",
        "path": request.path,
    }
    response = aiohttp_jinja2.render_template(template, request, base | context, status=status)
    return response


def redirect(request: web.Request, location: str) -> web.Response:
    """A redirect a plain form follows (303) and htmx follows too (HX-Redirect)."""
    if request.headers.get("HX-Request"):
        return web.Response(status=204, headers={"HX-Redirect": location})
    return web.Response(status=303, headers={"Location": location})


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a path inside the UI, never another site."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//"):
        return PREFIX + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return PREFIX + "/"
    return target


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.host


async def _csrf_ok(request: web.Request, expected: str) -> bool:
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError):  # not the form it says it is
            return False
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    return sent is not None and same_secret(sent, expected)


def same_secret(sent: str, expected: str) -> bool:
    """In constant time; any text a client sends (lone surrogates from bytes that were
    not UTF-8 too) compares, unequal, instead of raising."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    if request.headers.get("HX-Request"):
        # htmx swaps only 2xx answers: show the refusal where the page keeps its notices.
        return web.Response(
            status=200,
            text=f'<p class="notice error" role="alert">{_escape(message)}</p>',
            content_type="text/html",
            headers={"HX-Retarget": "#notices", "HX-Reswap": "innerHTML"},
        )
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


@web.middleware
async def ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sub = request.path[len(PREFIX) :] if request.path.startswith(PREFIX) else request.path
    if sub.startswith("/static/"):
        return await handler(request)
    if request.method in UNSAFE and not _same_origin(request):
        response: web.StreamResponse = _error_page(
            request, 403, "Refused", "this form was sent from another site"
        )
        _headers(response)
        return response
    try:
        if not sub.startswith(PUBLIC):
            store = request.config_dict[STORE]
            session = await store.find(request.cookies.get(COOKIE, ""))
            if session is None:
                return redirect(request, f"{PREFIX}/login?next={quote(request.path_qs)}")
            request[API] = UserApi(
                api_base_url(request), request.config_dict[HTTP], store, session,
                relay_headers(request),
            )  # fmt: skip
            if request.method in UNSAFE and not await _csrf_ok(request, session.csrf_token):
                response = _error_page(
                    request, 403, "Refused", "the form's CSRF token is missing or stale: reload"
                )
                _headers(response)
                return response
        response = await handler(request)
    except SignedOut:
        return redirect(request, f"{PREFIX}/login?next={quote(request.path_qs)}")
    except APIError as exc:
        field = exc.field
        message = exc.message + (f" ({field})" if field and field not in exc.message else "")
        if exc.request_id:
            message += f" (request {exc.request_id})"
        response = _error_page(request, exc.status, f"{exc.status}", message)
    except APIConnectionError:
        response = _error_page(request, 502, "Unavailable", "the API did not answer; retry")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_page(request, exc.status, str(exc.status), exc.reason)
    except (ValueError, HttpProcessingError):  # a form that does not parse
        response = _error_page(request, 400, "400", "the form could not be read")
    _headers(response)
    return response
