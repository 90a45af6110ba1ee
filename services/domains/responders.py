"""Who answers an ACME challenge: the edge (HTTP-01) or a DNS server (DNS-01).

A responder publishes the validation the CA will look for, and withdraws it
once the CA is done. New DNS providers implement `Responder` (two methods).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import nats.js.errors
from acme import messages
from nats.js.kv import KeyValue

from services.edge import table


class Responder(Protocol):
    async def present(self, identifier: str, challenge: messages.ChallengeBody, value: str) -> None:
        """Make `value` visible where the CA looks for `identifier`'s challenge."""

    async def withdraw(
        self, identifier: str, challenge: messages.ChallengeBody, value: str
    ) -> None:
        """Remove it again (nothing if it is gone already)."""


class Http01Responder:
    """Puts the key authorization in the edge bucket: every edge replica serves it under
    `/.well-known/acme-challenge/<token>`. `propagation` is how long the replicas get to
    apply the entry before the CA is told to look (a KV watch takes milliseconds)."""

    def __init__(self, edge: KeyValue, propagation: float = 1.0) -> None:
        self.edge = edge
        self.propagation = propagation

    @staticmethod
    def _token(challenge: messages.ChallengeBody) -> str:
        return str(challenge.chall.encode("token"))

    async def present(self, identifier: str, challenge: messages.ChallengeBody, value: str) -> None:
        entry = table.Challenge(key_authorization=value, domain=identifier)
        await self.edge.put(table.challenge_key(self._token(challenge)), table.encode(entry))
        await asyncio.sleep(self.propagation)

    async def withdraw(
        self, identifier: str, challenge: messages.ChallengeBody, value: str
    ) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.edge.delete(table.challenge_key(self._token(challenge)))
