"""The webhooks read models are disposable: replayed from the streams, they come back identical."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import nats

from libs.eventstore import EventStore
from libs.projections import Projection, checkpoint
from libs.replay import replay
from services.webhooks.projection import DeliveryProjection, WebhookProjection
from tests.conftest import Stack
from tests.integration.webhooks.conftest import (
    Receivers,
    create_project,
    create_webhook,
    until_delivery,
)

TABLES = {
    "webhooks.webhooks": "id",
    "webhook_deliveries.deliveries": "id",
    "webhook_deliveries.attempts": "delivery_id, attempt",
}


async def _snapshot(dsn: str) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")]  # noqa: S608
            for table, order in TABLES.items()
        }
    finally:
        await conn.close()


async def _caught_up(stack: Stack, store: EventStore, projection: Projection) -> None:
    target = await store.last_sequence(projection.spec.context)
    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        for _ in range(500):
            if await checkpoint(conn, projection.name) >= target:
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise AssertionError(f"{projection.name} did not catch up")


async def test_replayed_webhook_read_models_are_identical(
    hooks: Stack, receivers: Receivers
) -> None:
    flaky = await receivers(lambda n: (500 if n == 0 else 200, {}, 0.0))
    gone = await receivers(lambda _: (410, {}, 0.0))
    kept = await create_webhook(hooks, flaky.url, ["project.*"], description="kept")
    await create_webhook(hooks, gone.url, ["project.*"])
    await hooks.client.post(f"/v1/webhooks/{kept['id']}/rotate-secret", headers=hooks.auth())
    await create_project(hooks, "History")
    await until_delivery(hooks, kept["id"], lambda d: d["status"] == "succeeded")

    nc = await nats.connect(hooks.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=hooks.suite.namespace)
        projections: list[Projection] = [WebhookProjection(), DeliveryProjection()]
        for projection in projections:
            store.register(projection.spec)
            await _caught_up(hooks, store, projection)
        before = await _snapshot(hooks.suite.database_url)
        assert len(before["webhooks.webhooks"]) == 2
        assert len(before["webhook_deliveries.attempts"]) >= 3
        for projection in projections:
            await replay(projection, hooks.suite.database_url, store)
        assert await _snapshot(hooks.suite.database_url) == before
    finally:
        await nc.close()
