"""The identity context: its settings, its composition root and its declaration.

Runs the command endpoints, the auth projection and signing-key rotation on
the shared host (libs/host.py); any number of replicas may run (endpoints
share a queue group, the projection has one leader).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from libs.crypto import SecretBox
from libs.eventstore import EventStore
from libs.host import Context, Resources, Wiring
from libs.messaging import CommandContext
from libs.settings import CoreSettings
from services.auth.api import SERVICE, endpoints
from services.auth.commands import EnsureSigningKey
from services.auth.events import STREAM
from services.auth.handlers import AuthDeps, ensure_signing_key
from services.auth.projection import AuthProjection
from services.auth.signing import AccessTokenSigner

log = structlog.get_logger("auth")


class AuthSettings(CoreSettings, frozen=True, kw_only=True):
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_days: int = 30
    signing_key_max_age_days: int = 30
    jwt_issuer: str = "deployforge"
    jwt_audience: str = "deployforge"
    run_projection: bool = True


def build_deps(settings: AuthSettings, store: EventStore) -> AuthDeps:
    box = SecretBox(settings.secret_key)
    signer = AccessTokenSigner(
        box,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    return AuthDeps(
        store,
        box,
        signer,
        refresh_ttl=timedelta(days=settings.refresh_token_ttl_days),
        key_max_age=timedelta(days=settings.signing_key_max_age_days),
        clock=lambda: datetime.now(UTC),
    )


async def wire(r: Resources[AuthSettings]) -> Wiring:
    deps = build_deps(r.settings, r.store)
    # Tokens are signed from the first command on: a key exists before serving.
    command = EnsureSigningKey(max_age_days=r.settings.signing_key_max_age_days)
    await ensure_signing_key(deps, command, CommandContext())
    return Wiring(endpoints=endpoints(deps), loops=[partial(_rotate_keys, deps, r.settings)])


CONTEXT = Context(
    name=SERVICE,
    module="services.auth.main",
    settings=AuthSettings,
    streams=(STREAM,),
    projections=(AuthProjection,),
    wire=wire,
)
run = CONTEXT.run


async def _rotate_keys(deps: AuthDeps, settings: AuthSettings, stop: asyncio.Event) -> None:
    command = EnsureSigningKey(max_age_days=settings.signing_key_max_age_days)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=3600)
        except TimeoutError:
            await ensure_signing_key(deps, command, CommandContext())


def main() -> None:
    CONTEXT.main()


if __name__ == "__main__":
    main()
