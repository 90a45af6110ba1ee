"""The gateway's middlewares, outermost first.

request_context  request id, trace span, structlog context, metrics, extra headers
errors           every failure becomes the error envelope; never a stack trace
authentication   credential -> Principal, the route's scope, per-credential rate limit
stored_text      path segments, query parameters and stored headers hold storable text
idempotency      `Idempotency-Key` on POST
consistency      `X-Consistency-Token` on reads
"""

from __future__ import annotations

import re
import time
from typing import Any

import asyncpg
import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import trace

from gateway import keys
from gateway.authn import bearer_credential
from gateway.idempotency import StoredResponse
from gateway.routing import spec_of
from gateway.ui.handling import CLIENT_HEADER, RELAY_HEADER, same_secret
from libs.errors import (
    AuthenticationRequired,
    AuthorizationDenied,
    DomainError,
    ErrorCode,
    RateLimited,
    ValidationFailed,
)
from libs.ids import new_id
from libs.metrics import HTTP_LATENCY, HTTP_REQUESTS
from libs.principal import Principal
from libs.storable import check as check_text
from libs.storable import scrub
from libs.tracing import current_ids, extract_context

log = structlog.get_logger("gateway")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
tracer = trace.get_tracer("deployforge.gateway")

PRINCIPAL = keys.PRINCIPAL
EXTRA_HEADERS = keys.EXTRA_HEADERS
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_encoder = msgspec.json.Encoder()


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise AuthenticationRequired("authentication required")
    return principal


