"""What an edge replica routes and serves for an environment, for a drift scan that asks
(`edge.observe`, answered by every replica: the scan gathers the replies).

A replica answers from memory, from what it has loaded from the edge bucket: the
routes it would follow, the upstream each goes to and the certificate it would
hand out in a handshake (its serial and expiry, never its key).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.edge.certificates import CertificateStore
from services.edge.routing import EdgeState


class ObserveRequest(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str


class RouteSeen(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str
    full_domain: str
    service_id: str
    redirect_to: str | None
    ssl_enabled: bool
    upstream: str | None  # the address requests go to; None: nowhere yet
    certificate_serial: str | None  # of the certificate served for the name, if any
    certificate_not_after: datetime | None


class EdgeObservation(msgspec.Struct, frozen=True, kw_only=True):
    replica_id: str
    routes: list[RouteSeen]


def subject(namespace: str) -> str:
    prefix = f"{namespace}." if namespace else ""
    return f"{prefix}edge.observe"


def observe(
    state: EdgeState, certificates: CertificateStore, environment_id: str, replica_id: str
) -> EdgeObservation:
    routes = []
    for route in state.routes.values():
        if route.environment_id != environment_id:
            continue
        upstream = state.upstreams.get((route.service_id, route.environment_id))
        served = certificates.entry_for(route.full_domain.lower())
        routes.append(
            RouteSeen(
                domain_id=route.domain_id,
                full_domain=route.full_domain,
                service_id=route.service_id,
                redirect_to=route.redirect_to,
                ssl_enabled=route.ssl_enabled,
                upstream=upstream.address if upstream else None,
                certificate_serial=served.serial if served else None,
                certificate_not_after=served.not_after if served else None,
            )
        )
    return EdgeObservation(replica_id=replica_id, routes=sorted(routes, key=lambda r: r.domain_id))


async def answer(
    nc: NATS, namespace: str, replica_id: str, state: EdgeState, certificates: CertificateStore
) -> Subscription:
    """Answer the scans' requests for as long as the subscription lasts."""

    async def on_request(msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=ObserveRequest)
        except msgspec.DecodeError:
            return
        observation = observe(state, certificates, request.environment_id, replica_id)
        await msg.respond(msgspec.json.encode(observation))

    return await nc.subscribe(subject(namespace), cb=on_request)
