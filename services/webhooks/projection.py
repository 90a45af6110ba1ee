"""The webhooks read models: endpoints (schema `webhooks`) and deliveries with their
attempts (schema `webhook_deliveries`), one projection per stream.

Timestamps come from event metadata, so a replay rebuilds identical rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from libs.events import Event, Recorded
from libs.projections import Projection, traced
from services.webhooks.decider import ABANDONED, EXHAUSTED, PENDING, RETRYING, SUCCEEDED
from services.webhooks.events import (
    CODECS,
    DELIVERIES,
    ENDPOINTS,
    DeliveryAbandoned,
    DeliveryAttempted,
    DeliveryExhausted,
    DeliveryRequeued,
    DeliveryScheduled,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookFailing,
    WebhookRecovered,
    WebhookReplayRequested,
    WebhookSecretRotated,
    WebhookUpdated,
)

_HERE = Path(__file__).parent
_COLUMNS = frozenset({"url", "events", "description", "active", "rate_limit"})


class WebhookProjection(Projection):
    name = "webhooks"
    schema = "webhooks"
    spec = ENDPOINTS
    ddl = (_HERE / "schema.sql").read_text()
    codecs = {"webhook": CODECS["webhook"]}

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        event, at, hook_id = recorded.event, recorded.meta.occurred_at, recorded.meta.aggregate_id
        match event:
            case WebhookCreated():
                await conn.execute(
                    "INSERT INTO webhooks (id, organization_id, url, events, description, active,"
                    " rate_limit, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8)"
                    " ON CONFLICT DO NOTHING",
                    event.webhook_id,
                    event.organization_id,
                    event.url,
                    event.events,
                    event.description,
                    event.active,
                    event.rate_limit,
                    at,
                )
            case WebhookUpdated():
                columns = [k for k in event.changes if k in _COLUMNS]
                if columns:
                    sets = ", ".join(f"{col} = ${n}" for n, col in enumerate(columns, start=3))
                    if event.changes.get("active") is True:
                        sets += ", disabled_reason = NULL, failing_since = NULL"
                    await conn.execute(
                        f"UPDATE webhooks SET updated_at = $2, {sets} WHERE id = $1",  # noqa: S608
                        hook_id,
                        at,
                        *(event.changes[col] for col in columns),
                    )
            case WebhookSecretRotated():
                await conn.execute(
                    "UPDATE webhooks SET secret_rotated_at = $2, previous_secret_expires_at = $3,"
                    " updated_at = $2 WHERE id = $1",
                    hook_id,
                    at,
                    event.previous_expires_at,
                )
            case WebhookFailing():
                await conn.execute(
                    "UPDATE webhooks SET failing_since = $2 WHERE id = $1", hook_id, event.since
                )
            case WebhookRecovered():
                await conn.execute(
                    "UPDATE webhooks SET failing_since = NULL WHERE id = $1", hook_id
                )
            case WebhookDisabled():
                await conn.execute(
                    "UPDATE webhooks SET active = false, disabled_reason = $2, updated_at = $3"
                    " WHERE id = $1",
                    hook_id,
                    event.reason,
                    at,
                )
            case WebhookReplayRequested():
                await conn.execute(
                    "UPDATE webhooks SET last_replay_at = $2 WHERE id = $1", hook_id, at
                )
            case WebhookDeleted():
                await conn.execute(
                    "UPDATE webhooks SET deleted_at = $2, active = false, updated_at = $2"
                    " WHERE id = $1",
                    hook_id,
                    at,
                )


class DeliveryProjection(Projection):
    name = "webhook_deliveries"
    schema = "webhook_deliveries"
    spec = DELIVERIES
    ddl = (_HERE / "deliveries.sql").read_text()
    codecs = {"delivery": CODECS["delivery"]}

    async def apply_all(self, conn: asyncpg.Connection, batch: Sequence[Recorded[Event]]) -> None:
        """Runs of new deliveries, most of them with their first attempt, are written in
        two statements (one per table) instead of three per delivery; everything else
        one event at a time, in order."""
        run: list[Recorded[DeliveryScheduled]] = []
        for recorded in batch:
            if isinstance(recorded.event, DeliveryScheduled):
                run.append(recorded)  # type: ignore[arg-type]
                continue
            await _insert_scheduled(conn, run)
            run = []
            with traced(recorded):
                await self.apply(conn, recorded)
        await _insert_scheduled(conn, run)

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        event, at, delivery_id = (
            recorded.event,
            recorded.meta.occurred_at,
            recorded.meta.aggregate_id,
        )
        match event:
            case DeliveryScheduled():
                await _insert_scheduled(conn, [recorded])  # type: ignore[list-item]
            case DeliveryAttempted():
                await _attempted(conn, delivery_id, event, at)
            case DeliveryRequeued():
                await _status(conn, delivery_id, PENDING, at)
            case DeliveryExhausted():
                await _status(conn, delivery_id, EXHAUSTED, at)
            case DeliveryAbandoned():
                await conn.execute(
                    "UPDATE deliveries SET status = $2, next_attempt_at = NULL,"
                    " last_error = coalesce(last_error, $3), updated_at = $4 WHERE id = $1",
                    delivery_id,
                    ABANDONED,
                    event.reason,
                    at,
                )


async def _insert_scheduled(
    conn: asyncpg.Connection, run: Sequence[Recorded[DeliveryScheduled]]
) -> None:
    """The rows of new deliveries, as applying each `delivery.scheduled` (and the first
    attempt it carries) one by one would leave them."""
    if not run:
        return
    deliveries: list[tuple[object, ...]] = []
    attempts: list[tuple[object, ...]] = []
    for recorded in run:
        event, at = recorded.event, recorded.meta.occurred_at
        first = event.first_attempt
        if first is None:
            status, count, due, code, error = PENDING, 0, None, None, None
        else:
            status = SUCCEEDED if first.succeeded else RETRYING
            count, due, code, error = (
                first.attempt,
                first.next_attempt_at,
                first.status_code,
                first.error,
            )
            attempts.append(
                (
                    event.delivery_id,
                    first.attempt,
                    first.attempted_at,
                    first.succeeded,
                    first.status_code,
                    first.latency_ms,
                    first.response_excerpt,
                    first.error,
                    first.next_attempt_at,
                )
            )
        deliveries.append(
            (
                event.delivery_id,
                event.webhook_id,
                event.organization_id,
                event.event_id,
                event.event_type,
                status,
                count,
                due,
                code,
                error,
                at,
                recorded.meta.correlation_id,
            )
        )
    await conn.execute(
        "INSERT INTO deliveries (id, webhook_id, organization_id, event_id, event_type, status,"
        " attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at,"
        " correlation_id)"
        " SELECT i, w, o, e, t, s, n, d, c, x, a, a, r FROM unnest($1::text[], $2::text[],"
        " $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::timestamptz[],"
        " $9::int[], $10::text[], $11::timestamptz[], $12::text[])"
        " AS u(i, w, o, e, t, s, n, d, c, x, a, r)"
        " ON CONFLICT DO NOTHING",
        *_columns(deliveries, 12),
    )
    if attempts:
        await conn.execute(
            "INSERT INTO attempts (delivery_id, attempt, attempted_at, succeeded, status_code,"
            " latency_ms, response_excerpt, error, next_attempt_at)"
            " SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bool[],"
            " $5::int[], $6::float8[], $7::text[], $8::text[], $9::timestamptz[])"
            " ON CONFLICT DO NOTHING",
            *_columns(attempts, 9),
        )


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    return [[row[i] for row in rows] for i in range(width)] if rows else [[]] * width


async def _attempted(
    conn: asyncpg.Connection, delivery_id: str, event: DeliveryAttempted, at: object
) -> None:
    await conn.execute(
        "INSERT INTO attempts (delivery_id, attempt, attempted_at, succeeded,"
        " status_code, latency_ms, response_excerpt, error, next_attempt_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT DO NOTHING",
        delivery_id,
        event.attempt,
        event.attempted_at,
        event.succeeded,
        event.status_code,
        event.latency_ms,
        event.response_excerpt,
        event.error,
        event.next_attempt_at,
    )
    status = SUCCEEDED if event.succeeded else RETRYING
    await conn.execute(
        "UPDATE deliveries SET attempts = $2, status = $3, next_attempt_at = $4,"
        " last_status_code = $5, last_error = $6, updated_at = $7 WHERE id = $1",
        delivery_id,
        event.attempt,
        status,
        event.next_attempt_at,
        event.status_code,
        event.error,
        at,
    )


async def _status(conn: asyncpg.Connection, delivery_id: str, status: str, at: object) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = $2, next_attempt_at = NULL, updated_at = $3 WHERE id = $1",
        delivery_id,
        status,
        at,
    )
