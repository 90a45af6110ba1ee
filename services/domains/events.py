"""The events of the domains context: domains (`domain.<id>`), the claims that keep
each name to one domain across all organizations (`domain_name.<key of the name>`), and
each domain's certificate (`certificate.<domain id>`, events named `ssl.*`). No event
holds a private key: keys are sealed in KV (services/domains/key_store.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

STREAM = StreamSpec(
    context="domains",
    aggregates=("domain", "domain_name", "certificate"),
    bookkeeping=frozenset({"domain_name"}),
)


# domain.<id>
class DomainAdded(Event, frozen=True, kw_only=True, tag="domain.added"):
    domain_id: str
    organization_id: str
    # As stored (names.normalize): the A-label, `*.` first for a wildcard.
    full_domain: str
    domain: str
    subdomain: str | None = None
    service_id: str
    environment_id: str
    port: int | None = None
    ssl_enabled: bool = True
    auto_renew_ssl: bool = True
    redirect_to: str | None = None
    redirect_https: bool = True
    challenge: str = "http-01"
    # The value of `_deployforge-challenge.<name>` that proves control (not a secret:
    # it is published in DNS).
    verification_token: str


class DomainUpdated(Event, frozen=True, kw_only=True, tag="domain.updated"):
    # Only the fields that changed: service_id, environment_id, port, ssl_enabled,
    # auto_renew_ssl, redirect_to, redirect_https.
    changes: dict[str, Any]


class DomainVerified(Event, frozen=True, kw_only=True, tag="domain.verified"):
    full_domain: str = ""  # repeated, so that a webhook receiver learns which one
    # Whether the address records point at the edge as well (the TXT record alone
    # verifies; traffic reaches the edge only when these do).
    dns_configured: bool
    addresses: list[str] = []


class DomainVerificationFailed(Event, frozen=True, kw_only=True, tag="domain.verification_failed"):
    full_domain: str = ""
    reason: str
    dns_configured: bool = False
    addresses: list[str] = []


class DomainChecked(Event, frozen=True, kw_only=True, tag="domain.checked"):
    """A verified domain looked at again: whether its address records point at the edge."""

    dns_configured: bool
    addresses: list[str] = []


class DomainRemoved(Event, frozen=True, kw_only=True, tag="domain.removed"):
    full_domain: str = ""


DomainEvent = (
    DomainAdded
    | DomainUpdated
    | DomainVerified
    | DomainVerificationFailed
    | DomainChecked
    | DomainRemoved
)


# domain_name.<key>: which domain holds a name; released when it is removed.
class DomainNameClaimed(Event, frozen=True, kw_only=True, tag="domain_name.claimed"):
    domain_id: str
    full_domain: str
    # When: a claim whose domain never came (a crash in between) is taken over later.
    claimed_at: datetime | None = None


class DomainNameReleased(Event, frozen=True, kw_only=True, tag="domain_name.released"):
    domain_id: str


DomainNameEvent = DomainNameClaimed | DomainNameReleased


# certificate.<domain id>: one certificate per domain, issued, renewed, revoked.
class CertificateRequested(Event, frozen=True, kw_only=True, tag="ssl.requested"):
    domain_id: str
    organization_id: str
    full_domain: str
    names: list[str]
    challenge: str  # http-01 | dns-01
    reason: str  # issue | renew | force | retry


class CertificateOrderPlaced(Event, frozen=True, kw_only=True, tag="ssl.order_placed"):
    """An ACME order opened for the request in flight: resumed, not reopened, after a crash."""

    order_url: str


class CertificateIssued(Event, frozen=True, kw_only=True, tag="ssl.issued"):
    full_domain: str = ""
    serial: str
    issuer: str
    names: list[str]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    renewal_due_at: datetime
    order_url: str = ""


class CertificateRenewed(CertificateIssued, frozen=True, kw_only=True, tag="ssl.renewed"):
    previous_serial: str = ""


class CertificateFailed(Event, frozen=True, kw_only=True, tag="ssl.failed"):
    full_domain: str = ""
    error: str
    attempts: int
    retry_at: datetime | None = None


class CertificateExpiring(Event, frozen=True, kw_only=True, tag="ssl.expiring"):
    full_domain: str = ""
    serial: str
    not_after: datetime
    days: int  # the threshold crossed (14, 7, 1 by default)


class CertificateRevoked(Event, frozen=True, kw_only=True, tag="ssl.revoked"):
    full_domain: str = ""
    serial: str
    reason: str = "unspecified"


CertificateEvent = (
    CertificateRequested
    | CertificateOrderPlaced
    | CertificateIssued
    | CertificateRenewed
    | CertificateFailed
    | CertificateExpiring
    | CertificateRevoked
)

CODECS: dict[str, EventCodec[Event]] = {
    "domain": EventCodec(DomainEvent),
    "domain_name": EventCodec(DomainNameEvent),
    "certificate": EventCodec(CertificateEvent),
}
