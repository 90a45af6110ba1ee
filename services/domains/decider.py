"""Domains and the claims on their names.

Pure: decide returns events, evolve folds them; no I/O, clock or ids. What DNS
said is decided on as a `Lookup` the handler made.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.domains.events import (
    DomainAdded,
    DomainChecked,
    DomainNameClaimed,
    DomainNameReleased,
    DomainRemoved,
    DomainUpdated,
    DomainVerificationFailed,
    DomainVerified,
)

PENDING, VERIFIED, FAILED = "pending", "verified", "failed"


class DomainState(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str | None = None
    organization_id: str | None = None
    full_domain: str = ""
    service_id: str | None = None
    environment_id: str | None = None
    verification_token: str = ""
    ssl_enabled: bool = True
    auto_renew_ssl: bool = True
    redirect_to: str | None = None
    redirect_https: bool = True
    challenge: str = "http-01"
    verification_status: str = PENDING
    dns_configured: bool = False
    removed: bool = False

    @property
    def exists(self) -> bool:
        return self.domain_id is not None and not self.removed


def evolve_domain(state: DomainState, event: Event) -> DomainState:
    replace = msgspec.structs.replace
    match event:
        case DomainAdded():
            return DomainState(
                domain_id=event.domain_id,
                organization_id=event.organization_id,
                full_domain=event.full_domain,
                service_id=event.service_id,
                environment_id=event.environment_id,
                verification_token=event.verification_token,
                ssl_enabled=event.ssl_enabled,
                auto_renew_ssl=event.auto_renew_ssl,
                redirect_to=event.redirect_to,
                redirect_https=event.redirect_https,
                challenge=event.challenge,
            )
        case DomainUpdated():
            changes = event.changes
            return replace(
                state,
                service_id=changes.get("service_id", state.service_id),
                environment_id=changes.get("environment_id", state.environment_id),
                ssl_enabled=changes.get("ssl_enabled", state.ssl_enabled),
                auto_renew_ssl=changes.get("auto_renew_ssl", state.auto_renew_ssl),
                redirect_to=changes.get("redirect_to", state.redirect_to),
                redirect_https=changes.get("redirect_https", state.redirect_https),
            )
        case DomainVerified():
            return replace(state, verification_status=VERIFIED, dns_configured=event.dns_configured)
        case DomainVerificationFailed():
            # A domain verified once stays verified: a later failed look is not a
            # revocation (DNS hiccups); removing it is.
            status = state.verification_status if state.verification_status == VERIFIED else FAILED
            return replace(state, verification_status=status, dns_configured=event.dns_configured)
        case DomainChecked():
            return replace(state, dns_configured=event.dns_configured)
        case DomainRemoved():
            return replace(state, removed=True)
    return state


class Lookup(msgspec.Struct, frozen=True, kw_only=True):
    """What DNS answered for a domain when it was verified."""

    # The values of `_deployforge-challenge.<name>` (empty: none).
    txt: list[str] = []
    # The addresses the name resolves to, and whether they are the edge's.
    addresses: list[str] = []
    points_at_edge: bool = False
    # Why nothing could be read (a timeout, SERVFAIL), if so.
    error: str | None = None


def require_domain(state: DomainState, actor: Principal, scope: str) -> None:
    if not state.exists:
        raise NotFound("domain not found")
    if actor.deployment_id is not None:
        raise NotFound("domain not found")
    require(actor, scope, state.organization_id)


def decide_add(
    state: DomainState,
    actor: Principal,
    added: DomainAdded,
    *,
    service_organization: str | None,
    environment_organization: str | None,
) -> list[Event]:
    """`*_organization`: who owns the service and the environment named (None: no such)."""
    require(actor, "write", added.organization_id)
    if service_organization != added.organization_id:
        raise NotFound("service not found", {"field": "$.service_id"})
    if environment_organization != added.organization_id:
        raise NotFound("environment not found", {"field": "$.environment_id"})
    if state.domain_id is not None:
        raise Conflict("domain already exists")
    return [added]


def decide_update(
    state: DomainState,
    actor: Principal,
    changes: dict[str, Any],
    *,
    service_organization: str | None = None,
    environment_organization: str | None = None,
) -> list[Event]:
    require_domain(state, actor, "write")
    if "service_id" in changes and service_organization != state.organization_id:
        raise NotFound("service not found", {"field": "$.service_id"})
    if "environment_id" in changes and environment_organization != state.organization_id:
        raise NotFound("environment not found", {"field": "$.environment_id"})
    if changes.get("redirect_to") is not None and "port" in changes:
        raise ValidationFailed("a redirecting domain routes to no port", "$.port")
    return [DomainUpdated(changes=changes)] if changes else []


def decide_remove(state: DomainState, actor: Principal) -> list[Event]:
    require_domain(state, actor, "admin")
    return [DomainRemoved(full_domain=state.full_domain)]


def decide_verify(state: DomainState, actor: Principal, lookup: Lookup) -> list[Event]:
    """Verified when the TXT record holds the domain's token; the address records are
    recorded either way (they decide whether traffic reaches the edge, not ownership)."""
    require_domain(state, actor, "write")
    if state.verification_token in lookup.txt:
        if state.verification_status == VERIFIED:
            if state.dns_configured == lookup.points_at_edge:
                return []
            return [DomainChecked(dns_configured=lookup.points_at_edge, addresses=lookup.addresses)]
        return [
            DomainVerified(
                full_domain=state.full_domain,
                dns_configured=lookup.points_at_edge,
                addresses=lookup.addresses,
            )
        ]
    if lookup.error is not None:
        reason = f"DNS could not be read: {lookup.error}"
    elif lookup.txt:
        reason = "the TXT record does not hold this domain's token"
    else:
        reason = "no TXT record found"
    return [
        DomainVerificationFailed(
            full_domain=state.full_domain,
            reason=reason,
            dns_configured=lookup.points_at_edge,
            addresses=lookup.addresses,
        )
    ]


# --- claims: one domain per name, across all organizations ------------------------------


# A claim whose domain was never added (its command crashed in between) is taken over
# by the next claimant after this long; in-flight adds take milliseconds.
ABANDONED_CLAIM = timedelta(minutes=5)


class NameState(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str | None = None
    claimed_at: datetime | None = None


def evolve_name(state: NameState, event: Event) -> NameState:
    match event:
        case DomainNameClaimed():
            return NameState(domain_id=event.domain_id, claimed_at=event.claimed_at)
        case DomainNameReleased():
            return NameState() if event.domain_id == state.domain_id else state
    return state


def decide_claim(
    state: NameState,
    *,
    domain_id: str,
    full_domain: str,
    now: datetime,
    holder: str = "live",
) -> list[Event]:
    """409 when another domain holds the name, in whichever organization (which one is
    not said: another organization's domains do not exist for the caller).

    `holder`: what became of the holding claim's domain. `removed` (its removal was cut
    short before the release): the name is free. `missing` (never added: the add was
    cut short after the claim): free once the claim is `ABANDONED_CLAIM` old, as an
    add still under way takes milliseconds. `live`: taken.
    """
    if state.domain_id == domain_id:
        return []
    if state.domain_id is not None:
        abandoned = holder == "removed" or (
            holder == "missing"
            and state.claimed_at is not None
            and now - state.claimed_at > ABANDONED_CLAIM
        )
        if not abandoned:
            raise Conflict("this domain is already added", {"field": "$.domain"})
    return [DomainNameClaimed(domain_id=domain_id, full_domain=full_domain, claimed_at=now)]


def decide_release(state: NameState, *, domain_id: str) -> list[Event]:
    return [DomainNameReleased(domain_id=domain_id)] if state.domain_id == domain_id else []
