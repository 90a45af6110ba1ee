"""Read-your-writes: wait until a projection has applied a command's events.

A command's reply carries `X-Consistency-Token: <context>:<sequence>`. A
read passing it back waits, briefly and boundedly, until the projection of
that context has checkpointed at least that far. Projections `NOTIFY` on
every checkpoint, so waiters wake as soon as the read model has it.
"""

from __future__ import annotations

import asyncio

import asyncpg

from deployforge.projections import PROJECTION_OF_STREAM
from libs.database import connect
from libs.errors import ValidationFailed
from libs.projections import NOTIFY_CHANNEL, checkpoint

# Which projection answers reads for a context's stream: from the one list of contexts.
PROJECTION_OF_CONTEXT = PROJECTION_OF_STREAM


def parse_token(token: str) -> tuple[str, int]:
    context, _, seq = token.partition(":")
    if context not in PROJECTION_OF_CONTEXT or not seq.isdigit():
        raise ValidationFailed("malformed consistency token", "X-Consistency-Token")
    return PROJECTION_OF_CONTEXT[context], int(seq)


class ConsistencyWaiter:
    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.pool = pool
        self._conn: asyncpg.Connection | None = None
        self._positions: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._conn = await connect(self.dsn)
        await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close(timeout=2)
            self._conn = None

    def _on_notify(self, _: object, __: int, ___: str, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        if position.isdigit():
            self._positions[name] = max(self._positions.get(name, 0), int(position))
            asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def position(self, projection: str) -> int:
        """How far `projection` is known to have applied its stream (0: not yet heard)."""
        return self._positions.get(projection, 0)

    async def wait(self, token: str, timeout: float) -> bool:
        """True once the read model has the token's events; False if `timeout` passed first."""
        projection, seq = parse_token(token)
        if self._positions.get(projection, 0) >= seq:
            return True
        self._positions[projection] = max(
            self._positions.get(projection, 0), await checkpoint(self.pool, projection)
        )
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._positions.get(projection, 0) >= seq)
        except TimeoutError:
            return False
        return True
