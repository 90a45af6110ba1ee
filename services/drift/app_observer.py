"""The app half of a scan's reading: what should run (the deploy context's read model and
events) and what runs (each agent serving the environment, asked directly).

The agents to ask are those whose instance reports name the environment. Each
is asked over NATS (`agent.<id>.observe`) with a fresh salt; one that does not
answer in time makes its services unread. The service's current environment
variables are opened here, hashed with the same salt, and forgotten.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from libs.aggregate import load_state
from libs.crypto import SecretBox
from libs.eventstore import EventStore
from services.deploy import instance_state
from services.deploy.decider.services import EnvVar
from services.deploy.handlers.aggregates import SECRET_ENV, SERVICES
from services.deploy.observe import Observation, ObserveRequest, env_digest, subject
from services.drift.apps import DesiredService

ASK_TIMEOUT = 5.0
# A deployment in these states is changing what runs: a scan then would report its work.
DEPLOYING = ("dispatched", "initializing", "running")


class AppReading(msgspec.Struct, frozen=True, kw_only=True):
    desired: list[DesiredService]
    observations: list[Observation]
    unread_services: list[str]
    unanswered_agents: list[str]


async def deploying(conn: asyncpg.Connection, environment_id: str) -> str | None:
    """A deployment changing the environment now, if one is."""
    row = await conn.fetchrow(
        "SELECT id FROM deploy.deployments WHERE environment_id = $1 AND status = ANY($2)"
        " ORDER BY created_at LIMIT 1",
        environment_id,
        list(DEPLOYING),
    )
    return str(row["id"]) if row else None


class AppObserver:
    def __init__(
        self, store: EventStore, nc: NATS, box: SecretBox | None, *, timeout: float = ASK_TIMEOUT
    ) -> None:
        self.store = store
        self.nc = nc
        self.box = box
        self.timeout = timeout

    async def read(self, conn: asyncpg.Connection, environment_id: str) -> AppReading:
        salt = secrets.token_bytes(32)
        desired = await self._desired(conn, environment_id, salt)
        if not desired:
            return AppReading(desired=[], observations=[], unread_services=[],
                              unanswered_agents=[])  # fmt: skip
        kv = await instance_state.bucket(self.store.js, self.store.namespace)
        reports = await instance_state.of_environment(kv, environment_id)
        agents: dict[str, set[str]] = {}
        for report in reports:
            agents.setdefault(report.agent_id, set()).add(report.service_id)
        answers = await asyncio.gather(
            *(self._ask(agent, environment_id, salt) for agent in sorted(agents))
        )
        observations = [a for a in answers if a is not None]
        unanswered = [agent for agent, a in zip(sorted(agents), answers, strict=True) if a is None]
        answered_services = {r.service_id for o in observations for r in o.routes}
        unread = sorted({s for agent in unanswered for s in agents[agent]} - answered_services)
        return AppReading(
            desired=desired,
            observations=observations,
            unread_services=unread,
            unanswered_agents=unanswered,
        )

    async def _ask(self, agent_id: str, environment_id: str, salt: bytes) -> Observation | None:
        request = ObserveRequest(environment_id=environment_id, salt=salt.hex())
        try:
            reply = await self.nc.request(
                subject(self.store.namespace, agent_id),
                msgspec.json.encode(request),
                timeout=self.timeout,
            )
            return msgspec.json.decode(reply.data, type=Observation)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, msgspec.DecodeError):
            return None

    async def _desired(
        self, conn: asyncpg.Connection, environment_id: str, salt: bytes
    ) -> list[DesiredService]:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (service_id) service_id, id, release_id FROM deploy.deployments"
            " WHERE environment_id = $1 AND status = 'succeeded' AND release_id IS NOT NULL"
            " ORDER BY service_id, finished_at DESC, id DESC",
            environment_id,
        )
        releases: dict[str, set[str]] = {}
        for row in await conn.fetch(
            "SELECT service_id, release_id FROM deploy.deployments"
            " WHERE service_id = ANY($1) AND release_id IS NOT NULL",
            [row["service_id"] for row in rows],
        ):
            releases.setdefault(row["service_id"], set()).add(row["release_id"])
        desired = []
        for row in rows:
            service, _ = await load_state(self.store, SERVICES, row["service_id"])
            if not service.exists:
                continue
            desired.append(
                DesiredService(
                    service_id=row["service_id"],
                    release_id=row["release_id"],
                    deployment_id=row["id"],
                    env={k: env_digest(salt, k, self._reveal(v)) for k, v in service.env.items()},
                    releases=frozenset(releases.get(row["service_id"], ())),
                    run_command=list(service.run_command),
                )
            )
        return desired

    def _reveal(self, var: EnvVar) -> str:
        if var.value_sealed is not None:
            if self.box is None:
                return ""
            return self.box.open(var.value_sealed, purpose=SECRET_ENV).decode()
        return var.value or ""
