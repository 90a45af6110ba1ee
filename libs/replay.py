"""Rebuilding a read model from the first event beside the live one, then swapping it in."""

from __future__ import annotations

import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.consumers import pull
from libs.database import connect, ensure_core_schema
from libs.eventstore import EventStore
from libs.projections import (
    Projection,
    apply_batch,
    create_tables,
    ensure_checkpoint,
    lock_checkpoint,
    quote_ident,
    save_checkpoint,
    skipped,
)


async def replay(
    projection: Projection, dsn: str, store: EventStore, *, batch: int = 512
) -> tuple[int, int]:
    """Rebuild a read model from the first event into fresh tables, then swap it in.

    Returns (events applied, final position). The live runner keeps serving
    the old tables until the swap, which happens in one transaction holding
    the checkpoint row, so readers never see a half-built model.
    """
    store.register(projection.spec)
    stream = store.stream_name(projection.spec.context)
    building = f"{projection.schema}__rebuild"
    conn = await connect(dsn)
    consumer = f"replay_{projection.name}"
    js = store.js
    try:
        await ensure_core_schema(conn)
        skips = await skipped(conn, projection.name)
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(building)} CASCADE")
        async with conn.transaction():
            await create_tables(conn, projection, building)
        try:
            await js.delete_consumer(stream, consumer)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=consumer,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60,
            ),
        )
        sub = await js.pull_subscribe_bind(durable=consumer, stream=stream)
        position = 0
        applied = 0

        async def catch_up(target: int) -> None:
            nonlocal position, applied
            while position < target:
                msgs = await pull(sub, batch, 1.0)
                if not msgs:
                    if await store.last_sequence(projection.spec.context) <= position:
                        return
                    continue
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {quote_ident(building)}")
                    new = await apply_batch(
                        conn,
                        projection,
                        building,
                        msgs,
                        store.namespace,
                        position=position,
                        skips=skips,
                    )
                applied += sum(1 for m in msgs if m.metadata.sequence.stream > position)
                position = new

        await catch_up(await store.last_sequence(projection.spec.context))
        async with conn.transaction():
            await ensure_checkpoint(conn, projection.name, stream)
            live = await lock_checkpoint(conn, projection.name, building)
            while position < live:
                msgs = await pull(sub, batch, 5.0)
                if not msgs:
                    continue
                new = await apply_batch(
                    conn,
                    projection,
                    building,
                    msgs,
                    store.namespace,
                    position=position,
                    skips=skips,
                )
                applied += sum(1 for m in msgs if m.metadata.sequence.stream > position)
                position = new
            old = f"{projection.schema}__old"
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(old)} CASCADE")
            if await conn.fetchval(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1", projection.schema
            ):
                await conn.execute(
                    f"ALTER SCHEMA {quote_ident(projection.schema)} RENAME TO {quote_ident(old)}"
                )
            await conn.execute(
                f"ALTER SCHEMA {quote_ident(building)} RENAME TO {quote_ident(projection.schema)}"
            )
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(old)} CASCADE")
            await save_checkpoint(conn, projection.name, max(live, position))
        await sub.unsubscribe()
        return applied, max(live, position)
    finally:
        try:
            await js.delete_consumer(stream, consumer)
        except nats.js.errors.NotFoundError:
            pass
        await conn.close(timeout=2)
