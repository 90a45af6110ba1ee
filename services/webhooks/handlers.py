"""One function per webhooks command: validate, load the aggregate, decide, append."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import msgspec

from libs.aggregate import change, load_state
from libs.crypto import SecretBox
from libs.errors import NotFound, ValidationFailed
from libs.events import Event
from libs.eventstore import EventStore
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from libs.principal import require
from services.webhooks import catalog, signing
from services.webhooks import commands as c
from services.webhooks import decider as d
from services.webhooks.courier import SECRET_PURPOSE
from services.webhooks.events import DELIVERIES, ENDPOINTS, WebhookCreated
from services.webhooks.fanout import DELIVERIES as DELIVERY_KIND
from services.webhooks.fanout import WEBHOOKS, delivery_id_for, schedule
from services.webhooks.payloads import PublicEvent
from services.webhooks.ssrf import AddressRefused, UnresolvableHost, guard_url


class WebhookDeps:
    """The adapters the webhooks handlers need; main.py builds the real ones."""

    def __init__(
        self,
        store: EventStore,
        box: SecretBox,
        *,
        allowed_networks: tuple[IPv4Network | IPv6Network, ...],
        rotation_grace: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.box = box
        self.allowed_networks = allowed_networks
        self.rotation_grace = rotation_grace
        self.clock = clock
        store.register(ENDPOINTS)
        store.register(DELIVERIES)


def _position(context: str, seq: int) -> str:
    return f"{context}:{seq}"


async def _check_url(deps: WebhookDeps, url: str) -> None:
    try:
        await guard_url(url, deps.allowed_networks)
    except UnresolvableHost:
        pass  # its DNS may come later; every attempt checks again
    except AddressRefused as exc:
        raise ValidationFailed(f"url refused: {exc}", "$.url") from None


def _check_events(events: list[str]) -> list[str]:
    for i, pattern in enumerate(events):
        error = catalog.filter_error(pattern)
        if error:
            raise ValidationFailed(error, f"$.events[{i}]")
    return list(dict.fromkeys(events))


def _secret(given: str | None) -> str:
    if given is None:
        return signing.generate_secret()
    error = signing.secret_error(given)
    if error:
        raise ValidationFailed(error, "$.secret")
    return given


async def _update(
    deps: WebhookDeps,
    ctx: CommandContext,
    webhook_id: str,
    decide: Callable[[d.WebhookState], list[Event]],
) -> Reply:
    seq = await change(
        deps.store,
        WEBHOOKS,
        webhook_id,
        decide,
        lambda state: ctx.event_context(state.organization_id),
    )
    return Reply(result=None, position=_position(ENDPOINTS.context, seq) if seq else None)


async def create_webhook(deps: WebhookDeps, cmd: c.CreateWebhook, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    org = cmd.organization_id or actor.organization_id
    if org is None:
        raise ValidationFailed("name the organization", "$.organization_id")
    require(actor, "admin", org)
    events = _check_events(cmd.events)
    secret = _secret(cmd.secret)
    await _check_url(deps, cmd.url)
    webhook_id = new_id("whk")
    created = WebhookCreated(
        webhook_id=webhook_id,
        organization_id=org,
        url=cmd.url,
        events=events,
        description=cmd.description,
        active=cmd.active,
        secret_sealed=deps.box.seal(secret.encode(), purpose=SECRET_PURPOSE),
        rate_limit=cmd.rate_limit,
    )
    decided = d.decide_create(d.WebhookState(), actor, created)
    seq = await deps.store.append(
        "webhook", webhook_id, decided, expected_version=0, context=ctx.event_context(org)
    )
    return Reply(
        result=c.CreatedWebhook(id=webhook_id, secret=secret),
        position=_position(ENDPOINTS.context, seq),
    )


async def update_webhook(deps: WebhookDeps, cmd: c.UpdateWebhook, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    changes: dict[str, Any] = {
        f: getattr(cmd, f)
        for f in cmd.__struct_fields__
        if f != "webhook_id" and getattr(cmd, f) is not None
    }
    if "events" in changes:
        changes["events"] = _check_events(changes["events"])
    if "url" in changes:
        await _check_url(deps, changes["url"])
    return await _update(
        deps, ctx, cmd.webhook_id, lambda s: d.decide_update(s, actor, dict(changes))
    )


async def delete_webhook(deps: WebhookDeps, cmd: c.DeleteWebhook, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    return await _update(deps, ctx, cmd.webhook_id, lambda s: d.decide_delete(s, actor))


async def rotate_secret(deps: WebhookDeps, cmd: c.RotateSecret, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    secret = _secret(cmd.secret)
    sealed = deps.box.seal(secret.encode(), purpose=SECRET_PURPOSE)
    now = deps.clock()
    reply = await _update(
        deps,
        ctx,
        cmd.webhook_id,
        lambda s: d.decide_rotate(s, actor, sealed, now, deps.rotation_grace),
    )
    rotated = c.RotatedSecret(
        id=cmd.webhook_id, secret=secret, previous_expires_at=now + deps.rotation_grace
    )
    return Reply(result=rotated, position=reply.position)


async def test_webhook(deps: WebhookDeps, cmd: c.TestWebhook, ctx: CommandContext) -> Reply:
    """Send a `webhook.ping` now, whatever the endpoint subscribes to."""
    actor = ctx.caller()
    state, _ = await load_state(deps.store, WEBHOOKS, cmd.webhook_id)
    d.require_webhook(state, actor, "write")
    assert state.organization_id is not None
    assert state.webhook_id is not None
    ping = PublicEvent(
        event_id=new_id("evt"),
        type="webhook.ping",
        organization_id=state.organization_id,
        occurred_at=deps.clock(),
        data={"webhook_id": state.webhook_id, "message": "DeployForge test event"},
        correlation_id=ctx.request_id,
        traceparent=ctx.traceparent,
    )
    # A ping reaches a disabled endpoint too: it is how one checks it before enabling it.
    await schedule(
        deps.store,
        msgspec.structs.replace(state, active=True),
        ping,
        context=ctx.event_context(state.organization_id),
    )
    return Reply(result=c.Accepted(id=delivery_id_for(state.webhook_id, ping.event_id)))


async def redeliver(deps: WebhookDeps, cmd: c.Redeliver, ctx: CommandContext) -> Reply:
    actor = ctx.caller()

    def decide(state: d.DeliveryState) -> list[Event]:
        if state.delivery_id is None:
            raise NotFound("delivery not found")
        require(actor, "write", state.organization_id)
        return d.decide_requeue(state, "redeliver")

    seq = await change(
        deps.store,
        DELIVERY_KIND,
        cmd.delivery_id,
        decide,
        lambda state: ctx.event_context(state.organization_id),
    )
    position = _position(DELIVERIES.context, seq) if seq else None
    return Reply(result=c.Accepted(id=cmd.delivery_id), position=position)


async def replay(deps: WebhookDeps, cmd: c.Replay, ctx: CommandContext) -> Reply:
    """Record the request; the replayer re-sends every matching event since `since`."""
    actor = ctx.caller()
    if cmd.since.tzinfo is None:
        raise ValidationFailed("give a time zone, e.g. 2026-01-01T00:00:00Z", "$.since")
    if cmd.since > deps.clock():
        raise ValidationFailed("since is in the future", "$.since")
    replay_id = new_id("rpl")
    reply = await _update(
        deps, ctx, cmd.webhook_id, lambda s: d.decide_replay(s, actor, replay_id, cmd.since)
    )
    # The replayer carries it out from the event: a crash mid-way does not lose it.
    return Reply(result=c.Accepted(id=replay_id), position=reply.position)