def envelope(
    request: web.Request, code: str, message: str, details: dict[str, Any], status: int
) -> web.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": request.get(keys.REQUEST_ID),
        }
    }
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else new_id("req")
    request[keys.REQUEST_ID] = request_id
    request[EXTRA_HEADERS] = {}
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    with tracer.start_as_current_span(
        f"{request.method} {route_name}",
        context=extract_context(request.headers),
        kind=trace.SpanKind.SERVER,
    ):
        response = await handler(request)
        ids = current_ids()
        # One line per change asked for (reads only at debug: they are most requests).
        access = log.debug if request.method in _READS else log.info
        access(
            "request",
            method=request.method,
            route=route_name,
            status=response.status,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
    response.headers["X-Request-Id"] = request_id
    if ids is not None:
        response.headers["traceparent"] = f"00-{ids[0]}-{ids[1]}-01"
    for name, value in request[EXTRA_HEADERS].items():
        response.headers.setdefault(name, value)
    elapsed = time.perf_counter() - started
    HTTP_REQUESTS.labels(request.method, route_name, str(response.status)).inc()
    HTTP_LATENCY.labels(request.method, route_name).observe(elapsed)
    if response.status >= 500:
        log.warning(
            "request_failed", method=request.method, path=request.path, status=response.status
        )
    return response


# aiohttp's own HTTP errors (no route, wrong method, body too large) in our envelope.
_HTTP_CODES = {
    400: ErrorCode.VALIDATION_ERROR,
    404: ErrorCode.RESOURCE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.VALIDATION_ERROR,
    415: ErrorCode.VALIDATION_ERROR,
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return envelope(request, exc.code.value, exc.message, exc.details, exc.status)
    except asyncpg.UndefinedTableError:
        # The read model is being created (first start) or was dropped for a rebuild.
        return envelope(
            request,
            ErrorCode.SERVICE_UNAVAILABLE.value,
            "the read model is not ready yet; retry shortly",
            {},
            503,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, ErrorCode.VALIDATION_ERROR)
        details: dict[str, Any] = {}
        message = exc.reason
        if exc.status == 413:
            details["field"] = "body"
            message = (
                f"the request body is larger than {request.app[keys.SETTINGS].max_body_bytes} bytes"
            )
        if exc.status == 405:
            details["allowed"] = sorted(getattr(exc, "allowed_methods", ()))
        return envelope(request, code.value, message, details, exc.status)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return envelope(
            request,
            ErrorCode.INTERNAL_ERROR.value,
            "internal error; quote the request id when reporting it",
            {},
            500,
        )


def _client_address(request: web.Request) -> str:
    if request.app[keys.SETTINGS].trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    # The web UI calling this gateway for a browser: the browser's address, when the
    # call carries this process's relay secret (anyone else's claim is ignored).
    relayed = request.headers.get(RELAY_HEADER, "")
    if relayed and same_secret(relayed, request.app[keys.UI_RELAY_SECRET]):
        return request.headers.get(CLIENT_HEADER, "") or request.remote or "unknown"
    return request.remote or "unknown"


def _bucket(principal: Principal | None, request: web.Request) -> str:
    if principal is None:
        return f"ip:{_client_address(request)}"
    return f"cred:{principal.token_id or principal.session_id or principal.user_id}"


async def _enforce_rate_limit(request: web.Request, principal: Principal | None) -> None:
    settings = request.app[keys.SETTINGS]
    limit = (
        settings.rate_limit_per_minute if principal else settings.anonymous_rate_limit_per_minute
    )
    quota = await request.app[keys.RATE_LIMITER].hit(_bucket(principal, request), limit)
    request[EXTRA_HEADERS].update(quota.headers())
    if quota.exceeded:
        raise RateLimited(
            f"rate limit of {limit} requests per minute exceeded",
            {"limit": limit, "retry_after": int(quota.headers()["Retry-After"])},
        )


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    spec = spec_of(request)
    if spec is None:
        return await handler(request)
    settings = request.app[keys.SETTINGS]
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise ValidationFailed(
            f"the request body is larger than {settings.max_body_bytes} bytes", "body", status=413
        )
    credential = bearer_credential(request)
    principal: Principal | None = None
    if credential is not None:
        principal = await request.app[keys.AUTHENTICATOR].authenticate(credential)
        request[PRINCIPAL] = principal
    if spec.rate_limited:
        await _enforce_rate_limit(request, principal)
    if spec.scope is not None:
        if principal is None:
            raise AuthenticationRequired(
                "authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'"
            )
        if spec.scope not in principal.scopes:
            raise AuthorizationDenied(
                f"this credential lacks the '{spec.scope}' scope", {"required_scope": spec.scope}
            )
    return await handler(request)


# Headers whose values are stored (bodies are checked where they are decoded).
STORED_HEADERS = ("Idempotency-Key",)


@web.middleware
async def stored_text(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse text no store can hold (libs.storable) in the parts of a request that
    are not a JSON body, naming the parameter: one check for every route."""
    for name, value in request.match_info.items():
        check_text(value, name, **{"in": "path"})
    for name, value in request.query.items():
        field = scrub(name)  # the refusal names the parameter, never quoting a NUL back
        check_text(name, field, **{"in": "query"})
        check_text(value, field, **{"in": "query"})
    for name in STORED_HEADERS:
        header = request.headers.get(name)
        if header is not None:
            check_text(header, name, **{"in": "header"})
    return await handler(request)


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None or spec_of(request) is None:
        return await handler(request)
    if not 1 <= len(key) <= 255:
        raise ValidationFailed("Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
    store = request.app[keys.IDEMPOTENCY]
    principal = request.get(PRINCIPAL)
    scope = _bucket(principal if isinstance(principal, Principal) else None, request)
    body = await request.read()
    stored = await store.claim(scope, key, store.fingerprint(request.method, request.path, body))
    if stored is not None:
        replay = web.Response(body=stored.body, status=stored.status, headers=stored.headers)
        replay.headers["Idempotency-Replayed"] = "true"
        return replay
    try:
        response = await handler(request)
    except DomainError as exc:
        if exc.status >= 500:
            await store.release(scope, key)
            raise
        # A refused request is an answer too: a retry gets the same refusal.
        reply = envelope(request, exc.code.value, exc.message, exc.details, exc.status)
        await store.complete(scope, key, _stored(reply))
        return reply
    except BaseException:
        await store.release(scope, key)
        raise
    if isinstance(response, web.Response) and response.status < 500:
        await store.complete(scope, key, _stored(response))
    else:
        await store.release(scope, key)
    return response


def _stored(response: web.Response) -> StoredResponse:
    keep = {
        k: v
        for k, v in response.headers.items()
        if k in ("Content-Type", "Location", "X-Consistency-Token")
    }
    body = response.body if isinstance(response.body, bytes) else b""
    return StoredResponse(response.status, keep, body)


@web.middleware
async def consistency(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.headers.get("X-Consistency-Token")
    if token and request.method == "GET" and spec_of(request) is not None:
        settings = request.app[keys.SETTINGS]
        caught_up = await request.app[keys.CONSISTENCY].wait(
            token, settings.consistency_wait_ms / 1000
        )
        if not caught_up:
            request[EXTRA_HEADERS]["X-Consistency-Stale"] = "true"
    return await handler(request)


MIDDLEWARES = [request_context, errors, authentication, stored_text, idempotency, consistency]
