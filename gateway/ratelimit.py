"""Per-credential rate limits, shared by every gateway replica.

A fixed one-minute window per bucket, counted in Postgres so that every
replica sees the same count. Far from the limit a replica counts locally and
adds its hits to Postgres every `FLUSH_SECONDS` in one statement: a request
then costs no round trip. Within `margin` of the limit it counts each hit
synchronously, so the decisions that matter are made on the shared count.
A replica also syncs once it holds `local_cap` unsynced hits, so its view
of the shared count is never more than that many of its own hits stale: a
credential can exceed its limit by at most `local_cap` hits per replica that
was counting blind, and with up to four replicas the margin absorbs even that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import msgspec
import structlog

log = structlog.get_logger("gateway.ratelimit")


class Quota(msgspec.Struct, frozen=True):
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the window ends

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if self.exceeded:
            out["Retry-After"] = str(max(1, self.reset_at - int(time.time())))
        return out


_UPSERT = (
    "INSERT INTO gateway.rate_limits AS r (bucket, window_start, hits) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::integer[]) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + EXCLUDED.hits "
    "RETURNING bucket, window_start, hits"
)


def margin(limit: int) -> int:
    """How close to the limit every hit is counted synchronously."""
    return max(10, limit // 5)


def local_cap(limit: int) -> int:
    """How many hits a replica may hold before adding them to the shared count."""
    return max(1, margin(limit) // 4)


class RateLimiter:
    WINDOW = 60
    FLUSH_SECONDS = 0.05

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # (bucket, window) -> the shared count as last seen, and hits not yet added.
        self._seen: dict[tuple[str, int], int] = {}
        self._pending: dict[tuple[str, int], int] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._last_sweep = 0.0

    async def hit(self, bucket: str, limit: int) -> Quota:
        window = int(time.time()) // self.WINDOW * self.WINDOW
        key = (bucket, window)
        pending = self._pending.get(key, 0) + 1
        estimate = self._seen.get(key, 0) + pending
        if limit - estimate > margin(limit) and pending < local_cap(limit):
            self._pending[key] = pending
            self._start_flusher()
            return Quota(limit=limit, remaining=limit - estimate, reset_at=window + self.WINDOW)
        self._pending.pop(key, None)
        counts = await self._add({key: pending})
        return Quota(limit=limit, remaining=limit - counts[key], reset_at=window + self.WINDOW)

    async def _add(self, hits: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        rows = await self.pool.fetch(
            _UPSERT,
            [b for b, _ in hits],
            [w for _, w in hits],
            list(hits.values()),
        )
        counts = {(r["bucket"], r["window_start"]): r["hits"] for r in rows}
        self._seen.update(counts)
        return counts

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Add every locally counted hit to the shared count."""
        pending, self._pending = self._pending, {}
        if pending:
            try:
                await self._add(pending)
            except (OSError, asyncpg.PostgresError) as exc:
                for key, n in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + n
                log.warning("rate_limit_flush_failed", error=str(exc))
        now = time.time()
        if now - self._last_sweep > self.WINDOW:
            self._last_sweep = now
            current = int(now) // self.WINDOW * self.WINDOW
            self._seen = {k: v for k, v in self._seen.items() if k[1] >= current}
            await self.pool.execute(
                "DELETE FROM gateway.rate_limits WHERE window_start < $1", current - self.WINDOW
            )

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self.flush()
