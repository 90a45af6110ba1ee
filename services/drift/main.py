"""The drift context: its settings, its composition root and its declaration."""

from __future__ import annotations

from libs.crypto import SecretBox
from libs.host import Context, Resources, Wiring
from libs.settings import CoreSettings
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.drift.api import SERVICE, endpoints
from services.drift.app_observer import AppObserver
from services.drift.edge_observer import EdgeObserver
from services.drift.events import STREAM
from services.drift.handlers import DriftDeps
from services.drift.jobs import Jobs
from services.drift.projection import DriftProjection
from services.drift.scanner import Scanner
from services.drift.scheduler import Scheduler


class DriftSettings(CoreSettings, frozen=True, kw_only=True):
    # Another endpoint for the AWS APIs (an S3/EC2-compatible service, moto's server in
    # tests); empty: AWS's own for the resource's region.
    drift_aws_endpoint_url: str = ""
    run_projection: bool = True


async def wire(r: Resources[DriftSettings]) -> Wiring:
    settings = r.settings
    box = SecretBox(settings.secret_key) if settings.secret_key else None
    endpoint = settings.drift_aws_endpoint_url or None
    jobs = Jobs(r.store, box, settings.database_url, endpoint_url=endpoint)
    apps = AppObserver(r.store, r.nc, box)
    edges = EdgeObserver(r.nc, r.store.namespace)
    scanner = Scanner(
        r.store, settings.database_url, box, apps=apps, edges=edges, endpoint_url=endpoint
    )
    scheduler = Scheduler(r.store, settings.database_url)
    return Wiring(
        endpoints=endpoints(DriftDeps(r.store)), loops=(jobs.run, scanner.run, scheduler.run)
    )


CONTEXT = Context(
    name=SERVICE,
    module="services.drift.main",
    settings=DriftSettings,
    streams=(STREAM,),
    # A resource's environment (and its credentials) come from the deploy context's events.
    follows=(DEPLOY_STREAM,),
    projections=(DriftProjection,),
    wire=wire,
)
run = CONTEXT.run


def main() -> None:
    CONTEXT.main()


if __name__ == "__main__":
    main()
