"""Provisioning jobs: each requested, changed or deleted resource carried out at the
provider, its outcome recorded as an event.

A durable consumer of the drift stream (`drift_jobs`) takes every
`infrastructure.resource_requested`, `_change_requested` and
`_deletion_requested`, does the work with the environment's credentials, and
appends `provisioned`, `updated`, `deleted` or `failed`; the message is
acknowledged only then. Every provider call is idempotent (services/drift/
aws_provision.py), so a job delivered again after a crash finishes what the
first attempt began instead of making a resource twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import asyncpg
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.aggregate import change, load_state
from libs.consumers import DurableConsumer, in_progress
from libs.crypto import SecretBox
from libs.events import Event, EventContext, meta_from_headers
from libs.eventstore import EventStore
from services.deploy.handlers.aggregates import ENVIRONMENTS
from services.deploy.handlers.resources import CREDENTIALS
from services.drift import resources as r
from services.drift import specs
from services.drift.aws import Credentials
from services.drift.aws_provision import AwsProvisioner
from services.drift.events import STREAM
from services.drift.handlers import RESOURCES
from services.drift.ignore_rules import silenced
from services.drift.rule_store import rules_of

log = structlog.get_logger("drift.jobs")

DURABLE = "drift_jobs"
WATCHED = frozenset(
    {
        "infrastructure.resource_requested",
        "infrastructure.resource_change_requested",
        "infrastructure.resource_reprovision_requested",
        "infrastructure.resource_deletion_requested",
    }
)


class ProviderUnavailable(Exception):
    """No way to reach the provider for this environment (no credentials, say)."""


async def open_provider(
    store: EventStore,
    box: SecretBox | None,
    environment_id: str,
    region: str,
    endpoint_url: str | None,
) -> AwsProvisioner:
    """The provider client with the environment's credentials (opened only here)."""
    environment, _ = await load_state(store, ENVIRONMENTS, environment_id)
    if environment.credentials_sealed is None or box is None:
        raise ProviderUnavailable("the environment has no AWS credentials")
    sealed = json.loads(box.open(environment.credentials_sealed, purpose=CREDENTIALS))
    try:
        credentials = Credentials(
            access_key_id=str(sealed["aws_access_key_id"]),
            secret_access_key=str(sealed["aws_secret_access_key"]),
            session_token=sealed.get("aws_session_token"),
        )
    except KeyError as exc:
        raise ProviderUnavailable(f"the environment's credentials lack {exc.args[0]}") from None
    return AwsProvisioner(
        region, credentials, endpoint_url=endpoint_url, environment_id=environment_id
    )


class Jobs:
    def __init__(
        self,
        store: EventStore,
        box: SecretBox | None,
        database_url: str,
        *,
        endpoint_url: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.box = box
        self.database_url = database_url
        self.endpoint_url = endpoint_url
        self.clock = clock

    def consumer(self) -> DurableConsumer:
        return DurableConsumer(
            self.store.js,
            self.store.stream_name(STREAM.context),
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=256,
            ),
            batch=16,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer().run(self._handle, stop)

    async def _handle(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
            if meta.event_type in WATCHED:
                async with in_progress(msg, every=15):
                    await self.carry_out(meta.aggregate_id)
            await msg.ack()

    async def provisioner(self, state: r.ResourceState) -> AwsProvisioner:
        return await open_provider(
            self.store, self.box, state.environment_id or "", state.region, self.endpoint_url
        )

    async def carry_out(self, resource_id: str) -> None:
        state, _ = await load_state(self.store, RESOURCES, resource_id)
        if state.status not in r.BUSY:
            return  # done already: a redelivery after the outcome was recorded
        context = EventContext(actor="system:drift", organization_id=state.organization_id)
        operation = state.operation or "provision"
        try:
            aws = await self.provisioner(state)
            spec = specs.check(state.type, state.specs)
            spec = await self._resolved(state, spec)
            if state.status == r.PROVISIONING:
                provider_id = await aws.provision(resource_id, state.type, spec, state.tags)
                attributes = await self._attributes(aws, state.type, resource_id)
                decide: Callable[[r.ResourceState], list[Event]] = partial(
                    r.decide_provisioned, provider_id=provider_id, attributes=attributes
                )
            elif state.status == r.UPDATING:
                await aws.apply(
                    state.type, resource_id, state.provider_id or "", spec, state.tags,
                    ignore=await self._ignored(state),
                )  # fmt: skip
                attributes = await self._attributes(aws, state.type, resource_id)
                decide = partial(r.decide_updated, attributes=attributes)
            else:
                await aws.delete(state.type, resource_id, state.provider_id)
                decide = r.decide_deleted
        except (ProviderUnavailable, ClientError, BotoCoreError, ValueError) as exc:
            error = _reason(exc)
            log.info(
                "resource_job_failed", resource_id=resource_id, operation=operation, error=error
            )
            await change(
                self.store,
                RESOURCES,
                resource_id,
                lambda s: r.decide_failed(s, operation, error),
                lambda _: context,
            )
            return
        await change(self.store, RESOURCES, resource_id, decide, lambda _: context)
        log.info("resource_job_done", resource_id=resource_id, operation=operation)

    async def _resolved(self, state: r.ResourceState, spec: specs.Spec) -> specs.Spec:
        """A server's security groups named by DeployForge id, as the provider's ids."""
        if not isinstance(spec, specs.ServerSpec) or not spec.security_group_ids:
            return spec
        resolved = []
        for ref in spec.security_group_ids:
            if not ref.startswith("res_"):
                resolved.append(ref)
                continue
            group, _ = await load_state(self.store, RESOURCES, ref)
            if (
                not group.exists
                or group.environment_id != state.environment_id
                or group.provider_id is None
            ):
                raise ProviderUnavailable(f"security group {ref} is not provisioned here")
            resolved.append(group.provider_id)
        return specs.ServerSpec(**{**_fields(spec), "security_group_ids": resolved})

    async def _ignored(self, state: r.ResourceState) -> tuple[str, ...]:
        """What a change a finding asked for (remediate, accept) leaves alone: the places
        the environment's ignore rules name for this resource. A person's own PATCH
        applies the spec whole."""
        if state.reason is None or state.resource_id is None:
            return ()
        conn = await asyncpg.connect(self.database_url)
        try:
            rules = await rules_of(conn, state.environment_id or "")
        finally:
            await conn.close()
        address = f"aws/{state.type}/{state.resource_id}"
        found = silenced(rules, state.type, state.resource_id, address, self.clock())
        return ("",) if found.whole else found.pointers

    @staticmethod
    async def _attributes(aws: AwsProvisioner, kind: str, resource_id: str) -> dict[str, Any]:
        observed = await aws.observe(kind, resource_id)
        return observed.attributes if observed is not None else {}


def _fields(spec: specs.Spec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__struct_fields__}


def _reason(exc: Exception) -> str:
    """What went wrong, for the event and the API: the provider's message, never a key."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return str(exc) or type(exc).__name__
