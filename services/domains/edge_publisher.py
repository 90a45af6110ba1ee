"""The edge publisher: keeps the edge bucket in line with the events.

Two durable consumers of the domains context:

- `domains_edge_routes` (the domains stream): after any event of a domain,
  the domain's state is loaded from its events and written as its route when
  it is verified, or deleted when it is not (any longer) routable. The state is
  loaded again after the write; if the domain moved on meanwhile (another
  replica, a quick second change), the write is redone, so the last write is
  always of the latest state.
- `domains_edge_upstreams` (the deploy stream): each successful deployment
  with a stable address becomes the upstream of its service in its
  environment, unless a later success (by stream sequence) is there already;
  a deleted service's upstreams are removed.

Every write is idempotent: a redelivered event writes what is there already.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from libs.aggregate import load_state
from libs.consumers import DurableConsumer
from libs.events import meta_from_headers
from libs.eventstore import EventStore
from services.deploy.events import CODECS as DEPLOY_CODECS
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.deploy.events import DeploymentSucceeded
from services.deploy.handlers.aggregates import DEPLOYMENTS
from services.domains.decider import VERIFIED, DomainState
from services.domains.events import STREAM
from services.domains.handlers import DOMAINS
from services.edge import table

log = structlog.get_logger("domains.edge")

ROUTES = "domains_edge_routes"
UPSTREAMS = "domains_edge_upstreams"


def route_of(state: DomainState) -> table.Route | None:
    """What the edge serves for a domain in `state`: nothing until it is verified."""
    if not state.exists or state.verification_status != VERIFIED:
        return None
    assert state.domain_id
    assert state.organization_id
    assert state.service_id
    assert state.environment_id
    return table.Route(
        domain_id=state.domain_id,
        organization_id=state.organization_id,
        full_domain=state.full_domain,
        service_id=state.service_id,
        environment_id=state.environment_id,
        redirect_to=state.redirect_to,
        redirect_https=state.redirect_https,
        ssl_enabled=state.ssl_enabled,
    )


class EdgePublisher:
    def __init__(self, store: EventStore, kv: KeyValue, *, batch: int = 128) -> None:
        self.store = store
        self.kv = kv
        self.batch = batch

    def _consumer(self, context: str, name: str) -> DurableConsumer:
        return DurableConsumer(
            self.store.js,
            self.store.stream_name(context),
            ConsumerConfig(
                durable_name=name,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=1024,
            ),
            batch=self.batch,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            self._consumer(STREAM.context, ROUTES).run(self._routes, stop),
            self._consumer(DEPLOY_STREAM.context, UPSTREAMS).run(self._upstreams, stop),
        )

    # --- routes --------------------------------------------------------------------------

    async def _routes(self, msgs: list[Msg]) -> None:
        done: set[str] = set()  # a batch's many events of one domain: written once
        for msg in msgs:
            meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
            if meta.aggregate == "domain" and meta.aggregate_id not in done:
                await self.publish_route(meta.aggregate_id)
                done.add(meta.aggregate_id)
            await msg.ack()

    async def publish_route(self, domain_id: str) -> None:
        """Write the domain's route as its events say now (or delete it)."""
        while True:
            state, version = await load_state(self.store, DOMAINS, domain_id)
            route = route_of(state)
            key = table.route_key(domain_id)
            if route is None:
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await self.kv.delete(key)
            else:
                await self.kv.put(key, table.encode(route))
            _, now = await load_state(self.store, DOMAINS, domain_id)
            if now == version:
                return

    # --- upstreams -----------------------------------------------------------------------

    async def _upstreams(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
            if meta.event_type == "deployment.succeeded":
                event = DEPLOY_CODECS["deployment"].decode(
                    msg.data, meta.event_type, meta.schema_version
                )
                assert isinstance(event, DeploymentSucceeded)
                if event.address:
                    await self._succeeded(
                        meta.aggregate_id, event.address, msg.metadata.sequence.stream
                    )
            elif meta.event_type == "service.deleted":
                await self._service_deleted(meta.aggregate_id)
            await msg.ack()

    async def _succeeded(self, deployment_id: str, address: str, sequence: int) -> None:
        deployment, _ = await load_state(self.store, DEPLOYMENTS, deployment_id)
        if deployment.service_id is None or deployment.environment_id is None:
            return
        key = table.upstream_key(deployment.service_id, deployment.environment_id)
        upstream = table.Upstream(address=address, deployment_id=deployment_id, sequence=sequence)
        while True:
            try:
                current = await self.kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                current = None
            if current is not None and current.value:  # noqa: SIM102
                if table.UPSTREAM.decode(current.value).sequence >= sequence:
                    return  # a later success is served already
            try:
                if current is None or current.revision is None:
                    await self.kv.create(key, table.encode(upstream))
                else:
                    await self.kv.update(key, table.encode(upstream), last=current.revision)
                log.info("edge_upstream", key=key, address=address, deployment_id=deployment_id)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # written meanwhile: look again

    async def _service_deleted(self, service_id: str) -> None:
        try:
            keys = await self.kv.keys(filters=[f"upstream.{service_id}.*"])
        except nats.js.errors.NoKeysError:
            return
        for key in keys:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await self.kv.delete(key)
