"""The audit trail: one entry per change a person (or their token) caused.

One projection class over every stream: an instance per stream
(`audit_<context>`), each in a schema of its own, so each is replayed and
swapped like any read model; the gateway reads them as one. An entry holds who
(user, and the API token when one was used), what (event type, resource type
and id, the names of the fields it set or changed), when, and the request's
correlation id; never a value, so no secret can reach it. Events of the system
(no actor, or a `system:` actor) are not changes anyone made, nor is a stream's
bookkeeping (`StreamSpec.bookkeeping`: queue slots, unique-name claims).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from libs.events import Event, EventCodec, EventMeta, Recorded
from libs.eventstore import StreamSpec
from libs.projections import Projection

DDL = (Path(__file__).parent / "schema.sql").read_text()


def field_names(event: Event) -> list[str]:
    """The names of what an event set or changed (a `changes` map: its keys)."""
    body = msgspec.structs.asdict(event)
    changes = body.get("changes")
    if isinstance(changes, dict):
        return sorted(str(k) for k in changes)
    return sorted(k for k, v in body.items() if v not in (None, "", [], {}))


class AuditProjection(Projection):
    answers_reads = False

    def __init__(self, spec: StreamSpec, codecs: Mapping[str, EventCodec[Any]]) -> None:
        self.spec = spec
        self.codecs = codecs
        self.name = f"audit_{spec.context}"
        self.schema = self.name
        self.ddl = DDL

    def wants(self, meta: EventMeta) -> bool:
        # Most deliveries' events are the system's: skipped before they are decoded.
        if meta.actor is None or meta.actor.startswith("system:"):
            return False
        skipped = self.spec.bookkeeping
        return meta.aggregate not in skipped and meta.event_type not in skipped

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        meta = recorded.meta
        await conn.execute(
            "INSERT INTO entries (event_id, seq, organization_id, occurred_at, actor,"
            " credential, event_type, resource_type, resource_id, fields, correlation_id,"
            " causation_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
            " ON CONFLICT (event_id) DO NOTHING",
            meta.event_id,
            recorded.seq,
            meta.organization_id,
            meta.occurred_at,
            meta.actor,
            meta.credential,
            meta.event_type,
            meta.aggregate,
            meta.aggregate_id,
            field_names(recorded.event),
            meta.correlation_id,
            meta.causation_id,
        )
