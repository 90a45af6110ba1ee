"""A domain's certificate, given its events: ordered once verified, resumed not reopened,
renewed when due and not before, retried with backoff, announced before expiry, revoked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce

import msgspec
import pytest

from libs.errors import Conflict, NotFound
from libs.events import Event
from services.domains import certificates as c
from services.domains import decider as d
from services.domains.events import (
    CertificateExpiring,
    CertificateFailed,
    CertificateIssued,
    CertificateOrderPlaced,
    CertificateRenewed,
    CertificateRequested,
    CertificateRevoked,
    DomainAdded,
    DomainUpdated,
    DomainVerified,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ADDED = DomainAdded(
    domain_id="dom_1",
    organization_id="org_1",
    full_domain="app.example.com",
    domain="example.com",
    service_id="svc_1",
    environment_id="env_1",
    verification_token="t",
)
VERIFIED = DomainVerified(dns_configured=True)
ISSUED = c.Issued(
    serial="0a1b",
    issuer="CN=Pebble Intermediate CA",
    names=["app.example.com"],
    not_before=NOW,
    not_after=NOW + timedelta(days=90),
    fingerprint_sha256="ab" * 32,
)


def domain(*events: Event) -> d.DomainState:
    return reduce(d.evolve_domain, (ADDED, *events), d.DomainState())


def certificate(*events: Event) -> c.CertificateState:
    return reduce(c.evolve_certificate, events, c.CertificateState())


def requested(reason: str = "issue") -> CertificateRequested:
    [event] = c.decide_request(certificate(), domain(VERIFIED), reason=reason, now=NOW)
    assert isinstance(event, CertificateRequested)
    return event


def issued(state: c.CertificateState, facts: c.Issued = ISSUED) -> Event:
    [event] = c.decide_issued(
        state,
        facts,
        full_domain="app.example.com",
        renewal_due_at=c.renewal_due(facts, None),
        order_url="https://ca/order/1",
    )
    return event


def test_nothing_is_ordered_before_the_domain_is_verified() -> None:
    with pytest.raises(Conflict, match="not verified"):
        c.decide_request(certificate(), domain(), reason="issue", now=NOW)


def test_nothing_is_ordered_when_tls_is_turned_off() -> None:
    off = domain(VERIFIED, DomainUpdated(changes={"ssl_enabled": False}))
    with pytest.raises(Conflict, match="ssl_enabled"):
        c.decide_request(certificate(), off, reason="issue", now=NOW)


def test_a_verified_domain_gets_one_request_for_its_name_and_challenge() -> None:
    event = requested()
    assert (event.names, event.challenge, event.reason) == (["app.example.com"], "http-01", "issue")
    # While it is in flight, asking again changes nothing.
    assert c.decide_request(certificate(event), domain(VERIFIED), reason="force", now=NOW) == []


def test_an_order_is_recorded_once_and_cleared_by_the_outcome() -> None:
    state = certificate(requested())
    [placed] = c.decide_order_placed(state, "https://ca/order/1")
    state = c.evolve_certificate(state, placed)
    assert state.order_url == "https://ca/order/1"
    assert c.decide_order_placed(state, "https://ca/order/1") == []
    assert c.evolve_certificate(state, issued(state)).order_url is None


def test_a_served_certificate_is_not_reissued_unless_forced_or_due() -> None:
    state = certificate(requested())
    state = c.evolve_certificate(state, issued(state))
    verified = domain(VERIFIED)
    assert c.decide_request(state, verified, reason="issue", now=NOW) == []
    assert c.decide_request(state, verified, reason="renew", now=NOW) == []
    due = NOW + timedelta(days=60)  # a third of 90 days left
    [renew] = c.decide_request(state, verified, reason="renew", now=due)
    assert isinstance(renew, CertificateRequested) and renew.reason == "renew"
    [force] = c.decide_request(state, verified, reason="force", now=NOW)
    assert isinstance(force, CertificateRequested)


def test_renewal_is_due_when_the_ca_suggests_or_with_a_third_of_the_lifetime_left() -> None:
    assert c.renewal_due(ISSUED, None) == NOW + timedelta(days=60)
    short = msgspec.structs.replace(ISSUED, not_after=NOW + timedelta(minutes=6))
    assert c.renewal_due(short, None) == NOW + timedelta(minutes=4)
    suggested = NOW + timedelta(days=45)
    assert c.renewal_due(ISSUED, suggested) == suggested


def test_the_same_certificate_downloaded_again_is_recorded_once() -> None:
    state = certificate(requested())
    state = c.evolve_certificate(state, issued(state))
    again = c.decide_issued(
        state, ISSUED, full_domain="app.example.com", renewal_due_at=NOW, order_url="u"
    )
    assert again == []


def test_a_second_certificate_is_a_renewal_naming_the_previous_one() -> None:
    state = certificate(requested())
    state = c.evolve_certificate(state, issued(state))
    state = c.evolve_certificate(state, requested("force"))
    event = issued(state, msgspec.structs.replace(ISSUED, serial="0c0d"))
    assert isinstance(event, CertificateRenewed)
    assert event.previous_serial == "0a1b"


def test_failures_back_off_doubling_to_the_cap_and_keep_the_served_certificate() -> None:
    initial, most = HOUR, timedelta(hours=32)
    assert [c.backoff(n, initial=initial, most=most) / HOUR for n in range(1, 8)] == [
        1, 2, 4, 8, 16, 32, 32,
    ]  # fmt: skip
    state = certificate(requested())
    [failed] = c.decide_failed(
        state, "no route", full_domain="app.example.com", now=NOW, initial=initial, most=most
    )
    assert isinstance(failed, CertificateFailed)
    assert (failed.attempts, failed.retry_at) == (1, NOW + HOUR)
    state = c.evolve_certificate(state, failed)
    assert state.status == c.FAILED
    verified = domain(VERIFIED)
    assert c.decide_request(state, verified, reason="retry", now=NOW) == []
    [retry] = c.decide_request(state, verified, reason="retry", now=NOW + HOUR)
    state = c.evolve_certificate(state, retry)
    [second] = c.decide_failed(
        state, "again", full_domain="app.example.com", now=NOW, initial=initial, most=most
    )
    assert isinstance(second, CertificateFailed) and second.attempts == 2
    # A renewal that fails leaves the served certificate in place.
    served = certificate(requested())
    served = c.evolve_certificate(served, issued(served))
    served = c.evolve_certificate(served, requested("force"))
    [failed] = c.decide_failed(
        served, "x", full_domain="app.example.com", now=NOW, initial=initial, most=most
    )
    after = c.evolve_certificate(served, failed)
    assert (after.status, after.serial) == (c.ISSUED, "0a1b")
    # ... and its renewal, due already, waits for the retry time like any retry.
    due = NOW + timedelta(days=61)
    waited = msgspec.structs.replace(after, retry_at=due + HOUR)
    assert c.decide_request(waited, verified, reason="renew", now=due) == []
    assert c.decide_request(waited, verified, reason="renew", now=due + HOUR) != []


def test_expiry_is_announced_once_per_threshold_crossed() -> None:
    state = certificate(requested())
    state = c.evolve_certificate(state, issued(state))
    thresholds = [14, 7, 1]
    end = NOW + timedelta(days=90)

    def expiring(at: datetime) -> list[Event]:
        return c.decide_expiring(state, full_domain="a", now=at, thresholds=thresholds)

    assert expiring(end - timedelta(days=20)) == []
    [first] = expiring(end - timedelta(days=13))
    assert isinstance(first, CertificateExpiring) and first.days == 14
    state = c.evolve_certificate(state, first)
    assert expiring(end - timedelta(days=12)) == []
    [second] = expiring(end - timedelta(hours=5))  # 7 was skipped: the most urgent is said
    assert isinstance(second, CertificateExpiring) and second.days == 1


def test_revoking_needs_a_served_certificate_and_clears_it() -> None:
    with pytest.raises(NotFound):
        c.decide_revoke(certificate(), full_domain="a", reason="unspecified")
    state = certificate(requested())
    state = c.evolve_certificate(state, issued(state))
    [revoked] = c.decide_revoke(state, full_domain="a", reason="keyCompromise")
    assert isinstance(revoked, CertificateRevoked) and revoked.serial == "0a1b"
    after = c.evolve_certificate(state, revoked)
    assert (after.status, after.serving) == (c.REVOKED, False)


def test_an_order_placed_after_the_request_ended_is_ignored() -> None:
    state = certificate(requested())
    state = c.evolve_certificate(state, issued(state))
    assert c.decide_order_placed(state, "https://ca/order/2") == []
    assert isinstance(CertificateOrderPlaced(order_url="x"), CertificateOrderPlaced)
    assert isinstance(issued(certificate(requested())), CertificateIssued)
