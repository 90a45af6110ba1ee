"""A domain's certificate: when one is ordered, renewed, retried, announced or revoked.

Pure: decisions take the clock as `now` and what the CA said as facts. The
rules users rely on:

- nothing is ordered before the domain is verified, or when it turned TLS off;
- one request is in flight at a time; its ACME order, once placed, is resumed
  rather than replaced;
- a served certificate is never re-issued because a process restarted: only a
  forced request, or a renewal once it is due, orders again;
- renewal is due when the CA's renewal information says, otherwise once a
  third of the certificate's own lifetime remains;
- after a failure the next attempt waits, doubling from `initial` to `most`;
- `ssl.expiring` is sent once per threshold crossed (14, 7, 1 days by default).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from libs.errors import Conflict, NotFound
from libs.events import Event
from services.domains.decider import VERIFIED, DomainState
from services.domains.events import (
    CertificateExpiring,
    CertificateFailed,
    CertificateIssued,
    CertificateOrderPlaced,
    CertificateRenewed,
    CertificateRequested,
    CertificateRevoked,
)

NONE, PENDING, ISSUED, FAILED, REVOKED = "none", "pending", "issued", "failed", "revoked"


class CertificateState(msgspec.Struct, frozen=True, kw_only=True):
    status: str = NONE
    names: list[str] = []
    challenge: str = "http-01"
    order_url: str | None = None  # of the request in flight
    attempts: int = 0  # failures since the last issuance
    retry_at: datetime | None = None
    # The certificate served now (kept while a renewal is in flight or failed).
    serial: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    renewal_due_at: datetime | None = None
    # The smallest expiry threshold announced for the served certificate.
    expiring_announced: int | None = None

    @property
    def serving(self) -> bool:
        return self.serial is not None


def evolve_certificate(state: CertificateState, event: Event) -> CertificateState:
    replace = msgspec.structs.replace
    match event:
        case CertificateRequested():
            return replace(
                state,
                status=PENDING,
                names=event.names,
                challenge=event.challenge,
                order_url=None,
                retry_at=None,
            )
        case CertificateOrderPlaced():
            return replace(state, order_url=event.order_url)
        case CertificateIssued():  # and CertificateRenewed
            return replace(
                state,
                status=ISSUED,
                order_url=None,
                attempts=0,
                retry_at=None,
                serial=event.serial,
                names=event.names,
                not_before=event.not_before,
                not_after=event.not_after,
                renewal_due_at=event.renewal_due_at,
                expiring_announced=None,
            )
        case CertificateFailed():
            return replace(
                state,
                status=ISSUED if state.serving else FAILED,
                order_url=None,
                attempts=event.attempts,
                retry_at=event.retry_at,
            )
        case CertificateExpiring():
            return replace(state, expiring_announced=event.days)
        case CertificateRevoked():
            return replace(
                state,
                status=REVOKED,
                serial=None,
                not_before=None,
                not_after=None,
                renewal_due_at=None,
                order_url=None,
            )
    return state


def names_of(domain: DomainState) -> list[str]:
    return [domain.full_domain]


def decide_request(
    state: CertificateState, domain: DomainState, *, reason: str, now: datetime
) -> list[Event]:
    """`reason`: issue (first, or after verification), force (the API's force_renewal),
    renew (the schedule), retry (after a failure's wait)."""
    if not domain.exists:
        raise NotFound("domain not found")
    if domain.verification_status != VERIFIED:
        raise Conflict("the domain is not verified yet: verify it before ordering a certificate")
    if not domain.ssl_enabled:
        raise Conflict("TLS is turned off for this domain (ssl_enabled is false)")
    if state.status == PENDING:
        return []  # one in flight already
    if reason == "issue" and state.serving:
        return []
    if reason == "renew" and not (
        state.serving and state.renewal_due_at is not None and now >= state.renewal_due_at
    ):
        return []
    if reason == "renew" and state.retry_at is not None and now < state.retry_at:
        return []  # a renewal failed: it waits like any retry
    if reason == "retry" and (state.retry_at is None or now < state.retry_at):
        return []
    assert domain.domain_id is not None
    assert domain.organization_id is not None
    return [
        CertificateRequested(
            domain_id=domain.domain_id,
            organization_id=domain.organization_id,
            full_domain=domain.full_domain,
            names=names_of(domain),
            challenge=domain.challenge,
            reason=reason,
        )
    ]


def decide_order_placed(state: CertificateState, order_url: str) -> list[Event]:
    if state.status != PENDING or state.order_url == order_url:
        return []
    return [CertificateOrderPlaced(order_url=order_url)]


class Issued(msgspec.Struct, frozen=True, kw_only=True):
    """What the certificate the CA issued says of itself."""

    serial: str
    issuer: str
    names: list[str]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str


def renewal_due(issued: Issued, suggested: datetime | None) -> datetime:
    """The CA's suggestion (ARI) if it gave one, otherwise when a third of the lifetime
    remains. The lifetime is the certificate's own: never assumed."""
    if suggested is not None:
        return suggested
    return issued.not_after - (issued.not_after - issued.not_before) / 3


def decide_issued(
    state: CertificateState,
    issued: Issued,
    *,
    full_domain: str,
    renewal_due_at: datetime,
    order_url: str,
) -> list[Event]:
    if state.serial == issued.serial:
        return []  # recorded already (a resumed order downloads the same certificate)
    fields = msgspec.structs.asdict(issued)
    if state.serving:
        return [
            CertificateRenewed(
                **fields,
                full_domain=full_domain,
                renewal_due_at=renewal_due_at,
                order_url=order_url,
                previous_serial=state.serial or "",
            )
        ]
    return [
        CertificateIssued(
            **fields, full_domain=full_domain, renewal_due_at=renewal_due_at, order_url=order_url
        )
    ]


def backoff(attempts: int, *, initial: timedelta, most: timedelta) -> timedelta:
    """The wait after the `attempts`-th failure in a row: initial, doubled each time, capped."""
    wait: timedelta = initial * 2 ** max(0, attempts - 1)
    return min(most, wait)


def decide_failed(
    state: CertificateState,
    error: str,
    *,
    full_domain: str,
    now: datetime,
    initial: timedelta,
    most: timedelta,
) -> list[Event]:
    if state.status != PENDING:
        return []
    attempts = state.attempts + 1
    return [
        CertificateFailed(
            full_domain=full_domain,
            error=error[:1000],
            attempts=attempts,
            retry_at=now + backoff(attempts, initial=initial, most=most),
        )
    ]


def decide_expiring(
    state: CertificateState, *, full_domain: str, now: datetime, thresholds: list[int]
) -> list[Event]:
    """`ssl.expiring` for the smallest threshold (in days) the served certificate has
    crossed and that was not announced yet."""
    if state.serial is None or state.not_after is None:
        return []
    left = state.not_after - now
    crossed = [days for days in thresholds if left <= timedelta(days=days)]
    if not crossed:
        return []
    days = min(crossed)
    if state.expiring_announced is not None and state.expiring_announced <= days:
        return []
    return [
        CertificateExpiring(
            full_domain=full_domain, serial=state.serial, not_after=state.not_after, days=days
        )
    ]


def decide_revoke(state: CertificateState, *, full_domain: str, reason: str) -> list[Event]:
    if state.serial is None:
        raise NotFound("this domain has no certificate to revoke")
    return [CertificateRevoked(full_domain=full_domain, serial=state.serial, reason=reason)]
