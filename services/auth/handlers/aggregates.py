"""The identity aggregates, and the adapters every identity handler takes (`AuthDeps`)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

import argon2

from libs.aggregate import AggregateType, load_state
from libs.crypto import SecretBox
from libs.eventstore import EventStore
from libs.ids import random_secret
from services.auth import decider as d
from services.auth.events import CODECS, STREAM
from services.auth.signing import AccessTokenSigner

USERS = AggregateType("user", CODECS["user"], d.UserState(), d.evolve_user)
EMAILS = AggregateType("user_email", CODECS["user_email"], d.EmailState(), d.evolve_email)
ORGS = AggregateType(
    "organization", CODECS["organization"], d.OrganizationState(), d.evolve_organization
)
SLUGS = AggregateType("org_slug", CODECS["org_slug"], d.SlugState(), d.evolve_slug)
SESSIONS = AggregateType("session", CODECS["session"], d.SessionState(), d.evolve_session)
TOKENS = AggregateType("token", CODECS["token"], d.TokenState(), d.evolve_token)
KEYRING = AggregateType("keyring", CODECS["keyring"], d.KeyringState(), d.evolve_keyring)
BOOTSTRAP = AggregateType("bootstrap", CODECS["bootstrap"], d.BootstrapState(), d.evolve_bootstrap)
KEYRING_ID = "jwt"


class AuthDeps:
    """The adapters identity's handlers need; main.py builds the real ones."""

    def __init__(
        self,
        store: EventStore,
        box: SecretBox,
        signer: AccessTokenSigner,
        *,
        refresh_ttl: timedelta,
        key_max_age: timedelta,
        clock: Callable[[], datetime],
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.signer = signer
        self.refresh_ttl = refresh_ttl
        self.key_max_age = key_max_age
        self.clock = clock
        self.hasher = hasher or argon2.PasswordHasher()
        # Verifying against this when an email is unknown keeps timing alike.
        self._dummy_hash = self.hasher.hash(random_secret())
        self._keyring: tuple[d.KeyringState, float] | None = None

    async def hash_password(self, password: str) -> str:
        # argon2 is deliberately slow and releases the GIL: keep it off the event loop.
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify_password(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False

    async def keyring(self) -> d.KeyringState:
        """The keyring, reloaded at most every few seconds (keys change rarely)."""
        now = asyncio.get_running_loop().time()
        if self._keyring is None or now - self._keyring[1] > 5.0:
            state, _ = await load_state(self.store, KEYRING, KEYRING_ID)
            self._keyring = (state, now)
        return self._keyring[0]

    def forget_keyring(self) -> None:
        self._keyring = None


def email_key(email: str) -> str:
    return hashlib.sha256(d.normalize_email(email).encode()).hexdigest()[:40]


def position(seq: int | None) -> str | None:
    """A reply's consistency position for the last event appended (None: nothing was)."""
    return f"{STREAM.context}:{seq}" if seq else None
