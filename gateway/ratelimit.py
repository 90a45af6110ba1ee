"""Per-credential rate limits, correct across gateway replicas.

A fixed one-minute window per bucket, counted in Postgres with one upsert
per request, so every replica sees the same count.
"""

from __future__ import annotations

import time

import asyncpg
import msgspec


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


class RateLimiter:
    WINDOW = 60

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._last_sweep = 0.0

    async def hit(self, bucket: str, limit: int) -> Quota:
        now = time.time()
        window = int(now) // self.WINDOW * self.WINDOW
        hits: int = await self.pool.fetchval(
            "INSERT INTO gateway.rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 "
            "RETURNING hits",
            bucket,
            window,
        )
        if now - self._last_sweep > self.WINDOW:
            self._last_sweep = now
            await self.pool.execute(
                "DELETE FROM gateway.rate_limits WHERE window_start < $1", window - self.WINDOW
            )
        return Quota(limit=limit, remaining=limit - hits, reset_at=window + self.WINDOW)
