"""Reading what the edge routes and serves for an environment: the verified domains
from the domains context's read model, and every edge replica's answer to
`edge.observe` (a request all replicas answer; the replies are gathered)."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.drift.edges import DesiredDomain
from services.edge.observe import EdgeObservation, ObserveRequest, subject

log = structlog.get_logger("drift.edges")

# How long the first replica has to answer; then, how long after the latest reply the
# others have (replicas answer from memory: a few milliseconds).
FIRST_ANSWER = 5.0
QUIET = 0.3

_DESIRED = (
    "SELECT d.id, d.full_domain, d.service_id, d.redirect_to, d.ssl_enabled,"
    " CASE WHEN c.status = 'issued' THEN c.serial END AS serial"
    " FROM domains.domains d LEFT JOIN domains.certificates c ON c.domain_id = d.id"
    " WHERE d.environment_id = $1 AND d.verification_status = 'verified' ORDER BY d.id"
)


class EdgeReading(msgspec.Struct, frozen=True, kw_only=True):
    desired: list[DesiredDomain]
    observations: list[EdgeObservation]


NOTHING_ROUTED = EdgeReading(desired=[], observations=[])


class EdgeObserver:
    def __init__(self, nc: NATS, namespace: str) -> None:
        self.nc = nc
        self.namespace = namespace

    async def read(self, conn: asyncpg.Connection, environment_id: str) -> EdgeReading:
        try:
            rows = await conn.fetch(_DESIRED, environment_id)
        except asyncpg.UndefinedTableError:  # the domains context has never run here
            return NOTHING_ROUTED
        desired = [
            DesiredDomain(
                domain_id=row["id"],
                full_domain=row["full_domain"],
                service_id=row["service_id"],
                redirect_to=row["redirect_to"],
                ssl_enabled=row["ssl_enabled"],
                certificate_serial=row["serial"],
            )
            for row in rows
        ]
        if not desired:
            return NOTHING_ROUTED
        return EdgeReading(desired=desired, observations=await self._gather(environment_id))

    async def _gather(self, environment_id: str) -> list[EdgeObservation]:
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        inbox = self.nc.new_inbox()
        subscription = await self.nc.subscribe(inbox, cb=replies.put)
        try:
            request = msgspec.json.encode(ObserveRequest(environment_id=environment_id))
            await self.nc.publish(subject(self.namespace), request, reply=inbox)
            found: dict[str, EdgeObservation] = {}
            wait = FIRST_ANSWER
            while True:
                try:
                    msg = await asyncio.wait_for(replies.get(), timeout=wait)
                except TimeoutError:
                    return sorted(found.values(), key=lambda o: o.replica_id)
                try:
                    observation = msgspec.json.decode(msg.data, type=EdgeObservation)
                except msgspec.DecodeError:
                    log.warning("edge_observation_unreadable")
                    continue
                found[observation.replica_id] = observation
                wait = QUIET
        finally:
            await subscription.unsubscribe()
