"""The deploy context: its settings, its composition root and its declaration."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import structlog

from libs.aggregate import snapshot_bucket
from libs.crypto import SecretBox
from libs.database import create_pool
from libs.host import Context, Resources, Wiring
from libs.messaging import CommandBus
from libs.settings import CoreSettings
from services.deploy import jobs, logs
from services.deploy.api import SERVICE, endpoints
from services.deploy.dispatch_process import DispatchProcess
from services.deploy.events import STREAM
from services.deploy.handlers import DeployDeps
from services.deploy.projection import DeployProjection
from services.deploy.watchdog import watch_leases

log = structlog.get_logger("deploy")


class DeploySettings(CoreSettings, frozen=True, kw_only=True):
    # At most this many deployments run at once per organization; the rest queue.
    max_running_deployments: int = 5
    lease_check_seconds: float = 5.0
    run_projection: bool = True


async def wire(r: Resources[DeploySettings]) -> Wiring:
    settings, store = r.settings, r.store
    leases = await jobs.ensure(store.js, settings.namespace, settings.stream_replicas)
    await logs.ensure_stream(store.js, settings.namespace, settings.stream_replicas)
    snapshots = await snapshot_bucket(store.js, settings.namespace, settings.stream_replicas)
    pool = await create_pool(settings.database_url, min_size=1, max_size=10)
    r.stack.push_async_callback(pool.close)
    deps = DeployDeps(
        store,
        SecretBox(settings.secret_key),
        pool,
        max_running=settings.max_running_deployments,
        bus=CommandBus(r.nc, namespace=settings.namespace),
        clock=lambda: datetime.now(UTC),
        snapshots=snapshots,
    )
    return Wiring(
        endpoints=endpoints(deps),
        loops=[
            partial(watch_leases, deps, leases, interval=settings.lease_check_seconds),
            # Finishes whatever a command left half done (a crash between its appends).
            DispatchProcess(deps).run,
        ],
    )


CONTEXT = Context(
    name=SERVICE,
    module="services.deploy.main",
    settings=DeploySettings,
    streams=(STREAM,),
    projections=(DeployProjection,),
    wire=wire,
)
run = CONTEXT.run


def main() -> None:
    CONTEXT.main()


if __name__ == "__main__":
    main()
