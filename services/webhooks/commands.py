"""The commands the webhooks service accepts over NATS (and the HTTP bodies behind them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Url = Annotated[str, Meta(min_length=1, max_length=2048)]
EventFilter = Annotated[str, Meta(min_length=1, max_length=100)]
Events = Annotated[list[EventFilter], Meta(min_length=1, max_length=100)]
Description = Annotated[str, Meta(max_length=2000)]
Secret = Annotated[str, Meta(min_length=1, max_length=200)]
RateLimit = Annotated[int, Meta(ge=1, le=10000)]


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class CreateWebhook(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id | None = None
    url: Url
    events: Events
    description: Description = ""
    active: bool = True
    # Omitted: one is generated. Either way it is shown once, in the reply.
    secret: Secret | None = None
    rate_limit: RateLimit | None = None


class UpdateWebhook(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    webhook_id: Id
    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    active: bool | None = None
    rate_limit: RateLimit | None = None


class DeleteWebhook(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    webhook_id: Id


class RotateSecret(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    webhook_id: Id
    secret: Secret | None = None


class TestWebhook(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    webhook_id: Id


class Redeliver(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    delivery_id: Id


class Replay(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    webhook_id: Id
    since: datetime


class CreatedWebhook(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    secret: str


class RotatedSecret(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    secret: str
    previous_expires_at: datetime


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
