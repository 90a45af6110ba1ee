"""A service's health score: running, fresh and passing instances against the desired count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.deploy.health_score import health_of
from services.deploy.instance_state import HealthCheck, InstanceReport

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def report(
    n: int, *, ok: bool | None = True, age: float = 1.0, restarts: int = 0
) -> InstanceReport:
    check = (
        None
        if ok is None
        else HealthCheck(
            ok=ok,
            status_code=200 if ok else 500,
            latency_ms=2.5,
            checked_at=NOW,
            error=None if ok else "HTTP 500",
        )
    )
    return InstanceReport(
        instance_id=f"inst_{n}",
        service_id="svc_1",
        environment_id="env_1",
        release_id="rel_1",
        agent_id="agent",
        pid=100 + n,
        port=9000 + n,
        address="http://127.0.0.1:8000",
        status="running",
        started_at=NOW - timedelta(minutes=5),
        uptime_seconds=300.0,
        restarts=restarts,
        cpu_percent=1.0,
        memory_rss=1 << 20,
        observed_at=NOW - timedelta(seconds=age),
        check=check,
    )


def test_every_instance_passing_is_healthy_with_its_checks_shown() -> None:
    health = health_of("env_1", [report(1), report(2)], 2, NOW)
    assert (health.status, health.score, health.running) == ("healthy", 100, 2)
    assert [(c.instance_id, c.ok, c.status_code) for c in health.checks] == [
        ("inst_1", True, 200),
        ("inst_2", True, 200),
    ]


def test_a_failing_check_counts_the_instance_out() -> None:
    health = health_of("env_1", [report(1), report(2, ok=False)], 2, NOW)
    assert (health.status, health.score, health.running) == ("degraded", 50, 1)
    assert health.checks[1].error == "HTTP 500"
    assert health_of("env_1", [report(1, ok=False)], 1, NOW).status == "down"


def test_unprobed_instances_count_and_stale_reports_do_not() -> None:
    assert health_of("env_1", [report(1, ok=None)], 1, NOW).score == 100
    assert health_of("env_1", [report(1, age=120)], 1, NOW).status == "down"
    assert health_of("env_1", [report(1, restarts=2)], 1, NOW).score == 90
