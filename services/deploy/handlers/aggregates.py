"""What every deploy handler shares: the aggregates it loads, the adapters it is
given (`DeployDeps`, which remembers the dispatch queue) and load-decide-append.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from nats.js.kv import KeyValue

from libs.aggregate import AggregateType, Snapshots, change
from libs.crypto import SecretBox
from libs.events import Event
from libs.eventstore import EventStore
from libs.messaging import CommandBus, CommandContext, Reply
from services.deploy import decider as d
from services.deploy.events import CODECS, STREAM

ENVIRONMENTS = AggregateType(
    "environment", CODECS["environment"], d.EnvironmentState(), d.evolve_environment
)
PROJECTS = AggregateType("project", CODECS["project"], d.ProjectState(), d.evolve_project)
SLUGS = AggregateType("project_slug", CODECS["project_slug"], d.SlugState(), d.evolve_slug)
SERVICES = AggregateType("service", CODECS["service"], d.ServiceState(), d.evolve_service)
DEPLOYMENTS = AggregateType(
    "deployment", CODECS["deployment"], d.DeploymentState(), d.evolve_deployment
)
PIPELINES = AggregateType("pipeline", CODECS["pipeline"], d.PipelineState(), d.evolve_pipeline)
DISPATCH = AggregateType("dispatch", CODECS["dispatch"], d.DispatchState(), d.evolve_dispatch)

SECRET_ENV = "service-env-var"


class DeployDeps:
    """The adapters the deploy handlers need; main.py builds the real ones."""

    def __init__(
        self,
        store: EventStore,
        box: SecretBox,
        pool: asyncpg.Pool,
        *,
        max_running: int,
        clock: Callable[[], datetime],
        bus: CommandBus | None = None,
        snapshots: KeyValue | None = None,
    ) -> None:
        self.store = store
        # The organization's queue is read on every create and finish: remembered.
        self.dispatch = Snapshots(DISPATCH, snapshots, shape=2)  # 2: history per key
        self.box = box
        self.pool = pool
        self.max_running = max_running
        self.clock = clock
        # To ask the auth service for deployment tokens (None: issue none).
        self.bus = bus


def _position(seq: int) -> str:
    return f"{STREAM.context}:{seq}"


async def _update(
    deps: DeployDeps,
    ctx: CommandContext,
    kind: AggregateType[Any],
    aggregate_id: str,
    decide: Callable[[Any], list[Event]],
) -> Reply:
    """Load, decide, append; again if someone else appended in between."""
    seq = await change(
        deps.store,
        kind,
        aggregate_id,
        decide,
        lambda state: ctx.event_context(getattr(state, "organization_id", None)),
    )
    return Reply(result=None, position=_position(seq) if seq else None)
