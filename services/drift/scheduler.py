"""Scheduled scans: every few seconds, each environment's schedule that is due requests
its scan (services/drift/schedules.py decides when).

The scan is requested first, under an id derived from the environment and the
due time (a second replica's request for the same slot is no event), then the
schedule records that it fired; a crash between the two leaves the slot to
fire again, which requests the same scan, which is no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable

import asyncpg
import nats.errors
import structlog

from libs.aggregate import change, load_state
from libs.events import EventContext
from libs.eventstore import EventStore
from services.drift import schedules as sc
from services.drift.events import ScanRequested
from services.drift.handlers import SCANS, SCHEDULES

log = structlog.get_logger("drift.schedules")

TICK_SECONDS = 5.0


class Scheduler:
    def __init__(
        self,
        store: EventStore,
        database_url: str,
        *,
        tick: float = TICK_SECONDS,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.database_url = database_url
        self.tick = tick
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.fire_due()
            except asyncpg.UndefinedTableError:
                # At first start, until the drift projection has made its tables.
                log.debug("drift_schedules_not_projected_yet")
            except (OSError, asyncpg.PostgresError, nats.errors.Error) as exc:
                log.warning("drift_schedules_unavailable", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick)

    async def fire_due(self) -> list[str]:
        """Request every scan due now; their ids."""
        conn = await asyncpg.connect(self.database_url)
        try:
            environments = [
                row["environment_id"]
                for row in await conn.fetch(
                    "SELECT environment_id FROM drift.schedules WHERE removed_at IS NULL"
                )
            ]
        finally:
            await conn.close()
        fired = []
        for environment_id in environments:
            scan_id = await self._fire(environment_id)
            if scan_id is not None:
                fired.append(scan_id)
        return fired

    async def _fire(self, environment_id: str) -> str | None:
        now = self.clock()
        state, _ = await load_state(self.store, SCHEDULES, environment_id)
        when = sc.due(state, now)
        if when is None:
            return None
        context = EventContext(actor="system:drift", organization_id=state.organization_id)
        requested = ScanRequested(
            scan_id=sc.scan_id_for(environment_id, when),
            organization_id=state.organization_id or "",
            environment_id=environment_id,
            scheduled=True,
            remediate=state.mode == sc.REMEDIATE,
        )
        await change(
            self.store,
            SCANS,
            requested.scan_id,
            lambda st: [] if st.scan_id is not None else [requested],
            lambda _: context,
        )
        await change(
            self.store,
            SCHEDULES,
            environment_id,
            lambda st: [e for e in sc.decide_fire(st, now) if e.due == when],  # type: ignore[attr-defined]
            lambda _: context,
        )
        log.info("drift_scan_scheduled", environment_id=environment_id, scan_id=requested.scan_id)
        return requested.scan_id
