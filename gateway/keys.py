"""Typed application keys: everything a handler can reach through `request.app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from libs.messaging import CommandBus
from libs.principal import Principal

if TYPE_CHECKING:
    from gateway.authn import Authenticator
    from gateway.consistency import ConsistencyWaiter
    from gateway.idempotency import IdempotencyStore
    from gateway.ratelimit import RateLimiter
    from gateway.settings import GatewaySettings
    from gateway.user_directory import UserDirectory

SETTINGS: web.AppKey[GatewaySettings] = web.AppKey("settings")
# This process's secret for the web UI's own API calls (they carry the browser's address).
UI_RELAY_SECRET = web.AppKey("ui_relay_secret", str)
POOL = web.AppKey("pool", asyncpg.Pool)
NC = web.AppKey("nats", NATS)
BUS = web.AppKey("bus", CommandBus)
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")
CONSISTENCY: web.AppKey[ConsistencyWaiter] = web.AppKey("consistency")
USERS: web.AppKey[UserDirectory] = web.AppKey("users")
# The agents' instance reports (deploy's KV bucket), opened once.
INSTANCES = web.AppKey("instances", KeyValue)

# Per-request storage.
REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", Principal)
# Headers every response to this request carries, errors included.
EXTRA_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("extra_headers")
