"""The web UI's sessions, kept in PostgreSQL so that every gateway replica knows them.

The browser holds only a random cookie; its SHA-256 names the row. The row holds
the session's API tokens (sealed when a secret key is configured), the CSRF token
the pages embed, and the latest consistency token a write answered with, so the
page shown after a change already shows it (read-your-writes across requests).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg

SEALED_PURPOSE = "ui-session-tokens"
# A session ends after this long even when used: sign in again once a day.
LIFETIME = timedelta(hours=12)


class Sealer(Protocol):
    """What seals the tokens at rest (the gateway passes its SecretBox)."""

    def seal(self, plaintext: bytes, *, purpose: str) -> str: ...

    def open(self, sealed: str, *, purpose: str) -> bytes: ...


@dataclass
class Session:
    id_hash: str
    csrf_token: str
    email: str
    access_token: str
    refresh_token: str
    access_expires: datetime
    consistency: str | None


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer | None) -> None:
        self.pool = pool
        self.sealer = sealer

    def _seal(self, access: str, refresh: str) -> bytes:
        raw = json.dumps({"access": access, "refresh": refresh}).encode()
        return self.sealer.seal(raw, purpose=SEALED_PURPOSE).encode() if self.sealer else raw

    def _open(self, stored: bytes) -> dict[str, str]:
        raw = self.sealer.open(stored.decode(), purpose=SEALED_PURPOSE) if self.sealer else stored
        tokens: dict[str, str] = json.loads(raw)
        return tokens

    async def create(
        self, email: str, access_token: str, refresh_token: str, expires_in: int
    ) -> tuple[str, Session]:
        """A new session; the cookie value to set (shown nowhere else) and the row."""
        cookie = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = Session(
            id_hash=_hash(cookie),
            csrf_token=secrets.token_urlsafe(32),
            email=email,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires=now + timedelta(seconds=expires_in),
            consistency=None,
        )
        await self.pool.execute(
            "INSERT INTO gateway.ui_sessions (id_hash, csrf_token, email, tokens,"
            " access_expires, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            session.id_hash, session.csrf_token, email,
            self._seal(access_token, refresh_token), session.access_expires, now + LIFETIME,
        )  # fmt: skip
        return cookie, session

    async def find(self, cookie: str) -> Session | None:
        if not cookie or len(cookie) > 128:
            return None
        row = await self.pool.fetchrow(
            "SELECT * FROM gateway.ui_sessions WHERE id_hash = $1 AND expires_at > now()",
            _hash(cookie),
        )
        if row is None:
            return None
        tokens = self._open(row["tokens"])
        return Session(
            id_hash=row["id_hash"],
            csrf_token=row["csrf_token"],
            email=row["email"],
            access_token=tokens["access"],
            refresh_token=tokens["refresh"],
            access_expires=row["access_expires"],
            consistency=row["consistency"],
        )

    async def refresh(
        self, session: Session, rotate: Callable[[str], Awaitable[tuple[str, str, int]]]
    ) -> bool:
        """New tokens for `session` from `rotate(refresh_token)` -> (access, refresh,
        expires_in), once: the row is locked meanwhile, so that two requests (two tabs,
        two replicas, a page's parallel reads) never both present the same refresh token
        (the API would take the second for a theft). False: the session is gone."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT tokens, access_expires FROM gateway.ui_sessions"
                " WHERE id_hash = $1 AND expires_at > now() FOR UPDATE",
                session.id_hash,
            )
            if row is None:
                return False
            stored = self._open(row["tokens"])
            if stored["access"] != session.access_token:  # another request refreshed it
                session.access_token, session.refresh_token = stored["access"], stored["refresh"]
                session.access_expires = row["access_expires"]
                return True
            access, refresh, expires_in = await rotate(stored["refresh"])
            session.access_token, session.refresh_token = access, refresh
            session.access_expires = datetime.now(UTC) + timedelta(seconds=expires_in)
            await conn.execute(
                "UPDATE gateway.ui_sessions SET tokens = $2, access_expires = $3"
                " WHERE id_hash = $1",
                session.id_hash, self._seal(access, refresh), session.access_expires,
            )  # fmt: skip
            return True

    async def remember_write(self, session: Session, consistency: str | None) -> None:
        if consistency and consistency != session.consistency:
            session.consistency = consistency
            await self.pool.execute(
                "UPDATE gateway.ui_sessions SET consistency = $2 WHERE id_hash = $1",
                session.id_hash, consistency,
            )  # fmt: skip

    async def delete(self, session: Session) -> None:
        await self.pool.execute(
            "DELETE FROM gateway.ui_sessions WHERE id_hash = $1", session.id_hash
        )

    async def sweep(self) -> None:
        await self.pool.execute("DELETE FROM gateway.ui_sessions WHERE expires_at <= now()")
