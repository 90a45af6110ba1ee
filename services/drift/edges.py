"""What the edge routes and serves against the domains context. Pure.

Desired, for each verified domain of the environment: the service it goes to,
its redirect and TLS settings, and the certificate issued for it (serial and
expiry). Actual: what each edge replica answered (services/edge/observe.py),
from what it has loaded. The findings, for each replica:

- `domain/<id>/edge/<replica>`, a `route`: a verified domain the replica does
  not route (missing), routes elsewhere or otherwise (changed), or a domain of
  the environment it routes that is no longer verified (unexpected);
- `domain/<id>/edge/<replica>/certificate`, a `certificate`: not the one
  issued (`/serial`), or one whose expiry has passed (`/not_after`, critical).

No replica answering makes every verified domain unread (`could_not_read`):
nothing about them is reported, and nothing of theirs resolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from services.drift import findings as f
from services.drift.apps import Findings
from services.drift.compare import Found
from services.drift.diff import Difference
from services.drift.ignore_rules import IgnoreRule
from services.edge.observe import EdgeObservation, RouteSeen

STILL_VALID = "a date to come"
COMPARED = ("service_id", "redirect_to", "ssl_enabled")


class DesiredDomain(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str
    full_domain: str
    service_id: str
    redirect_to: str | None
    ssl_enabled: bool
    certificate_serial: str | None  # of the certificate issued; None: none issued (yet)


class EdgeScan(msgspec.Struct, frozen=True, kw_only=True):
    found: list[Found]
    could_not_read: list[str]
    replicas: int


def domain_address(domain_id: str) -> str:
    return f"domain/{domain_id}"


def compare_edges(
    desired: Iterable[DesiredDomain],
    observations: Iterable[EdgeObservation],
    *,
    now: datetime,
    rules: Iterable[IgnoreRule] = (),
) -> EdgeScan:
    wanted = {domain.domain_id: domain for domain in desired}
    seen = sorted(observations, key=lambda o: o.replica_id)
    out = Findings(list(rules), now)
    if not seen:
        unread = sorted(domain_address(d) for d in wanted)
        return EdgeScan(found=[], could_not_read=unread, replicas=0)
    for observation in seen:
        routes = {route.domain_id: route for route in observation.routes}
        for domain in wanted.values():
            address = f"{domain_address(domain.domain_id)}/edge/{observation.replica_id}"
            route = routes.get(domain.domain_id)
            if route is None:
                out.add("route", address, f.MISSING)
                continue
            out.add("route", address, f.CHANGED, _route_differences(domain, route))
            if domain.ssl_enabled:
                out.add(
                    "certificate",
                    f"{address}/certificate",
                    f.CHANGED,
                    _certificate_differences(domain, route, now),
                )
        for route in observation.routes:
            if route.domain_id not in wanted:
                address = f"{domain_address(route.domain_id)}/edge/{observation.replica_id}"
                out.add("route", address, f.UNEXPECTED)
    out.found.sort(key=lambda one: one.finding.address)
    return EdgeScan(found=out.found, could_not_read=[], replicas=len(seen))


def _route_differences(domain: DesiredDomain, route: RouteSeen) -> list[Difference]:
    return [
        Difference(pointer=f"/{name}", expected=getattr(domain, name), actual=getattr(route, name))
        for name in COMPARED
        if getattr(domain, name) != getattr(route, name)
    ]


def _certificate_differences(
    domain: DesiredDomain, route: RouteSeen, now: datetime
) -> list[Difference]:
    out = []
    if route.certificate_serial != domain.certificate_serial:
        out.append(
            Difference(
                pointer="/serial",
                expected=domain.certificate_serial,
                actual=route.certificate_serial,
            )
        )
    expiry = route.certificate_not_after
    if expiry is not None and expiry <= now:
        out.append(
            Difference(pointer="/not_after", expected=STILL_VALID, actual=expiry.isoformat())
        )
    return out
