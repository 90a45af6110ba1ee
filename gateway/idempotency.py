"""`Idempotency-Key` on POST: a retried request gets the first one's response.

The first request with a key claims it (insert); it is completed with the
response once handled. A retry with the same body replays the stored
response; the same key with another body is refused (422); a retry while the
first is still running answers 409. Failed requests (5xx) release the key.

Stored bodies are sealed with the suite's master key: some responses carry a
secret shown once (a new API token, a webhook's signing secret), and those
must not sit in clear in the database for the 24 hours a key is kept.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec

from libs.crypto import SecretBox
from libs.errors import Conflict, ValidationFailed

RETENTION_HOURS = 24


class StoredResponse(msgspec.Struct, frozen=True):
    status: int
    headers: dict[str, str]
    body: bytes


SEALED_PURPOSE = "idempotent-response"


class IdempotencyStore:
    def __init__(self, pool: asyncpg.Pool, box: SecretBox | None = None) -> None:
        self.pool = pool
        self.box = box

    def _seal(self, body: bytes) -> bytes:
        return self.box.seal(body, purpose=SEALED_PURPOSE).encode() if self.box else body

    def _open(self, stored: bytes) -> bytes:
        if self.box is None:
            return stored
        try:
            return self.box.open(stored.decode(), purpose=SEALED_PURPOSE)
        except ValueError:
            return stored  # stored before responses were sealed

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()

    async def claim(self, scope: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim the key (None: go ahead) or return the response stored under it."""
        inserted = await self.pool.fetchval(
            "INSERT INTO gateway.idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) "
            "ON CONFLICT (scope, key) DO NOTHING RETURNING 1",
            scope,
            key,
            fingerprint,
        )
        if inserted:
            return None
        row = await self.pool.fetchrow(
            "SELECT request_hash, status, headers, body FROM gateway.idempotency_keys "
            "WHERE scope = $1 AND key = $2",
            scope,
            key,
        )
        if row is None:  # released between our insert and select: try once more
            return await self.claim(scope, key, fingerprint)
        if row["request_hash"] != fingerprint:
            raise ValidationFailed(
                "this Idempotency-Key was used with a different request", "Idempotency-Key"
            )
        if row["status"] is None:
            raise Conflict(
                "a request with this Idempotency-Key is still in progress",
                {"field": "Idempotency-Key"},
            )
        headers: dict[str, Any] = row["headers"] or {}
        return StoredResponse(
            row["status"],
            {k: str(v) for k, v in headers.items()},
            self._open(bytes(row["body"] or b"")),
        )

    async def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        await self.pool.execute(
            "UPDATE gateway.idempotency_keys SET status = $3, headers = $4, body = $5 "
            "WHERE scope = $1 AND key = $2",
            scope,
            key,
            response.status,
            response.headers,
            self._seal(response.body),
        )

    async def release(self, scope: str, key: str) -> None:
        await self.pool.execute(
            "DELETE FROM gateway.idempotency_keys WHERE scope = $1 AND key = $2", scope, key
        )

    async def sweep(self) -> None:
        await self.pool.execute(
            "DELETE FROM gateway.idempotency_keys WHERE created_at < now() - make_interval("
            "hours => $1)",
            RETENTION_HOURS,
        )
