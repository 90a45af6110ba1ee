"""Composition root of the identity service: settings, connections, start/stop.

Runs the command endpoints and the auth projection; any number of replicas
may run (endpoints share a queue group, the projection has one leader).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import structlog

from libs.crypto import SecretBox
from libs.eventstore import EventStore
from libs.lifecycle import run_until_signalled
from libs.messaging import CommandContext, connect_nats, serve
from libs.metrics import start_metrics_server
from libs.projections import ProjectionRunner
from libs.settings import CoreSettings, load_settings
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


async def run(
    settings: AuthSettings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set, then drain and close everything.

    `ready` is set once commands are served and the projection is leading
    (or standing by behind another replica's lead).
    """
    async with AsyncExitStack() as stack:
        nc = await connect_nats(settings, "auth")
        stack.push_async_callback(nc.drain)
        store = EventStore(
            nc.jetstream(), namespace=settings.namespace, replicas=settings.stream_replicas
        )
        await store.ensure_stream(STREAM)
        deps = build_deps(settings, store)
        await ensure_signing_key(
            deps, EnsureSigningKey(max_age_days=settings.signing_key_max_age_days), CommandContext()
        )
        service = await serve(
            nc,
            service=SERVICE,
            namespace=settings.namespace,
            version="0.1.0",
            endpoints=endpoints(deps),
        )
        stack.push_async_callback(service.stop)
        tasks: list[asyncio.Task[None]] = []
        if settings.run_projection:
            runner = ProjectionRunner(AuthProjection(), settings.database_url, store)
            tasks.append(asyncio.create_task(runner.run(stop)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.leading.wait(), timeout=5)
        tasks.append(asyncio.create_task(_rotate_keys(deps, settings, stop)))
        if settings.metrics_port:
            metrics = await start_metrics_server(settings.metrics_host, settings.metrics_port)
            stack.push_async_callback(metrics.cleanup)
        log.info("auth_ready", namespace=settings.namespace)
        if ready is not None:
            ready.set()
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    log.info("auth_stopped")


async def _rotate_keys(deps: AuthDeps, settings: AuthSettings, stop: asyncio.Event) -> None:
    command = EnsureSigningKey(max_age_days=settings.signing_key_max_age_days)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=3600)
        except TimeoutError:
            await ensure_signing_key(deps, command, CommandContext())


def main() -> None:
    run_until_signalled("auth", load_settings(AuthSettings), run)


if __name__ == "__main__":
    main()
