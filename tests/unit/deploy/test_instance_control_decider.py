"""Controlling one instance: given the service's events, when asked, then this event."""

from __future__ import annotations

from functools import reduce

import pytest

from libs.errors import AuthorizationDenied, NotFound
from libs.events import Event
from libs.principal import Principal
from services.deploy import decider as d
from services.deploy.events import InstanceControlRequested, ServiceCreated, ServiceDeleted

DEPLOYER = Principal(user_id="usr_d", memberships={"org_1": "deployer"})
VIEWER = Principal(user_id="usr_v", memberships={"org_1": "viewer"})
OUTSIDER = Principal(user_id="usr_x", memberships={"org_2": "owner"})

CREATED = ServiceCreated(
    service_id="svc_1",
    organization_id="org_1",
    project_id="prj_1",
    name="web",
    repository_url="https://github.com/acme/web",
)


def service(*events: Event) -> d.ServiceState:
    return reduce(d.evolve_service, (CREATED, *events), d.ServiceState())


def control(state: d.ServiceState, actor: Principal, action: str) -> list[Event]:
    return d.decide_control_instance(
        state, actor, instance_id="dpl_1-0", environment_id="env_1", action=action
    )


@pytest.mark.parametrize("action", ["start", "stop", "restart", "remove"])
def test_a_deployer_asks_the_agent_running_the_instance(action: str) -> None:
    assert control(service(), DEPLOYER, action) == [
        InstanceControlRequested(instance_id="dpl_1-0", environment_id="env_1", action=action)
    ]


def test_a_viewer_cannot_control_an_instance() -> None:
    with pytest.raises(AuthorizationDenied):
        control(service(), VIEWER, "stop")


def test_another_organizations_instance_is_not_found() -> None:
    with pytest.raises(NotFound):
        control(service(), OUTSIDER, "stop")


def test_a_service_token_of_another_service_does_not_see_the_instance() -> None:
    token = Principal(
        user_id="usr_d",
        memberships={"org_1": "deployer"},
        kind="service",
        scopes=("read", "deploy"),
        service_id="svc_2",
    )

    with pytest.raises(NotFound):
        control(service(), token, "restart")


@pytest.mark.parametrize("action", ["stop", "remove"])
def test_a_deleted_services_instances_can_still_be_stopped_and_removed(action: str) -> None:
    # Deleting a service stops nothing: this is how its instances are ended.
    assert control(service(ServiceDeleted()), DEPLOYER, action) == [
        InstanceControlRequested(instance_id="dpl_1-0", environment_id="env_1", action=action)
    ]


@pytest.mark.parametrize("action", ["start", "restart"])
def test_a_deleted_services_instances_are_not_started_again(action: str) -> None:
    with pytest.raises(NotFound):
        control(service(ServiceDeleted()), DEPLOYER, action)


def test_an_outsider_cannot_stop_a_deleted_services_instance_either() -> None:
    with pytest.raises(NotFound):
        control(service(ServiceDeleted()), OUTSIDER, "stop")
