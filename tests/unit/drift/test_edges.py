"""What the edge routes and serves against the domains context: a route missing,
elsewhere or left behind; a certificate not the one issued, or expired; a replica
that did not answer reports nothing and resolves nothing."""

from __future__ import annotations

import datetime as dt

from services.drift.edges import DesiredDomain, compare_edges
from services.drift.ignore_rules import IgnoreRule
from services.edge.observe import EdgeObservation, RouteSeen

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
SHOP = DesiredDomain(
    domain_id="dom_1",
    full_domain="shop.example.com",
    service_id="svc_1",
    redirect_to=None,
    ssl_enabled=True,
    certificate_serial="0a1b",
)


def _route(**changed: object) -> RouteSeen:
    fields: dict[str, object] = {
        "domain_id": "dom_1",
        "full_domain": "shop.example.com",
        "service_id": "svc_1",
        "redirect_to": None,
        "ssl_enabled": True,
        "upstream": "http://127.0.0.1:9000",
        "certificate_serial": "0a1b",
        "certificate_not_after": NOW + dt.timedelta(days=60),
    }
    return RouteSeen(**{**fields, **changed})  # type: ignore[arg-type]


def _edge(*routes: RouteSeen, replica: str = "edge_a") -> EdgeObservation:
    return EdgeObservation(replica_id=replica, routes=list(routes))


def _found(*observations: EdgeObservation, rules: list[IgnoreRule] | None = None) -> dict:
    scan = compare_edges([SHOP], observations, now=NOW, rules=rules or [])
    return {one.finding.address: one.finding for one in scan.found}


def test_a_replica_serving_what_the_domains_context_says_has_no_finding() -> None:
    assert _found(_edge(_route()), _edge(_route(), replica="edge_b")) == {}


def test_a_replica_that_does_not_route_a_verified_domain_is_missing_it() -> None:
    found = _found(_edge(_route()), _edge(replica="edge_b"))
    [(address, finding)] = found.items()
    assert address == "domain/dom_1/edge/edge_b"
    assert (finding.resource_type, finding.kind, finding.severity) == ("route", "missing", "high")


def test_a_route_to_another_service_is_changed_with_its_difference() -> None:
    [finding] = _found(_edge(_route(service_id="svc_9"))).values()
    assert finding.kind == "changed" and finding.severity == "high"
    [difference] = finding.differences
    assert (difference.pointer, difference.expected, difference.actual) == (
        "/service_id",
        "svc_1",
        "svc_9",
    )


def test_a_domain_no_longer_verified_but_still_routed_is_unexpected() -> None:
    gone = _route(domain_id="dom_2", full_domain="old.example.com")
    found = _found(_edge(_route(), gone))
    assert found["domain/dom_2/edge/edge_a"].kind == "unexpected"


def test_a_certificate_not_the_one_issued_or_expired_is_found_and_expired_is_critical() -> None:
    stale = _found(_edge(_route(certificate_serial="ffff")))
    [finding] = stale.values()
    assert finding.address == "domain/dom_1/edge/edge_a/certificate"
    assert (finding.resource_type, finding.severity) == ("certificate", "high")
    expired = _found(_edge(_route(certificate_not_after=NOW - dt.timedelta(hours=1))))
    [finding] = expired.values()
    assert [d.pointer for d in finding.differences] == ["/not_after"]
    assert finding.severity == "critical"


def test_no_replica_answering_reports_nothing_and_names_what_it_could_not_read() -> None:
    scan = compare_edges([SHOP], [], now=NOW)
    assert (scan.found, scan.could_not_read, scan.replicas) == ([], ["domain/dom_1"], 0)


def test_an_ignore_rule_silences_a_route_difference() -> None:
    rule = IgnoreRule(resource_type="route", resource="*", pointer="/service_id")
    assert _found(_edge(_route(service_id="svc_9")), rules=[rule]) == {}
