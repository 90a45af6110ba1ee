"""Domains, given their events: adding, verifying by DNS, claims across organizations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce

import pytest

from libs.errors import AuthorizationDenied, Conflict, NotFound
from libs.events import Event
from libs.principal import Principal
from services.domains import decider as d
from services.domains.events import (
    DomainAdded,
    DomainChecked,
    DomainNameClaimed,
    DomainNameReleased,
    DomainRemoved,
    DomainVerificationFailed,
    DomainVerified,
)

OWNER = Principal(user_id="usr_o", memberships={"org_1": "owner"})
DEPLOYER = Principal(user_id="usr_d", memberships={"org_1": "deployer"})
VIEWER = Principal(user_id="usr_v", memberships={"org_1": "viewer"})
OUTSIDER = Principal(user_id="usr_x", memberships={"org_2": "owner"})
ADDED = DomainAdded(
    domain_id="dom_1",
    organization_id="org_1",
    full_domain="app.example.com",
    domain="example.com",
    subdomain="app",
    service_id="svc_1",
    environment_id="env_1",
    verification_token="token-1",
)


def domain(*events: Event) -> d.DomainState:
    return reduce(d.evolve_domain, (ADDED, *events), d.DomainState())


def add(actor: Principal, service: str | None = "org_1", env: str | None = "org_1") -> list[Event]:
    return d.decide_add(
        d.DomainState(),
        actor,
        ADDED,
        service_organization=service,
        environment_organization=env,
    )


def test_a_deployer_adds_a_domain_for_a_service_of_the_organization() -> None:
    assert add(DEPLOYER) == [ADDED]
    assert domain().verification_status == d.PENDING


def test_a_viewer_cannot_add_and_an_outsider_is_told_nothing_exists() -> None:
    with pytest.raises(AuthorizationDenied):
        add(VIEWER)
    with pytest.raises(NotFound):
        add(OUTSIDER)


@pytest.mark.parametrize(
    ("service", "env", "field"),
    [
        ("org_2", "org_1", "$.service_id"),
        (None, "org_1", "$.service_id"),
        ("org_1", "org_2", "$.environment_id"),
    ],
)
def test_another_organizations_service_or_environment_does_not_exist(
    service: str | None, env: str | None, field: str
) -> None:
    with pytest.raises(NotFound) as refused:
        add(DEPLOYER, service, env)
    assert refused.value.details["field"] == field


def test_the_token_in_the_txt_record_verifies_and_the_addresses_are_recorded() -> None:
    lookup = d.Lookup(txt=["other", "token-1"], addresses=["203.0.113.10"], points_at_edge=True)

    events = d.decide_verify(domain(), DEPLOYER, lookup)

    assert events == [
        DomainVerified(
            full_domain="app.example.com", dns_configured=True, addresses=["203.0.113.10"]
        )
    ]
    assert domain(*events).verification_status == d.VERIFIED


def test_ownership_does_not_wait_for_the_addresses() -> None:
    events = d.decide_verify(domain(), DEPLOYER, d.Lookup(txt=["token-1"]))
    assert events == [DomainVerified(full_domain="app.example.com", dns_configured=False)]


@pytest.mark.parametrize(
    ("lookup", "reason"),
    [
        (d.Lookup(), "no TXT record found"),
        (d.Lookup(txt=["someone-else"]), "the TXT record does not hold this domain's token"),
        (d.Lookup(error="Timeout"), "DNS could not be read: Timeout"),
    ],
)
def test_a_failed_verification_says_why(lookup: d.Lookup, reason: str) -> None:
    [failed] = d.decide_verify(domain(), DEPLOYER, lookup)
    assert isinstance(failed, DomainVerificationFailed) and failed.reason == reason
    assert domain(failed).verification_status == d.FAILED


def test_a_verified_domain_stays_verified_when_a_later_look_fails() -> None:
    verified = DomainVerified(full_domain="app.example.com", dns_configured=True)
    [failed] = d.decide_verify(domain(verified), DEPLOYER, d.Lookup(error="Timeout"))
    assert domain(verified, failed).verification_status == d.VERIFIED


def test_verifying_again_records_only_what_changed() -> None:
    verified = DomainVerified(full_domain="app.example.com", dns_configured=False)
    same = d.Lookup(txt=["token-1"])
    moved = d.Lookup(txt=["token-1"], addresses=["203.0.113.10"], points_at_edge=True)

    assert d.decide_verify(domain(verified), DEPLOYER, same) == []
    assert d.decide_verify(domain(verified), DEPLOYER, moved) == [
        DomainChecked(dns_configured=True, addresses=["203.0.113.10"])
    ]


def test_removing_needs_admin_and_a_removed_domain_is_not_found() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_remove(domain(), DEPLOYER)
    assert d.decide_remove(domain(), OWNER) == [DomainRemoved(full_domain="app.example.com")]
    with pytest.raises(NotFound):
        d.decide_verify(domain(DomainRemoved()), OWNER, d.Lookup())


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_name_is_claimed_once_across_organizations_and_free_after_release() -> None:
    claimed = DomainNameClaimed(domain_id="dom_1", full_domain="app.example.com", claimed_at=NOW)
    held = d.evolve_name(d.NameState(), claimed)

    with pytest.raises(Conflict) as refused:
        d.decide_claim(held, domain_id="dom_2", full_domain="app.example.com", now=NOW)
    assert refused.value.details["field"] == "$.domain"
    assert d.decide_claim(held, domain_id="dom_1", full_domain="app.example.com", now=NOW) == []

    released = d.evolve_name(held, DomainNameReleased(domain_id="dom_1"))
    assert d.decide_release(held, domain_id="dom_2") == []
    assert d.decide_claim(released, domain_id="dom_2", full_domain="app.example.com", now=NOW) == [
        DomainNameClaimed(domain_id="dom_2", full_domain="app.example.com", claimed_at=NOW)
    ]


def test_a_claim_whose_domain_never_came_is_taken_over_only_after_a_while() -> None:
    held = d.evolve_name(
        d.NameState(),
        DomainNameClaimed(domain_id="dom_1", full_domain="app.example.com", claimed_at=NOW),
    )
    soon, later = NOW + timedelta(seconds=30), NOW + d.ABANDONED_CLAIM + timedelta(seconds=1)

    with pytest.raises(Conflict):  # its add may still be under way
        d.decide_claim(held, domain_id="dom_2", full_domain="x", now=soon, holder="missing")
    with pytest.raises(Conflict):  # a domain that exists keeps its name
        d.decide_claim(held, domain_id="dom_2", full_domain="x", now=later, holder="live")
    [taken] = d.decide_claim(held, domain_id="dom_2", full_domain="x", now=later, holder="missing")
    assert d.evolve_name(held, taken).domain_id == "dom_2"
    # A removal cut short before its release: the name is free at once.
    assert d.decide_claim(held, domain_id="dom_3", full_domain="x", now=soon, holder="removed")
