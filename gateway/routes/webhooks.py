"""Webhooks: endpoints an organization registers, their deliveries, test, rotate, replay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from services.webhooks import commands as c

api = Api("webhooks")


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    url: str
    events: list[str]
    description: str
    active: bool
    rate_limit: int | None
    # Why it was disabled (410 Gone, failing for days); None while enabled or disabled by hand.
    disabled_reason: str | None
    # Since when every attempt has failed; None while healthy.
    failing_since: datetime | None
    secret_rotated_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class NewWebhook(Webhook, frozen=True, kw_only=True):
    # Shown once: here, and in the reply to rotate-secret.
    secret: str


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: c.Url
    events: c.Events
    description: c.Description = ""
    active: bool = True
    secret: c.Secret | None = None
    rate_limit: c.RateLimit | None = None


class WebhookPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: c.Url | None = None
    events: c.Events | None = None
    description: c.Description | None = None
    active: bool | None = None
    rate_limit: c.RateLimit | None = None


class RotateBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    secret: c.Secret | None = None


class ReplayBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    since: datetime


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    attempted_at: datetime
    succeeded: bool
    status_code: int | None
    latency_ms: float
    response_excerpt: str
    error: str | None
    next_attempt_at: datetime | None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    # pending | retrying | succeeded | exhausted | abandoned
    status: str
    attempts: list[Attempt]
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    # The X-Request-Id of the API call behind the event (None for the system's own).
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str = "accepted"


_COLUMNS = (
    "id, organization_id, url, events, description, active, rate_limit, disabled_reason,"
    " failing_since, secret_rotated_at, previous_secret_expires_at, created_at, updated_at"
)


async def fetch_webhook(pool: asyncpg.Pool, webhook_id: str) -> Webhook | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM webhooks.webhooks WHERE id = $1 AND deleted_at IS NULL",  # noqa: S608
        webhook_id,
    )
    return Webhook(**dict(row)) if row else None


async def _get(request: web.Request, webhook_id: str) -> Webhook:
    hook = await fetch_webhook(request.app[keys.POOL], webhook_id)
    require_visible(principal_of(request), hook.organization_id if hook else None, "webhook")
    assert hook is not None
    return hook


@api.post(
    "/v1/organizations/{org_id}/webhooks",
    summary="Register a webhook endpoint (its secret is shown once)",
    scope="admin",
    body=WebhookBody,
    response=NewWebhook,
    status=201,
)
@api.post(
    "/v1/webhooks",
    summary="Register a webhook endpoint (default organization)",
    scope="admin",
    body=WebhookBody,
    response=NewWebhook,
    status=201,
)
async def create_webhook(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    body = await read_json(request, WebhookBody)
    command = c.CreateWebhook(organization_id=org, **msgspec.structs.asdict(body))
    result = await send(request, "webhooks", "create_webhook", command)
    created = msgspec.json.decode(result.data, type=c.CreatedWebhook)
    await caught_up(request, result)
    hook = await fetch_webhook(request.app[keys.POOL], created.id)
    fields: dict[str, Any] = msgspec.structs.asdict(hook) if hook else {"id": created.id}
    return json_response(
        fields | {"secret": created.secret},
        status=201,
        headers={"Location": f"/v1/webhooks/{created.id}"},
    )


@api.get("/v1/organizations/{org_id}/webhooks", summary="List webhooks", response=Page[Webhook])
@api.get("/v1/webhooks", summary="List webhooks (default organization)", response=Page[Webhook])
async def list_webhooks(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    page = await fetch_page(
        request,
        f"SELECT {_COLUMNS} FROM webhooks.webhooks WHERE organization_id = $1"  # noqa: S608
        " AND deleted_at IS NULL AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))"
        " ORDER BY created_at, id LIMIT $4",
        org,
        build=lambda r: Webhook(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/webhooks/{id}", summary="One webhook", response=Webhook)
async def get_webhook(request: web.Request) -> web.Response:
    return json_response(await _get(request, request.match_info["id"]))


@api.patch(
    "/v1/webhooks/{id}",
    summary="Change a webhook (active: true enables a disabled one again)",
    scope="admin",
    body=WebhookPatch,
    response=Webhook,
)
async def update_webhook(request: web.Request) -> web.Response:
    hook = await _get(request, request.match_info["id"])
    body = await read_json(request, WebhookPatch)
    fields = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    result = await send(
        request, "webhooks", "update_webhook", c.UpdateWebhook(webhook_id=hook.id, **fields)
    )
    await caught_up(request, result)
    return json_response(await fetch_webhook(request.app[keys.POOL], hook.id))


@api.delete("/v1/webhooks/{id}", summary="Delete a webhook", scope="admin", status=204)
async def delete_webhook(request: web.Request) -> web.Response:
    hook = await _get(request, request.match_info["id"])
    await send(request, "webhooks", "delete_webhook", c.DeleteWebhook(webhook_id=hook.id))
    return web.Response(status=204)


@api.post(
    "/v1/webhooks/{id}/test",
    summary="Send a webhook.ping to the endpoint now",
    scope="write",
    response=Accepted,
    status=202,
)
async def test_webhook(request: web.Request) -> web.Response:
    hook = await _get(request, request.match_info["id"])
    result = await send(request, "webhooks", "test_webhook", c.TestWebhook(webhook_id=hook.id))
    accepted = msgspec.json.decode(result.data, type=c.Accepted)
    return json_response(Accepted(id=accepted.id), status=202)


@api.post(
    "/v1/webhooks/{id}/rotate-secret",
    summary="New signing secret; the old one also signs for 24 h",
    scope="admin",
    body=RotateBody,
    response=c.RotatedSecret,
)
async def rotate_secret(request: web.Request) -> web.Response:
    hook = await _get(request, request.match_info["id"])
    body = await read_json(request, RotateBody) if request.can_read_body else RotateBody()
    result = await send(
        request, "webhooks", "rotate_secret", c.RotateSecret(webhook_id=hook.id, secret=body.secret)
    )
    return json_response(msgspec.json.decode(result.data, type=c.RotatedSecret))


@api.post(
    "/v1/webhooks/{id}/replay",
    summary="Re-send every matching event since a time",
    scope="admin",
    body=ReplayBody,
    response=Accepted,
    status=202,
)
async def replay(request: web.Request) -> web.Response:
    hook = await _get(request, request.match_info["id"])
    body = await read_json(request, ReplayBody)
    result = await send(
        request, "webhooks", "replay", c.Replay(webhook_id=hook.id, since=body.since)
    )
    accepted = msgspec.json.decode(result.data, type=c.Accepted)
    return json_response(Accepted(id=accepted.id), status=202)


class DeliveryFilters(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    event_type: str | None = None


# One statement, so that a delivery's status and its attempts come from one snapshot.
_DELIVERIES = (
    "SELECT id, webhook_id, event_id, event_type, status, next_attempt_at, last_status_code,"
    " last_error, correlation_id, created_at, updated_at,"
    " coalesce((SELECT json_agg(json_build_object("
    "  'attempt', a.attempt, 'attempted_at', a.attempted_at, 'succeeded', a.succeeded,"
    "  'status_code', a.status_code, 'latency_ms', a.latency_ms,"
    "  'response_excerpt', a.response_excerpt, 'error', a.error,"
    "  'next_attempt_at', a.next_attempt_at) ORDER BY a.attempt)"
    "  FROM webhook_deliveries.attempts a WHERE a.delivery_id = d.id), '[]') AS attempts"
    " FROM webhook_deliveries.deliveries d"
    " WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)"
    " AND ($3::text IS NULL OR event_type = $3)"
    " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))"
    " ORDER BY created_at DESC, id DESC LIMIT $6"
)


@api.get(
    "/v1/webhooks/{id}/deliveries",
    summary="A webhook's deliveries, newest first, each with its attempts",
    response=Page[Delivery],
    query=DeliveryFilters,
)
async def list_deliveries(request: web.Request) -> web.Response:
    hook = await _get(request, request.match_info["id"])
    query = {k: v for k, v in request.query.items() if k in DeliveryFilters.__struct_fields__}
    filters = convert(query, DeliveryFilters)
    page = await fetch_page(
        request,
        _DELIVERIES,
        hook.id,
        filters.status,
        filters.event_type,
        build=_delivery,
    )
    return json_response(page)


def _delivery(row: asyncpg.Record) -> Delivery:
    fields = dict(row)
    raw = fields.pop("attempts")  # decoded by the pool's json codec, or text without one
    attempts = (
        msgspec.json.decode(raw, type=list[Attempt])
        if isinstance(raw, str | bytes)
        else msgspec.convert(raw, type=list[Attempt])
    )
    return Delivery(**fields, attempts=attempts)


@api.post(
    "/v1/webhooks/deliveries/{id}/redeliver",
    summary="Send a delivery again now, on a fresh retry schedule",
    scope="write",
    response=Accepted,
    status=202,
)
async def redeliver(request: web.Request) -> web.Response:
    delivery_id = request.match_info["id"]
    org = await request.app[keys.POOL].fetchval(
        "SELECT organization_id FROM webhook_deliveries.deliveries WHERE id = $1", delivery_id
    )
    require_visible(principal_of(request), org, "delivery")
    await send(request, "webhooks", "redeliver", c.Redeliver(delivery_id=delivery_id))
    return json_response(Accepted(id=delivery_id), status=202)
