"""Given a service's and a deployment's events, then their state holds what an agent
runs: agent_start reads it there instead of waiting for the read model."""

from __future__ import annotations

from services.deploy import decider as d
from services.deploy.events import DeploymentCreated, ServiceCreated, ServiceUpdated


def test_given_a_service_created_and_updated_then_its_state_is_what_runs() -> None:
    state = d.ServiceState()
    for event in (
        ServiceCreated(
            service_id="svc_1",
            organization_id="org_1",
            project_id="prj_1",
            name="web",
            repository_url="https://example.com/web.git",
            build_command=["make"],
            run_command=["python", "app.py"],
            port=8000,
        ),
        ServiceUpdated(changes={"run_command": ["python", "app.py", "--fast"], "replicas": 3}),
        ServiceUpdated(changes={"name": "web2", "owner": "team"}),  # not what runs
    ):
        state = d.evolve_service(state, event)
    assert (state.repository_url, state.build_command, state.run_command) == (
        "https://example.com/web.git",
        ["make"],
        ["python", "app.py", "--fast"],
    )
    assert (state.port, state.replicas, state.health_check_path) == (8000, 3, "/")


def test_given_a_deployment_created_then_its_state_knows_ref_strategy_and_config() -> None:
    state = d.evolve_deployment(
        d.DeploymentState(),
        DeploymentCreated(
            deployment_id="dpl_1",
            organization_id="org_1",
            project_id="prj_1",
            service_id="svc_1",
            environment_id="env_1",
            ref="v1.2",
            strategy="rolling",
            config={"pipeline": {"parameters": {"x": "1"}}},
        ),
    )
    assert (state.ref, state.strategy, state.config) == (
        "v1.2",
        "rolling",
        {"pipeline": {"parameters": {"x": "1"}}},
    )
