"""The domains context: its settings, its composition root and its declaration."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.host import Context, Resources, Wiring
from libs.settings import CoreSettings
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.domains.api import SERVICE, endpoints
from services.domains.dns_lookup import DnsLookup, EdgeAddresses, parse_resolvers
from services.domains.edge_publisher import EdgePublisher
from services.domains.events import STREAM
from services.domains.handlers import DomainDeps
from services.domains.projection import DomainProjection
from services.edge import table as edge_table


class DomainsSettings(CoreSettings, frozen=True, kw_only=True):
    # The resolvers verification asks (`host` or `host:port`, comma separated);
    # empty: the system's (/etc/resolv.conf).
    domains_dns_resolver: str = ""
    domains_dns_timeout_seconds: float = 5.0
    # Where a domain must point for its traffic to reach the edge: the edge's
    # public addresses (comma separated), and/or a name to CNAME to.
    edge_public_addresses: str = ""
    edge_public_hostname: str = ""
    run_projection: bool = True


async def wire(r: Resources[DomainsSettings]) -> Wiring:
    settings = r.settings
    edge = EdgeAddresses(
        [a.strip() for a in settings.edge_public_addresses.split(",") if a.strip()],
        settings.edge_public_hostname or None,
    )
    lookup = DnsLookup(
        parse_resolvers(settings.domains_dns_resolver),
        edge,
        timeout=settings.domains_dns_timeout_seconds,
    )
    deps = DomainDeps(r.store, lookup.look, clock=lambda: datetime.now(UTC))
    edge_bucket = await edge_table.bucket(
        r.nc.jetstream(), settings.namespace, settings.stream_replicas
    )
    publisher = EdgePublisher(r.store, edge_bucket)
    return Wiring(endpoints=endpoints(deps), loops=(publisher.run,))


CONTEXT = Context(
    name=SERVICE,
    module="services.domains.main",
    settings=DomainsSettings,
    streams=(STREAM,),
    # A domain's service and environment are checked from the deploy context's events.
    follows=(DEPLOY_STREAM,),
    projections=(DomainProjection,),
    wire=wire,
)
run = CONTEXT.run


def main() -> None:
    CONTEXT.main()


if __name__ == "__main__":
    main()
