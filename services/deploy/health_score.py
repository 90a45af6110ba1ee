"""A service's health per environment, scored from its instances' reports.

Pure: the agents' reports (instance_state) and the replicas asked for in,
a score and a status out; the gateway serves it, the drift context can use it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.deploy import instance_state


class InstanceCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One instance's last health probe (its agent probes every few seconds)."""

    instance_id: str
    status: str  # running | restarting | stopped
    ok: bool | None  # None: not probed
    status_code: int | None
    latency_ms: float | None
    error: str | None
    checked_at: datetime | None


class EnvironmentHealth(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str
    status: str  # healthy | degraded | down
    score: int  # 0-100
    # Running, freshly reported and passing their health check.
    running: int
    desired: int
    restarts: int
    reported_at: datetime | None
    checks: list[InstanceCheck] = []


class ServiceHealth(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str
    status: str  # healthy | degraded | down | unknown (never deployed)
    score: int
    environments: list[EnvironmentHealth]


# A report older than this says nothing about now (agents report every 5 s).
STALE_SECONDS = 30.0


def health_of(
    environment_id: str,
    reports: list[instance_state.InstanceReport],
    desired: int,
    now: datetime,
) -> EnvironmentHealth:
    """Score: the share of desired instances running, freshly reported and passing
    their health check, less 5 points per restart (at most 30)."""
    fresh = [r for r in reports if (now - r.observed_at).total_seconds() < STALE_SECONDS]
    running = sum(1 for r in fresh if r.status == "running" and (r.check is None or r.check.ok))
    restarts = sum(r.restarts for r in reports)
    score = round(100 * min(running, desired) / desired) - min(30, 5 * restarts)
    score = max(0, score if running else 0)
    status = "down" if not running else "healthy" if score >= 90 else "degraded"
    return EnvironmentHealth(
        environment_id=environment_id,
        status=status,
        score=score,
        running=running,
        desired=desired,
        restarts=restarts,
        reported_at=max((r.observed_at for r in reports), default=None),
        checks=[
            InstanceCheck(
                instance_id=r.instance_id,
                status=r.status,
                ok=r.check.ok if r.check else None,
                status_code=r.check.status_code if r.check else None,
                latency_ms=r.check.latency_ms if r.check else None,
                error=r.check.error if r.check else None,
                checked_at=r.check.checked_at if r.check else None,
            )
            for r in sorted(reports, key=lambda r: r.instance_id)
        ],
    )
