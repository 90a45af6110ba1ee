"""The webhooks service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from typing import Any

from libs.messaging import Endpoint, bind
from services.webhooks import commands as c
from services.webhooks import handlers as h
from services.webhooks.handlers import WebhookDeps

SERVICE = "webhooks"


def endpoints(deps: WebhookDeps) -> dict[str, Endpoint[Any]]:
    return {
        "create_webhook": bind(deps, c.CreateWebhook, h.create_webhook),
        "update_webhook": bind(deps, c.UpdateWebhook, h.update_webhook),
        "delete_webhook": bind(deps, c.DeleteWebhook, h.delete_webhook),
        "rotate_secret": bind(deps, c.RotateSecret, h.rotate_secret),
        "test_webhook": bind(deps, c.TestWebhook, h.test_webhook),
        "redeliver": bind(deps, c.Redeliver, h.redeliver),
        "replay": bind(deps, c.Replay, h.replay),
    }
