"""The deploy read model: environments, projects, services, env vars, deployments, steps.

Timestamps come from event metadata, so a replay rebuilds identical rows.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec

from libs.events import Event, Recorded
from libs.projections import Projection
from services.deploy.events import (
    CODECS,
    STREAM,
    DeploymentCancelled,
    DeploymentCreated,
    DeploymentDispatched,
    DeploymentFailed,
    DeploymentQueued,
    DeploymentRolledBack,
    DeploymentStarted,
    DeploymentSucceeded,
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentStatusChanged,
    EnvironmentUpdated,
    EnvVarRemoved,
    EnvVarSet,
    PipelineCreated,
    PipelineDeleted,
    PipelineUpdated,
    ProjectCreated,
    ProjectDeleted,
    ProjectUpdated,
    ServiceCreated,
    ServiceDeleted,
    ServiceUpdated,
    SlotQueued,
    SlotReleased,
    SlotTaken,
    StepFinished,
    StepStarted,
)
from services.deploy.status import status_after

DDL = (Path(__file__).parent / "schema.sql").read_text()

_ENV_COLUMNS = frozenset(
    {"name", "region", "cluster", "namespace", "configuration", "resource_limits", "auto_deploy"}
)
_PROJECT_COLUMNS = frozenset({"name", "description"})
_SERVICE_COLUMNS = frozenset(
    {
        "name",
        "repository_url",
        "branch",
        "runtime",
        "build_command",
        "run_command",
        "port",
        "health_check_path",
        "replicas",
        "resources",
        "dependencies",
        "owner",
    }
)


async def _patch(
    conn: asyncpg.Connection,
    table: str,
    allowed: frozenset[str],
    row_id: str,
    changes: dict[str, object],
    at: object,
) -> None:
    """UPDATE only known columns (names from a fixed list, values as parameters)."""
    columns = [k for k in changes if k in allowed]
    if not columns:
        return
    sets = ", ".join(f"{col} = ${n}" for n, col in enumerate(columns, start=3))
    await conn.execute(
        f"UPDATE {table} SET updated_at = $2, {sets} WHERE id = $1",  # noqa: S608 (fixed names)
        row_id,
        at,
        *(changes[col] for col in columns),
    )


async def _renumber_queue(conn: asyncpg.Connection, organization_id: str) -> None:
    await conn.execute(
        "UPDATE deployments d SET queue_position = q.position FROM ("
        "  SELECT id, row_number() OVER (ORDER BY queued_seq) AS position FROM deployments"
        "  WHERE organization_id = $1 AND status = 'queued') q WHERE d.id = q.id",
        organization_id,
    )


class DeployProjection(Projection):
    name = "deploy"
    schema = "deploy"
    spec = STREAM
    ddl = DDL
    codecs = CODECS

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        event, meta = recorded.event, recorded.meta
        at, agg_id = meta.occurred_at, meta.aggregate_id
        match event:
            case EnvironmentCreated():
                await conn.execute(
                    "INSERT INTO environments (id, organization_id, name, provider, type, region,"
                    " cluster, namespace, configuration, resource_limits, auto_deploy,"
                    " has_credentials, created_at, updated_at) VALUES"
                    " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$13) ON CONFLICT DO NOTHING",
                    event.environment_id,
                    event.organization_id,
                    event.name,
                    event.provider,
                    event.environment_type,
                    event.region,
                    event.cluster,
                    event.namespace,
                    event.configuration,
                    event.resource_limits,
                    event.auto_deploy,
                    event.credentials_sealed is not None,
                    at,
                )
            case EnvironmentUpdated():
                await _patch(conn, "environments", _ENV_COLUMNS, agg_id, event.changes, at)
                if event.credentials_sealed is not None:
                    await conn.execute(
                        "UPDATE environments SET has_credentials = true WHERE id = $1", agg_id
                    )
            case EnvironmentStatusChanged():
                await conn.execute(
                    "UPDATE environments SET status = $2, updated_at = $3 WHERE id = $1",
                    agg_id,
                    event.status,
                    at,
                )
            case EnvironmentDeleted():
                await conn.execute(
                    "UPDATE environments SET deleted_at = $2, updated_at = $2 WHERE id = $1",
                    agg_id,
                    at,
                )
            case ProjectCreated():
                await conn.execute(
                    "INSERT INTO projects (id, organization_id, name, slug, description,"
                    " created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$6) ON CONFLICT DO NOTHING",
                    event.project_id,
                    event.organization_id,
                    event.name,
                    event.slug,
                    event.description,
                    at,
                )
            case ProjectUpdated():
                await _patch(conn, "projects", _PROJECT_COLUMNS, agg_id, event.changes, at)
            case ProjectDeleted():
                await conn.execute(
                    "UPDATE projects SET deleted_at = $2, updated_at = $2 WHERE id = $1",
                    agg_id,
                    at,
                )
            case ServiceCreated():
                await conn.execute(
                    "INSERT INTO services (id, organization_id, project_id, name, repository_url,"
                    " branch, runtime, build_command, run_command, port, health_check_path,"
                    " replicas, resources, dependencies, owner, created_at, updated_at) VALUES"
                    " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$16)"
                    " ON CONFLICT DO NOTHING",
                    event.service_id,
                    event.organization_id,
                    event.project_id,
                    event.name,
                    event.repository_url,
                    event.branch,
                    event.runtime,
                    event.build_command,
                    event.run_command,
                    event.port,
                    event.health_check_path,
                    event.replicas,
                    event.resources,
                    event.dependencies,
                    event.owner,
                    at,
                )
            case ServiceUpdated():
                await _patch(conn, "services", _SERVICE_COLUMNS, agg_id, event.changes, at)
            case ServiceDeleted():
                await conn.execute(
                    "UPDATE services SET deleted_at = $2, updated_at = $2 WHERE id = $1",
                    agg_id,
                    at,
                )
            case EnvVarSet():
                await conn.execute(
                    "INSERT INTO env_vars (service_id, key, secret, value, updated_at) VALUES"
                    " ($1,$2,$3,$4,$5) ON CONFLICT (service_id, key) DO UPDATE SET"
                    " secret = EXCLUDED.secret, value = EXCLUDED.value,"
                    " updated_at = EXCLUDED.updated_at",
                    agg_id,
                    event.key,
                    event.secret,
                    event.value,
                    at,
                )
            case PipelineCreated():
                await conn.execute(
                    "INSERT INTO pipelines (id, organization_id, service_id, name, steps,"
                    " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)"
                    " ON CONFLICT DO NOTHING",
                    event.pipeline_id,
                    event.organization_id,
                    event.service_id,
                    event.name,
                    msgspec.to_builtins(event.steps),
                    at,
                )
            case PipelineUpdated():
                await conn.execute(
                    "UPDATE pipelines SET name = coalesce($2, name), steps = coalesce($3, steps),"
                    " updated_at = $4 WHERE id = $1",
                    agg_id,
                    event.name,
                    None if event.steps is None else msgspec.to_builtins(event.steps),
                    at,
                )
            case PipelineDeleted():
                await conn.execute("UPDATE pipelines SET deleted_at = $2 WHERE id = $1", agg_id, at)
            case EnvVarRemoved():
                await conn.execute(
                    "DELETE FROM env_vars WHERE service_id = $1 AND key = $2", agg_id, event.key
                )
            case _:
                await self._deployment(conn, recorded)

    async def _deployment(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        event, meta = recorded.event, recorded.meta
        at, agg_id = meta.occurred_at, meta.aggregate_id
        match event:
            case DeploymentCreated():
                await conn.execute(
                    "INSERT INTO deployments (id, organization_id, project_id, service_id,"
                    " environment_id, ref, strategy, notify_channels, config, rollback_of,"
                    " pipeline_id, status, created_at, updated_at) VALUES"
                    " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$12,$13,$11,$11)"
                    " ON CONFLICT DO NOTHING",
                    event.deployment_id,
                    event.organization_id,
                    event.project_id,
                    event.service_id,
                    event.environment_id,
                    event.ref,
                    event.strategy,
                    event.notify_channels,
                    event.config,
                    event.rollback_of,
                    at,
                    event.pipeline_id,
                    status_after(event),
                )
            case SlotQueued():
                await conn.execute(
                    "UPDATE deployments SET queued_seq = $2 WHERE id = $1",
                    event.deployment_id,
                    recorded.seq,
                )
            case SlotTaken() | SlotReleased():
                await _renumber_queue(conn, agg_id)
            case DeploymentQueued():
                await self._status(conn, agg_id, status_after(event), at)
            case DeploymentDispatched():
                await self._status(conn, agg_id, status_after(event), at)
            case DeploymentStarted():
                await conn.execute(
                    "UPDATE deployments SET status = $4, agent_id = $2,"
                    " started_at = $3, updated_at = $3 WHERE id = $1",
                    agg_id,
                    event.agent_id,
                    at,
                    status_after(event),
                )
            case StepStarted():
                await conn.execute(
                    "UPDATE deployments SET status = $4, current_step = $2,"
                    " started_at = coalesce(started_at, $3), updated_at = $3 WHERE id = $1",
                    agg_id,
                    event.name,
                    at,
                    status_after(event),
                )
                await conn.execute(
                    "INSERT INTO deployment_steps (deployment_id, seq, name, state, started_at)"
                    " VALUES ($1,$2,$3,'running',$4) ON CONFLICT (deployment_id, name) DO UPDATE"
                    " SET state = 'running', started_at = EXCLUDED.started_at,"
                    " finished_at = NULL, seq = EXCLUDED.seq",
                    agg_id,
                    recorded.seq,
                    event.name,
                    at,
                )
            case StepFinished():
                await conn.execute(
                    "UPDATE deployment_steps SET state = $3, message = $4, error_message = $5,"
                    " finished_at = $6, duration_seconds = coalesce($7,"
                    "   extract(epoch FROM $6 - started_at))"
                    " WHERE deployment_id = $1 AND name = $2",
                    agg_id,
                    event.name,
                    event.state,
                    event.message,
                    event.error_message,
                    at,
                    event.duration_seconds,
                )
                await conn.execute(
                    "UPDATE deployments SET current_step = NULL, steps_done = steps_done + 1,"
                    " updated_at = $2 WHERE id = $1",
                    agg_id,
                    at,
                )
            case DeploymentSucceeded():
                await self._finish(conn, agg_id, status_after(event), at)
                await conn.execute(
                    "UPDATE deployments SET commit_hash = $2, release_id = $3, address = $4"
                    " WHERE id = $1",
                    agg_id,
                    event.commit_hash,
                    event.release_id,
                    event.address,
                )
            case DeploymentFailed():
                await self._finish(conn, agg_id, status_after(event), at)
                await conn.execute(
                    "UPDATE deployments SET failure_reason = $2 WHERE id = $1",
                    agg_id,
                    event.reason,
                )
            case DeploymentCancelled():
                await self._finish(conn, agg_id, status_after(event), at)
            case DeploymentRolledBack():
                await conn.execute(
                    "UPDATE deployments SET status = $4, rolled_back_by = $2,"
                    " updated_at = $3 WHERE id = $1",
                    agg_id,
                    event.by_deployment_id,
                    at,
                    status_after(event),
                )

    async def _status(
        self, conn: asyncpg.Connection, deployment_id: str, status: str, at: object
    ) -> None:
        org = await conn.fetchval(
            "UPDATE deployments SET status = $2, updated_at = $3 WHERE id = $1"
            " RETURNING organization_id",
            deployment_id,
            status,
            at,
        )
        if org is not None:
            if status != "queued":
                await conn.execute(
                    "UPDATE deployments SET queue_position = NULL WHERE id = $1", deployment_id
                )
            await _renumber_queue(conn, org)

    async def _finish(
        self, conn: asyncpg.Connection, deployment_id: str, status: str, at: object
    ) -> None:
        await conn.execute(
            "UPDATE deployments SET status = $2, finished_at = $3, updated_at = $3,"
            " current_step = NULL, queue_position = NULL,"
            " duration_seconds = extract(epoch FROM $3 - coalesce(started_at, created_at))"
            " WHERE id = $1",
            deployment_id,
            status,
            at,
        )
