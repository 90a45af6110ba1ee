"""The events of the domains context: domains (`domain.<id>`) and the claims that keep
each name to one domain across all organizations (`domain_name.<key of the name>`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

STREAM = StreamSpec(
    context="domains",
    aggregates=("domain", "domain_name"),
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

CODECS: dict[str, EventCodec[Event]] = {
    "domain": EventCodec(DomainEvent),
    "domain_name": EventCodec(DomainNameEvent),
}
