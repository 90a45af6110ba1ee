"""The dispatch process: every deployment reaches its slot, its agent and its end.

Creating, cancelling and finishing a deployment each take several appends to
two aggregates (the deployment, its organization's queue) and a job publish.
The command does them inline, for a prompt answer, but a crash between two of
them used to leave a deployment at `created` forever, or a slot held by a job
never published: five of those and an organization could never deploy again.

So a durable consumer of the deploy stream (`deploy_dispatch`) looks at every
deployment an event is about and does whatever step is missing. `reconcile`
decides, from the deployment's and the queue's current state, the steps that
bring them in line; every step is idempotent (and conditional on the state it
is appended against), so repeating one after a crash, or doing one the
command is doing at the same moment, changes nothing twice. The consumer acks
an event only once its steps are done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from libs.aggregate import load_state
from libs.consumers import DurableConsumer
from libs.errors import DomainError
from libs.events import EventCodec, EventContext, EventMeta, meta_from_headers
from libs.tracing import continued, current_traceparent
from services.deploy.events import CODECS, STREAM
from services.deploy.handlers.aggregates import DEPLOYMENTS, DeployDeps
from services.deploy.handlers.deployments import carry_out
from services.deploy.reconcile import WATCHED, deployment_of, reconcile

log = structlog.get_logger("deploy.dispatch")
tracer = trace.get_tracer("deployforge.deploy")

DURABLE = "deploy_dispatch"


class DispatchProcess:
    """Runs `reconcile` for the deployment of every watched event on the deploy stream."""

    def __init__(self, deps: DeployDeps, *, batch: int = 64) -> None:
        self.deps = deps
        self.batch = batch

    def consumer(self) -> DurableConsumer:
        store = self.deps.store
        store.register(STREAM)
        return DurableConsumer(
            store.js,
            store.stream_name(STREAM.context),
            ConsumerConfig(
                durable_name=DURABLE,
                # From the first event the first time: deployments stranded by an
                # earlier version are finished too.
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=1024,
            ),
            batch=self.batch,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer().run(self._handle, stop)

    async def _handle(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                await self.step(msg)
            except DomainError as exc:
                # A refusal will not change by itself soon: look again later.
                log.info("dispatch_step_refused", subject=msg.subject, error=exc.message)
                await msg.nak(delay=5)
                continue
            await msg.ack()

    async def step(self, msg: Msg) -> None:
        """Do what the deployment `msg` is about still lacks."""
        store = self.deps.store
        meta = meta_from_headers(msg.subject, msg.headers or {}, store.namespace)
        if meta.event_type not in WATCHED:
            return
        codec = CODECS.get(meta.aggregate)
        if codec is None:
            return
        with (
            continued(tracer, f"dispatch after {meta.event_type}", meta.traceparent),
            structlog.contextvars.bound_contextvars(correlation_id=meta.correlation_id),
        ):
            await self._reconcile(msg, meta, codec)

    async def _reconcile(self, msg: Msg, meta: EventMeta, codec: EventCodec[Any]) -> None:
        store = self.deps.store
        event = codec.decode(msg.data, meta.event_type, meta.schema_version)
        deployment_id = deployment_of(meta.aggregate, meta.aggregate_id, event)
        if deployment_id is None:
            return
        deployment, _ = await load_state(store, DEPLOYMENTS, deployment_id)
        org = deployment.organization_id
        if org is None:
            return
        queue, _ = await self.deps.dispatch.load_state(store, org)
        steps = reconcile(deployment, queue)
        if not steps:
            return
        # What this causes is caused by the event: its correlation and trace go on.
        context = EventContext(
            actor=meta.actor,
            credential=meta.credential,
            organization_id=org,
            correlation_id=meta.correlation_id,
            causation_id=meta.event_id,
            traceparent=current_traceparent(),
        )
        log.info(
            "dispatch_step",
            deployment_id=deployment_id,
            steps=[type(s).__name__ for s in steps],
            after=meta.event_type,
        )
        for one in steps:
            await carry_out(self.deps, context, deployment, one)
