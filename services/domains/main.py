"""The domains context: its settings, its composition root and its declaration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from nats.js.kv import KeyValue

from libs.crypto import SecretBox
from libs.host import Context, Resources, Wiring
from libs.settings import CoreSettings
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.domains import key_store
from services.domains.acme_client import AcmeConfig
from services.domains.api import SERVICE, endpoints
from services.domains.dns_lookup import DnsLookup, EdgeAddresses, parse_resolvers
from services.domains.edge_publisher import EdgePublisher
from services.domains.events import STREAM
from services.domains.handlers import DomainDeps
from services.domains.issuance import Issuance, IssuanceConfig
from services.domains.key_store import KeyStore
from services.domains.projection import DomainProjection
from services.domains.responders import Http01Responder, Responder
from services.domains.rfc2136 import Rfc2136Responder
from services.edge import table as edge_table

log = structlog.get_logger("domains")


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
    # ACME: the CA's directory (Let's Encrypt production by default; staging is
    # https://acme-staging-v02.api.letsencrypt.org/directory; "" orders nothing).
    acme_directory_url: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_contact_email: str = ""
    # External account binding, for CAs that require it (ZeroSSL, Google, ...).
    acme_eab_kid: str = ""
    acme_eab_hmac_key: str = ""
    # A CA bundle for the directory's own TLS (a private CA, pebble); "" = system's.
    acme_ca_bundle: str = ""
    # The CA's CAA identities: a CAA record that names none of them refuses the order.
    acme_caa_identities: str = "letsencrypt.org"
    # How long the edges get to load an HTTP-01 answer before the CA is told to look.
    acme_http01_propagation_seconds: float = 1.0
    acme_order_timeout_seconds: float = 300.0
    # After a crash, how long until another replica (or the restarted one) resumes the
    # request the dead one held.
    acme_resume_after_seconds: float = 60.0
    # DNS-01 (required for wildcards): RFC 2136 updates signed with TSIG to this server
    # (`host:port`); "" leaves DNS-01 off.
    acme_rfc2136_server: str = ""
    acme_rfc2136_key_name: str = ""
    acme_rfc2136_key_secret: str = ""
    acme_rfc2136_key_algorithm: str = "hmac-sha256"
    acme_rfc2136_zone: str = ""  # "": found by asking the server for SOA records
    acme_dns_propagation_seconds: float = 2.0
    # How often renewals, retries and expiry warnings are looked for.
    certificate_check_seconds: float = 60.0
    certificate_expiring_days: str = "14,7,1"
    # The wait after a failed order: doubling from the first to the last.
    certificate_retry_initial_seconds: float = 3600.0
    certificate_retry_max_seconds: float = 115200.0


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
    edge_bucket = await edge_table.bucket(
        r.nc.jetstream(), settings.namespace, settings.stream_replicas
    )
    publisher = EdgePublisher(r.store, edge_bucket)
    issuance = await _issuance(r, edge_bucket, lookup)
    deps = DomainDeps(r.store, lookup.look, clock=_now, issuance=issuance)
    loops = (publisher.run,) if issuance is None else (publisher.run, issuance.run)
    return Wiring(endpoints=endpoints(deps), loops=loops)


def _now() -> datetime:
    return datetime.now(UTC)


async def _issuance(
    r: Resources[DomainsSettings], edge_bucket: KeyValue, lookup: DnsLookup
) -> Issuance | None:
    """The ACME process, when a CA is configured (and a master key seals the keys)."""
    settings = r.settings
    if not settings.acme_directory_url:
        log.info("acme_off", reason="DEPLOYFORGE_ACME_DIRECTORY_URL is empty")
        return None
    if not settings.secret_key:
        log.warning("acme_off", reason="DEPLOYFORGE_SECRET_KEY is needed to seal keys")
        return None
    box = SecretBox(settings.secret_key)
    keys = KeyStore(
        await key_store.bucket(r.nc.jetstream(), settings.namespace, settings.stream_replicas),
        box,
    )
    config = IssuanceConfig(
        acme=AcmeConfig(
            directory_url=settings.acme_directory_url,
            contact_email=settings.acme_contact_email,
            eab_kid=settings.acme_eab_kid,
            eab_hmac_key=settings.acme_eab_hmac_key,
            ca_bundle=settings.acme_ca_bundle,
        ),
        caa_identities=frozenset(
            i.strip().lower() for i in settings.acme_caa_identities.split(",") if i.strip()
        ),
        check_seconds=settings.certificate_check_seconds,
        expiring_days=tuple(
            int(d) for d in settings.certificate_expiring_days.split(",") if d.strip()
        ),
        retry_initial=timedelta(seconds=settings.certificate_retry_initial_seconds),
        retry_most=timedelta(seconds=settings.certificate_retry_max_seconds),
        order_timeout=timedelta(seconds=settings.acme_order_timeout_seconds),
        ack_wait_seconds=settings.acme_resume_after_seconds,
    )
    responders: dict[str, Responder] = {
        "http-01": Http01Responder(edge_bucket, settings.acme_http01_propagation_seconds),
    }
    if settings.acme_rfc2136_server:
        [server] = parse_resolvers(settings.acme_rfc2136_server)
        responders["dns-01"] = Rfc2136Responder(
            server,
            key_name=settings.acme_rfc2136_key_name,
            key_secret=settings.acme_rfc2136_key_secret,
            key_algorithm=settings.acme_rfc2136_key_algorithm,
            zone=settings.acme_rfc2136_zone,
            propagation=settings.acme_dns_propagation_seconds,
        )
    return Issuance(
        r.store,
        settings.database_url,
        edge_bucket,
        keys,
        box,
        responders,
        lookup,
        config,
        clock=_now,
    )


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
