"""The deliveries read model written in runs (bulk statements) equals the one written
event by event: the bulk path is an optimisation, never a different answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from libs.events import Event, EventMeta, Recorded
from libs.projections import create_tables
from libs.testing import Suite
from services.webhooks.events import (
    DeliveryAbandoned,
    DeliveryAttempted,
    DeliveryExhausted,
    DeliveryRequeued,
    DeliveryScheduled,
)
from services.webhooks.projection import DeliveryProjection

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _scheduled(n: int, first: DeliveryAttempted | None) -> DeliveryScheduled:
    return DeliveryScheduled(
        delivery_id=f"dlv_{n}",
        webhook_id="whk_1",
        organization_id="org_1",
        event_id=f"evt_{n}",
        event_type="project.created",
        body="{}",
        occurred_at=T0,
        first_attempt=first,
    )


def _attempt(n: int, ok: bool, due: datetime | None = None) -> DeliveryAttempted:
    return DeliveryAttempted(
        attempt=n,
        attempted_at=T0 + timedelta(seconds=n),
        succeeded=ok,
        status_code=200 if ok else 500,
        latency_ms=1.5,
        response_excerpt="ok" if ok else "boom",
        error=None if ok else "HTTP 500",
        next_attempt_at=due,
    )


def _history() -> list[Recorded[Event]]:
    later = T0 + timedelta(seconds=5)
    events: list[tuple[str, Event]] = [
        ("dlv_1", _scheduled(1, _attempt(1, True))),
        ("dlv_2", _scheduled(2, None)),
        ("dlv_3", _scheduled(3, _attempt(1, False, later))),
        ("dlv_2", _attempt(1, True)),
        ("dlv_4", _scheduled(4, _attempt(1, False, later))),
        ("dlv_5", _scheduled(5, _attempt(1, False))),
        (
            "dlv_5",
            DeliveryExhausted(webhook_id="whk_1", event_id="evt_5", event_type="x", attempts=1),
        ),
        ("dlv_3", _attempt(2, True)),
        ("dlv_6", _scheduled(6, None)),
        ("dlv_4", DeliveryAbandoned(reason="the webhook was deleted")),
        ("dlv_1", DeliveryRequeued(reason="redeliver")),
    ]
    recorded = []
    for seq, (delivery_id, event) in enumerate(events, start=1):
        meta = EventMeta(
            event_id=f"evt_meta_{seq}",
            event_type=type(event).__struct_config__.tag,  # type: ignore[arg-type]
            aggregate="delivery",
            aggregate_id=delivery_id,
            occurred_at=T0 + timedelta(milliseconds=seq),
        )
        recorded.append(Recorded(meta=meta, event=event, seq=seq))
    return recorded


async def _rows(conn: asyncpg.Connection, schema: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "deliveries": [
            dict(r)
            for r in await conn.fetch(f'SELECT * FROM "{schema}".deliveries ORDER BY id')  # noqa: S608
        ],
        "attempts": [
            dict(r)
            for r in await conn.fetch(
                f'SELECT * FROM "{schema}".attempts ORDER BY delivery_id, attempt'  # noqa: S608
            )
        ],
    }


async def test_runs_of_new_deliveries_project_to_the_same_rows_as_one_by_one(
    suite: Suite,
) -> None:
    projection = DeliveryProjection()
    history = _history()
    conn = await asyncpg.connect(suite.database_url)
    try:
        async with conn.transaction():
            await create_tables(conn, projection, "one_by_one")
            for recorded in history:
                await projection.apply(conn, recorded)
        async with conn.transaction():
            await create_tables(conn, projection, "in_runs")
            await projection.apply_all(conn, history)
        one_by_one = await _rows(conn, "one_by_one")
        assert len(one_by_one["deliveries"]) == 6 and len(one_by_one["attempts"]) == 6
        assert await _rows(conn, "in_runs") == one_by_one
        statuses = {r["id"]: r["status"] for r in one_by_one["deliveries"]}
        assert statuses == {
            "dlv_1": "pending",
            "dlv_2": "succeeded",
            "dlv_3": "succeeded",
            "dlv_4": "abandoned",
            "dlv_5": "exhausted",
            "dlv_6": "pending",
        }
    finally:
        await conn.close()
