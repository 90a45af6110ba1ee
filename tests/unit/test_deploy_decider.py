"""The deploy context's business rules: given these events, when this command, then these events."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any, TypeVar

import pytest

from libs.errors import AuthorizationDenied, Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal
from services.deploy import decider as d
from services.deploy import events as ev
from services.deploy.events import (
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
    ProjectCreated,
    ProjectDeleted,
    ProjectSlugClaimed,
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

S = TypeVar("S")


def given(evolve: Callable[[S, Event], S], initial: S, *events: Event) -> S:
    return reduce(evolve, events, initial)


# --- who is calling -----------------------------------------------------------------------


def member(user_id: str, role: str, **kwargs: Any) -> Principal:
    return Principal(user_id=user_id, memberships={"org_1": role}, **kwargs)


OWNER = member("usr_o", "owner")
ADMIN = member("usr_ad", "admin")
DEPLOYER = member("usr_dp", "deployer")
VIEWER = member("usr_v", "viewer")
OUTSIDER = Principal(user_id="usr_x", memberships={"org_2": "owner"})
ROOT = Principal(user_id="usr_root", is_superuser=True)


def service_token(
    service_id: str, scopes: tuple[str, ...] = ("read", "write", "deploy")
) -> Principal:
    return member("usr_dp", "deployer", kind="service", scopes=scopes, service_id=service_id)


def deployment_token(deployment_id: str) -> Principal:
    return member(
        "usr_dp",
        "deployer",
        kind="deployment",
        scopes=("read", "deploy"),
        deployment_id=deployment_id,
    )


def test_an_outsider_is_told_the_organization_does_not_exist() -> None:
    with pytest.raises(NotFound) as caught:
        d.require(OUTSIDER, "read", "org_1")

    assert caught.value.status == 404


def test_a_resource_without_an_organization_is_not_found_even_for_its_owner() -> None:
    with pytest.raises(NotFound):
        d.require(OWNER, "read", None)


def test_a_viewer_can_read() -> None:
    d.require(VIEWER, "read", "org_1")


def test_a_viewer_asking_to_write_is_denied() -> None:
    with pytest.raises(AuthorizationDenied) as caught:
        d.require(VIEWER, "write", "org_1")

    assert caught.value.status == 403


@pytest.mark.parametrize("actor", [DEPLOYER, ADMIN, OWNER], ids=lambda p: p.user_id)
def test_deployers_and_above_can_deploy(actor: Principal) -> None:
    d.require(actor, "deploy", "org_1")


def test_a_deployer_has_no_admin_permission() -> None:
    with pytest.raises(AuthorizationDenied):
        d.require(DEPLOYER, "admin", "org_1")


def test_a_read_only_token_cannot_write_even_for_an_admin() -> None:
    token = member("usr_ad", "admin", kind="personal", scopes=("read",))

    d.require(token, "read", "org_1")
    with pytest.raises(AuthorizationDenied):
        d.require(token, "write", "org_1")


@pytest.mark.parametrize("scope", ["read", "write", "deploy", "admin"])
def test_a_superuser_passes_in_any_organization(scope: str) -> None:
    d.require(ROOT, scope, "org_1")


def test_a_member_of_another_organization_is_an_outsider_here() -> None:
    with pytest.raises(NotFound):
        d.require(DEPLOYER, "read", "org_2")


# --- environments -------------------------------------------------------------------------

ENV_CREATED = EnvironmentCreated(
    environment_id="env_1",
    organization_id="org_1",
    name="production",
    provider="aws",
    environment_type="production",
    region="eu-west-1",
)


def environment(*events: Event) -> d.EnvironmentState:
    return given(d.evolve_environment, d.EnvironmentState(), ENV_CREATED, *events)


def test_a_deployer_can_create_an_environment() -> None:
    events = d.decide_create_environment(d.EnvironmentState(), DEPLOYER, ENV_CREATED)

    assert events == [ENV_CREATED]
    state = given(d.evolve_environment, d.EnvironmentState(), *events)
    assert state.exists
    assert state.status == "active"


def test_a_viewer_cannot_create_an_environment() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_create_environment(d.EnvironmentState(), VIEWER, ENV_CREATED)


def test_an_outsider_cannot_create_an_environment_in_an_organization_they_do_not_see() -> None:
    with pytest.raises(NotFound):
        d.decide_create_environment(d.EnvironmentState(), OUTSIDER, ENV_CREATED)


def test_creating_an_existing_environment_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        d.decide_create_environment(environment(), DEPLOYER, ENV_CREATED)


def test_updating_an_environment_records_only_the_changes() -> None:
    events = d.decide_update_environment(
        environment(), DEPLOYER, {"name": "prod", "auto_deploy": True}, None
    )

    assert events == [EnvironmentUpdated(changes={"name": "prod", "auto_deploy": True})]


def test_a_status_change_is_its_own_event_after_the_other_changes() -> None:
    events = d.decide_update_environment(
        environment(), DEPLOYER, {"name": "prod", "status": "inactive"}, None
    )

    assert events == [
        EnvironmentUpdated(changes={"name": "prod"}),
        EnvironmentStatusChanged(status="inactive"),
    ]
    assert given(d.evolve_environment, environment(), *events).status == "inactive"


def test_changing_only_the_status_records_only_the_status() -> None:
    events = d.decide_update_environment(environment(), DEPLOYER, {"status": "inactive"}, None)

    assert events == [EnvironmentStatusChanged(status="inactive")]


def test_reactivating_an_inactive_environment_changes_its_status() -> None:
    state = environment(EnvironmentStatusChanged(status="inactive"))

    events = d.decide_update_environment(state, DEPLOYER, {"status": "active"}, None)

    assert events == [EnvironmentStatusChanged(status="active")]


def test_setting_the_same_status_and_nothing_else_records_nothing() -> None:
    assert d.decide_update_environment(environment(), DEPLOYER, {"status": "active"}, None) == []


def test_an_empty_update_records_nothing() -> None:
    assert d.decide_update_environment(environment(), DEPLOYER, {}, None) == []


def test_new_credentials_alone_are_an_update_carrying_them_sealed() -> None:
    events = d.decide_update_environment(environment(), DEPLOYER, {}, "sealed:v1:abc")

    assert events == [EnvironmentUpdated(changes={}, credentials_sealed="sealed:v1:abc")]


def test_a_viewer_cannot_update_an_environment() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_update_environment(environment(), VIEWER, {"name": "prod"}, None)


def test_an_outsider_cannot_see_an_environment_to_update_it() -> None:
    with pytest.raises(NotFound):
        d.decide_update_environment(environment(), OUTSIDER, {"name": "prod"}, None)


def test_updating_a_missing_environment_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_update_environment(d.EnvironmentState(), OWNER, {"name": "prod"}, None)


@pytest.mark.parametrize("actor", [ADMIN, OWNER], ids=lambda p: p.user_id)
def test_an_admin_or_owner_can_delete_an_environment(actor: Principal) -> None:
    events = d.decide_delete_environment(environment(), actor)

    assert events == [EnvironmentDeleted()]
    assert not given(d.evolve_environment, environment(), *events).exists


@pytest.mark.parametrize("actor", [DEPLOYER, VIEWER], ids=lambda p: p.user_id)
def test_deleting_an_environment_needs_admin(actor: Principal) -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_delete_environment(environment(), actor)


def test_a_deleted_environment_is_not_found() -> None:
    state = environment(EnvironmentDeleted())

    with pytest.raises(NotFound):
        d.decide_update_environment(state, OWNER, {"name": "prod"}, None)
    with pytest.raises(NotFound):
        d.decide_delete_environment(state, OWNER)


def test_a_deleted_environment_id_cannot_be_created_again() -> None:
    with pytest.raises(Conflict):
        d.decide_create_environment(environment(EnvironmentDeleted()), OWNER, ENV_CREATED)


# --- projects -----------------------------------------------------------------------------

PROJECT_CREATED = ProjectCreated(
    project_id="prj_1", organization_id="org_1", name="Shop", slug="shop"
)


def project(*events: Event) -> d.ProjectState:
    return given(d.evolve_project, d.ProjectState(), PROJECT_CREATED, *events)


def test_a_deployer_can_create_a_project() -> None:
    events = d.decide_create_project(d.ProjectState(), DEPLOYER, PROJECT_CREATED)

    assert events == [PROJECT_CREATED]
    assert given(d.evolve_project, d.ProjectState(), *events).exists


def test_a_viewer_cannot_create_a_project() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_create_project(d.ProjectState(), VIEWER, PROJECT_CREATED)


def test_an_outsider_cannot_create_a_project() -> None:
    with pytest.raises(NotFound):
        d.decide_create_project(d.ProjectState(), OUTSIDER, PROJECT_CREATED)


def test_creating_an_existing_project_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        d.decide_create_project(project(), DEPLOYER, PROJECT_CREATED)


def test_updating_a_project_records_the_changes() -> None:
    events = d.decide_update_project(project(), DEPLOYER, {"description": "the web shop"})

    assert events == [ProjectUpdated(changes={"description": "the web shop"})]


def test_an_empty_project_update_records_nothing() -> None:
    assert d.decide_update_project(project(), DEPLOYER, {}) == []


def test_an_admin_can_delete_a_project_without_services() -> None:
    events = d.decide_delete_project(project(), ADMIN, live_services=0)

    assert events == [ProjectDeleted()]
    assert not given(d.evolve_project, project(), *events).exists


def test_a_project_with_services_cannot_be_deleted() -> None:
    with pytest.raises(Conflict) as caught:
        d.decide_delete_project(project(), ADMIN, live_services=2)

    assert caught.value.status == 409
    assert "2 service" in caught.value.message


def test_a_service_begun_in_a_project_is_listed_in_its_history() -> None:
    events = d.decide_add_service(project(), DEPLOYER, "org_1", "svc_1")

    assert events == [ev.ProjectServiceAdded(service_id="svc_1")]
    assert given(d.evolve_project, project(), *events).services == ("svc_1",)


def test_a_service_listed_already_is_not_listed_twice() -> None:
    listed = project(ev.ProjectServiceAdded(service_id="svc_1"))

    assert d.decide_add_service(listed, DEPLOYER, "org_1", "svc_1") == []


def test_no_service_is_begun_in_a_deleted_project_or_by_a_viewer() -> None:
    with pytest.raises(NotFound):
        d.decide_add_service(project(ProjectDeleted()), DEPLOYER, "org_1", "svc_1")
    with pytest.raises(AuthorizationDenied):
        d.decide_add_service(project(), VIEWER, "org_1", "svc_1")


def test_deleting_a_project_needs_admin() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_delete_project(project(), DEPLOYER, live_services=0)


def test_a_deleted_project_is_not_found_on_project_id() -> None:
    with pytest.raises(NotFound) as caught:
        d.decide_update_project(project(ProjectDeleted()), OWNER, {"name": "Shop 2"})

    assert caught.value.details.get("field") == "$.project_id"


def test_the_first_claim_on_a_slug_succeeds() -> None:
    events = d.decide_claim_slug(d.SlugState(), "prj_1")

    assert events == [ProjectSlugClaimed(project_id="prj_1")]


def test_a_second_claim_on_a_slug_is_a_conflict_on_slug() -> None:
    state = given(d.evolve_slug, d.SlugState(), ProjectSlugClaimed(project_id="prj_1"))

    with pytest.raises(Conflict) as caught:
        d.decide_claim_slug(state, "prj_2")

    assert caught.value.details.get("field") == "$.slug"


# --- services -----------------------------------------------------------------------------

SERVICE_CREATED = ServiceCreated(
    service_id="svc_1",
    organization_id="org_1",
    project_id="prj_1",
    name="web",
    repository_url="https://github.com/acme/web",
)


def service(*events: Event, created: ServiceCreated = SERVICE_CREATED) -> d.ServiceState:
    return given(d.evolve_service, d.ServiceState(), created, *events)


OTHER_SERVICE = service(
    created=ServiceCreated(
        service_id="svc_2",
        organization_id="org_1",
        project_id="prj_1",
        name="worker",
        repository_url="https://github.com/acme/worker",
    )
)


def set_env_var(
    state: d.ServiceState,
    key: str,
    value: str | None = "x",
    *,
    actor: Principal = DEPLOYER,
    sealed: str | None = None,
    secret: bool = False,
) -> list[Event]:
    return d.decide_set_env_var(
        state, actor, key=key, value=value, value_sealed=sealed, secret=secret
    )


def test_a_deployer_can_create_a_service_in_a_project() -> None:
    events = d.decide_create_service(d.ServiceState(), project(), DEPLOYER, SERVICE_CREATED)

    assert events == [SERVICE_CREATED]
    assert given(d.evolve_service, d.ServiceState(), *events).exists


def test_a_viewer_cannot_create_a_service() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_create_service(d.ServiceState(), project(), VIEWER, SERVICE_CREATED)


def test_a_service_in_a_missing_project_is_not_found_on_project_id() -> None:
    with pytest.raises(NotFound) as caught:
        d.decide_create_service(d.ServiceState(), d.ProjectState(), DEPLOYER, SERVICE_CREATED)

    assert caught.value.details.get("field") == "$.project_id"


def test_a_service_in_a_deleted_project_is_not_found_on_project_id() -> None:
    with pytest.raises(NotFound) as caught:
        d.decide_create_service(
            d.ServiceState(), project(ProjectDeleted()), DEPLOYER, SERVICE_CREATED
        )

    assert caught.value.details.get("field") == "$.project_id"


def test_a_project_of_another_organization_is_not_found_on_project_id() -> None:
    # A member of both organizations still cannot put org_1's service in org_2's project.
    both = Principal(user_id="usr_b", memberships={"org_1": "deployer", "org_2": "deployer"})
    foreign = given(
        d.evolve_project,
        d.ProjectState(),
        ProjectCreated(project_id="prj_9", organization_id="org_2", name="Other", slug="other"),
    )

    with pytest.raises(NotFound) as caught:
        d.decide_create_service(d.ServiceState(), foreign, both, SERVICE_CREATED)

    assert caught.value.details.get("field") == "$.project_id"


def test_a_project_of_an_organization_the_caller_is_not_in_is_not_found_on_project_id() -> None:
    foreign = given(
        d.evolve_project,
        d.ProjectState(),
        ProjectCreated(project_id="prj_9", organization_id="org_2", name="Other", slug="other"),
    )

    with pytest.raises(NotFound) as caught:
        d.decide_create_service(d.ServiceState(), foreign, DEPLOYER, SERVICE_CREATED)

    assert caught.value.details.get("field") == "$.project_id"


def test_creating_an_existing_service_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        d.decide_create_service(service(), project(), DEPLOYER, SERVICE_CREATED)


def test_updating_a_service_records_the_changes() -> None:
    events = d.decide_update_service(service(), DEPLOYER, {"branch": "release"})

    assert events == [ServiceUpdated(changes={"branch": "release"})]


def test_an_empty_service_update_records_nothing() -> None:
    assert d.decide_update_service(service(), DEPLOYER, {}) == []


def test_setting_a_plain_env_var_carries_its_value() -> None:
    events = set_env_var(service(), "DATABASE_URL", "postgres://db/shop")

    assert events == [EnvVarSet(key="DATABASE_URL", secret=False, value="postgres://db/shop")]
    assert given(d.evolve_service, service(), *events).env["DATABASE_URL"] == d.EnvVar(
        secret=False, value="postgres://db/shop"
    )


def test_a_secret_env_var_is_carried_only_sealed() -> None:
    events = set_env_var(service(), "API_KEY", None, sealed="sealed:v1:xyz", secret=True)

    assert events == [
        EnvVarSet(key="API_KEY", secret=True, value=None, value_sealed="sealed:v1:xyz")
    ]
    stored = given(d.evolve_service, service(), *events).env["API_KEY"]
    assert stored.value is None
    assert stored.value_sealed == "sealed:v1:xyz"


def test_setting_an_existing_env_var_replaces_it() -> None:
    state = service(EnvVarSet(key="LOG_LEVEL", secret=False, value="info"))

    events = set_env_var(state, "LOG_LEVEL", "debug")

    assert events == [EnvVarSet(key="LOG_LEVEL", secret=False, value="debug")]
    assert given(d.evolve_service, state, *events).env["LOG_LEVEL"].value == "debug"


@pytest.mark.parametrize("key", ["_private", "lower_case1", "A", "X" * 128])
def test_env_var_names_of_letters_digits_and_underscores_are_accepted(key: str) -> None:
    assert set_env_var(service(), key) == [EnvVarSet(key=key, secret=False, value="x")]


@pytest.mark.parametrize("key", ["", "1ABC", "MY-VAR", "MY VAR", "MY.VAR", "CAFÉ", "X" * 129])
def test_a_bad_env_var_name_is_invalid_on_key(key: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        set_env_var(service(), key)

    assert caught.value.status == 422
    assert caught.value.details.get("field") == "$.key"


@pytest.mark.parametrize("key", ["A\n", "PORT\n"], ids=["trailing-newline", "reserved+newline"])
def test_a_name_with_a_trailing_newline_is_invalid_on_key(key: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        set_env_var(service(), key)

    assert caught.value.details.get("field") == "$.key"


@pytest.mark.parametrize(
    "key",
    [
        "PORT",
        "DEPLOYFORGE_DEPLOYMENT_TOKEN",
        "DEPLOYFORGE_DEPLOYMENT_ID",
        "DEPLOYFORGE_ANYTHING_ELSE",
        "DEPLOYFORGE_",
    ],
)
def test_names_deployforge_sets_itself_are_reserved(key: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        set_env_var(service(), key)

    assert caught.value.details.get("field") == "$.key"


def test_a_viewer_cannot_set_an_env_var() -> None:
    with pytest.raises(AuthorizationDenied):
        set_env_var(service(), "LOG_LEVEL", actor=VIEWER)


def test_removing_an_env_var_records_its_removal() -> None:
    state = service(EnvVarSet(key="LOG_LEVEL", secret=False, value="info"))

    events = d.decide_remove_env_var(state, DEPLOYER, "LOG_LEVEL")

    assert events == [EnvVarRemoved(key="LOG_LEVEL")]
    assert "LOG_LEVEL" not in given(d.evolve_service, state, *events).env


def test_removing_an_unknown_env_var_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_remove_env_var(service(), DEPLOYER, "LOG_LEVEL")


def test_removing_an_env_var_twice_is_not_found() -> None:
    state = service(
        EnvVarSet(key="LOG_LEVEL", secret=False, value="info"), EnvVarRemoved(key="LOG_LEVEL")
    )

    with pytest.raises(NotFound):
        d.decide_remove_env_var(state, DEPLOYER, "LOG_LEVEL")


def test_a_service_token_can_act_on_its_own_service() -> None:
    events = d.decide_update_service(service(), service_token("svc_1"), {"replicas": 2})

    assert events == [ServiceUpdated(changes={"replicas": 2})]


def test_a_service_token_cannot_see_another_service() -> None:
    token = service_token("svc_1")

    with pytest.raises(NotFound):
        d.decide_update_service(OTHER_SERVICE, token, {"replicas": 2})
    with pytest.raises(NotFound):
        set_env_var(OTHER_SERVICE, "LOG_LEVEL", actor=token)


def test_an_outsider_cannot_see_a_service() -> None:
    with pytest.raises(NotFound):
        d.decide_update_service(service(), OUTSIDER, {"replicas": 2})


def test_an_admin_can_delete_a_service_without_active_deployments() -> None:
    events = d.decide_delete_service(service(), ADMIN, active_deployments=0)

    assert events == [ServiceDeleted()]
    assert not given(d.evolve_service, service(), *events).exists


def test_a_service_with_active_deployments_cannot_be_deleted() -> None:
    with pytest.raises(Conflict):
        d.decide_delete_service(service(), ADMIN, active_deployments=1)


def test_deleting_a_service_needs_admin() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_delete_service(service(), DEPLOYER, active_deployments=0)


def test_a_deleted_service_is_not_found() -> None:
    state = service(ServiceDeleted())

    with pytest.raises(NotFound):
        d.decide_update_service(state, OWNER, {"replicas": 2})
    with pytest.raises(NotFound):
        d.decide_delete_service(state, OWNER, active_deployments=0)


# --- deployments --------------------------------------------------------------------------


def created(
    deployment_id: str = "dep_1",
    *,
    service_id: str = "svc_1",
    environment_id: str = "env_1",
    rollback_of: str | None = None,
) -> DeploymentCreated:
    return DeploymentCreated(
        deployment_id=deployment_id,
        organization_id="org_1",
        project_id="prj_1",
        service_id=service_id,
        environment_id=environment_id,
        ref="main",
        strategy="rolling",
        rollback_of=rollback_of,
    )


def deployment(*events: Event, first: DeploymentCreated | None = None) -> d.DeploymentState:
    return given(d.evolve_deployment, d.DeploymentState(), first or created(), *events)


DISPATCHED = (DeploymentQueued(position=1), DeploymentDispatched())
STARTED = (*DISPATCHED, DeploymentStarted(agent_id="agt_1"))
RUNNING = (*STARTED, StepStarted(name="build"))
SUCCEEDED = (
    *RUNNING,
    StepFinished(name="build", state="success"),
    DeploymentSucceeded(commit_hash="abc123", release_id="rel_1", duration_seconds=42.0),
)

STATUS_EVENTS: dict[str, tuple[Event, ...]] = {
    "created": (),
    "queued": (DeploymentQueued(position=1),),
    "dispatched": DISPATCHED,
    "initializing": STARTED,
    "running": RUNNING,
    "succeeded": SUCCEEDED,
    "failed": (*RUNNING, DeploymentFailed(reason="build broke", step="build")),
    "cancelled": (DeploymentQueued(position=1), DeploymentCancelled()),
    "rolled_back": (*SUCCEEDED, DeploymentRolledBack(by_deployment_id="dep_9")),
}


def in_status(status: str) -> d.DeploymentState:
    state = deployment(*STATUS_EVENTS[status])
    assert state.status == status
    return state


def create_deployment(
    actor: Principal = DEPLOYER,
    *,
    svc: d.ServiceState | None = None,
    env: d.EnvironmentState | None = None,
    state: d.DeploymentState | None = None,
    event: DeploymentCreated | None = None,
    rollback_target: d.DeploymentState | None = None,
) -> list[Event]:
    return d.decide_create_deployment(
        state or d.DeploymentState(),
        actor,
        service=svc or service(),
        environment=env or environment(),
        created=event or created(),
        rollback_target=rollback_target,
    )


def test_a_deployer_can_create_a_deployment() -> None:
    assert create_deployment() == [created()]


def test_a_viewer_cannot_deploy() -> None:
    with pytest.raises(AuthorizationDenied):
        create_deployment(VIEWER)


def test_a_token_without_the_deploy_scope_cannot_deploy_even_for_an_admin() -> None:
    with pytest.raises(AuthorizationDenied):
        create_deployment(member("usr_ad", "admin", kind="personal", scopes=("read", "write")))


def test_an_outsider_cannot_deploy() -> None:
    with pytest.raises(NotFound):
        create_deployment(OUTSIDER)


def test_a_service_token_deploys_its_own_service() -> None:
    assert create_deployment(service_token("svc_1", ("read", "deploy"))) == [created()]


def test_a_service_token_cannot_deploy_another_service() -> None:
    with pytest.raises(NotFound):
        create_deployment(
            service_token("svc_1", ("read", "deploy")),
            svc=OTHER_SERVICE,
            event=created(service_id="svc_2"),
        )


def test_deploying_a_deleted_service_is_not_found() -> None:
    with pytest.raises(NotFound):
        create_deployment(svc=service(ServiceDeleted()))


def test_deploying_to_a_missing_environment_is_not_found_on_environment_id() -> None:
    with pytest.raises(NotFound) as caught:
        create_deployment(env=d.EnvironmentState())

    assert caught.value.details.get("field") == "$.environment_id"


def test_deploying_to_a_deleted_environment_is_not_found_on_environment_id() -> None:
    with pytest.raises(NotFound) as caught:
        create_deployment(env=environment(EnvironmentDeleted()))

    assert caught.value.details.get("field") == "$.environment_id"


def test_deploying_to_another_organizations_environment_is_not_found_on_environment_id() -> None:
    foreign = given(
        d.evolve_environment,
        d.EnvironmentState(),
        EnvironmentCreated(
            environment_id="env_9",
            organization_id="org_2",
            name="production",
            provider="aws",
            environment_type="production",
        ),
    )

    with pytest.raises(NotFound) as caught:
        create_deployment(ROOT, env=foreign, event=created(environment_id="env_9"))

    assert caught.value.details.get("field") == "$.environment_id"


def test_deploying_to_an_inactive_environment_is_a_conflict_on_environment_id() -> None:
    with pytest.raises(Conflict) as caught:
        create_deployment(env=environment(EnvironmentStatusChanged(status="inactive")))

    assert caught.value.status == 409
    assert caught.value.details.get("field") == "$.environment_id"


def test_creating_an_existing_deployment_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        create_deployment(state=deployment())


def test_a_rollback_to_a_succeeded_deployment_of_the_same_service_and_environment() -> None:
    event = created("dep_2", rollback_of="dep_1")

    events = create_deployment(event=event, rollback_target=in_status("succeeded"))

    assert events == [event]


def test_a_rollback_to_a_deployment_since_rolled_back_keeps_its_release() -> None:
    event = created("dep_2", rollback_of="dep_1")

    assert create_deployment(event=event, rollback_target=in_status("rolled_back")) == [event]


@pytest.mark.parametrize(
    "target",
    [
        d.DeploymentState(),
        deployment(*SUCCEEDED, first=created(service_id="svc_2")),
        deployment(*SUCCEEDED, first=created(environment_id="env_2")),
    ],
    ids=["missing", "other-service", "other-environment"],
)
def test_a_rollback_target_elsewhere_is_not_found_on_deployment_id(
    target: d.DeploymentState,
) -> None:
    with pytest.raises(NotFound) as caught:
        create_deployment(event=created("dep_2", rollback_of="dep_1"), rollback_target=target)

    assert caught.value.details.get("field") == "$.deployment_id"


@pytest.mark.parametrize("status", ["failed", "cancelled", "running"])
def test_a_rollback_target_without_a_release_is_a_conflict_on_deployment_id(status: str) -> None:
    with pytest.raises(Conflict) as caught:
        create_deployment(
            event=created("dep_2", rollback_of="dep_1"), rollback_target=in_status(status)
        )

    assert caught.value.details.get("field") == "$.deployment_id"


def test_a_dispatched_deployment_starts_when_an_agent_takes_it() -> None:
    events = d.decide_start(in_status("dispatched"), "agt_1")

    assert events == [DeploymentStarted(agent_id="agt_1")]
    assert given(d.evolve_deployment, in_status("dispatched"), *events).status == "initializing"


@pytest.mark.parametrize("status", ["created", "queued", "initializing", "running"])
def test_starting_a_deployment_not_waiting_for_an_agent_is_a_conflict(status: str) -> None:
    with pytest.raises(Conflict):
        d.decide_start(in_status(status), "agt_1")


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "rolled_back"])
def test_starting_a_finished_deployment_is_a_conflict(status: str) -> None:
    with pytest.raises(Conflict):
        d.decide_start(in_status(status), "agt_1")


def test_starting_a_missing_deployment_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_start(d.DeploymentState(), "agt_1")


def report(
    state: d.DeploymentState,
    name: str,
    state_name: str,
    actor: Principal | None = None,
    **kwargs: Any,
) -> list[Event]:
    return d.decide_report_step(state, actor, name=name, state_name=state_name, **kwargs)


def test_a_running_step_is_started() -> None:
    state = in_status("initializing")

    events = report(state, "build", "running")

    assert events == [StepStarted(name="build")]
    after = given(d.evolve_deployment, state, *events)
    assert (after.status, after.current_step) == ("running", "build")


def test_a_pending_step_is_started_too() -> None:
    assert report(in_status("initializing"), "build", "pending") == [StepStarted(name="build")]


def test_reporting_the_current_step_running_again_records_nothing() -> None:
    assert report(in_status("running"), "build", "running") == []


def test_a_new_running_step_starts_while_another_is_current() -> None:
    assert report(in_status("running"), "test", "running") == [StepStarted(name="test")]


def test_the_current_step_finishing_records_its_outcome() -> None:
    state = in_status("running")

    events = report(state, "build", "success", message="built", duration_seconds=12.5)

    assert events == [
        StepFinished(name="build", state="success", message="built", duration_seconds=12.5)
    ]
    assert given(d.evolve_deployment, state, *events).current_step is None


def test_the_current_step_failing_records_a_failure() -> None:
    events = report(in_status("running"), "build", "failure", error_message="exit 2")

    assert events == [StepFinished(name="build", state="failure", error_message="exit 2")]


def test_a_step_finishing_that_was_not_current_is_started_first() -> None:
    state = in_status("initializing")

    events = report(state, "migrate", "success", duration_seconds=3.0)

    assert events == [
        StepStarted(name="migrate"),
        StepFinished(name="migrate", state="success", duration_seconds=3.0),
    ]
    after = given(d.evolve_deployment, state, *events)
    assert (after.status, after.current_step) == ("running", None)


def test_a_deploy_script_reports_with_its_own_deployment_token() -> None:
    events = report(in_status("running"), "test", "running", deployment_token("dep_1"))

    assert events == [StepStarted(name="test")]


def test_a_deployment_token_cannot_report_on_another_deployment() -> None:
    with pytest.raises(NotFound):
        report(in_status("running"), "test", "running", deployment_token("dep_9"))


def test_a_viewer_cannot_report_steps() -> None:
    with pytest.raises(AuthorizationDenied):
        report(in_status("running"), "test", "running", VIEWER)


def test_an_outsider_cannot_report_steps() -> None:
    with pytest.raises(NotFound):
        report(in_status("running"), "test", "running", OUTSIDER)


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "rolled_back"])
def test_a_finished_deployment_takes_no_more_step_reports(status: str) -> None:
    with pytest.raises(Conflict):
        report(in_status(status), "build", "running")


def test_reporting_on_a_missing_deployment_is_not_found() -> None:
    with pytest.raises(NotFound):
        report(d.DeploymentState(), "build", "running")


def test_a_deployment_that_succeeds_records_its_release() -> None:
    state = in_status("running")

    events = d.decide_finish(
        state,
        deployment_token("dep_1"),
        succeeded=True,
        commit_hash="abc123",
        release_id="rel_1",
        duration_seconds=42.0,
    )

    assert events == [
        DeploymentSucceeded(commit_hash="abc123", release_id="rel_1", duration_seconds=42.0)
    ]
    after = given(d.evolve_deployment, state, *events)
    assert (after.status, after.release_id) == ("succeeded", "rel_1")


def test_a_deployment_that_fails_records_why_and_where() -> None:
    events = d.decide_finish(
        in_status("running"), None, succeeded=False, reason="tests failed", step="test"
    )

    assert events == [DeploymentFailed(reason="tests failed", step="test")]


def test_a_failure_without_a_reason_says_failed() -> None:
    events = d.decide_finish(in_status("running"), None, succeeded=False)

    assert events == [DeploymentFailed(reason="failed")]
    assert given(d.evolve_deployment, in_status("running"), *events).status == "failed"


def test_a_deployment_token_cannot_finish_another_deployment() -> None:
    with pytest.raises(NotFound):
        d.decide_finish(in_status("running"), deployment_token("dep_9"), succeeded=True)


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "rolled_back"])
def test_finishing_a_finished_deployment_is_a_conflict(status: str) -> None:
    with pytest.raises(Conflict):
        d.decide_finish(in_status(status), None, succeeded=True, release_id="rel_2")


def test_a_service_token_cannot_finish_another_services_deployment() -> None:
    other = deployment(*RUNNING, first=created(service_id="svc_2"))

    with pytest.raises(NotFound):
        d.decide_finish(other, service_token("svc_1"), succeeded=False)


@pytest.mark.parametrize("status", ["created", "queued", "dispatched", "initializing", "running"])
def test_an_active_deployment_can_be_cancelled(status: str) -> None:
    state = in_status(status)

    events = d.decide_cancel(state, DEPLOYER)

    assert events == [DeploymentCancelled(reason="cancelled by usr_dp")]
    assert given(d.evolve_deployment, state, *events).status == "cancelled"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "rolled_back"])
def test_cancelling_a_finished_deployment_is_a_conflict(status: str) -> None:
    with pytest.raises(Conflict) as caught:
        d.decide_cancel(in_status(status), DEPLOYER)

    assert caught.value.status == 409


def test_a_viewer_cannot_cancel() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_cancel(in_status("running"), VIEWER)


def test_an_outsider_cannot_see_a_deployment_to_cancel_it() -> None:
    with pytest.raises(NotFound):
        d.decide_cancel(in_status("running"), OUTSIDER)


def test_cancelling_a_missing_deployment_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_cancel(d.DeploymentState(), DEPLOYER)


def test_a_service_token_cannot_cancel_another_services_deployment() -> None:
    other = deployment(*RUNNING, first=created(service_id="svc_2"))

    with pytest.raises(NotFound):
        d.decide_cancel(other, service_token("svc_1"))


def test_a_deployment_token_cannot_cancel_another_deployment() -> None:
    with pytest.raises(NotFound):
        d.decide_cancel(in_status("running"), deployment_token("dep_9"))


def test_a_succeeded_deployment_is_rolled_back_by_a_later_one() -> None:
    events = d.decide_rolled_back(in_status("succeeded"), "dep_2")

    assert events == [DeploymentRolledBack(by_deployment_id="dep_2")]
    assert given(d.evolve_deployment, in_status("succeeded"), *events).status == "rolled_back"


@pytest.mark.parametrize("status", ["created", "running", "failed", "cancelled", "rolled_back"])
def test_only_a_succeeded_deployment_can_be_rolled_back(status: str) -> None:
    assert d.decide_rolled_back(in_status(status), "dep_2") == []


# --- dispatch: one per service and environment, `limit` per organization -----------------


def dispatch(*events: Event) -> d.DispatchState:
    return given(d.evolve_dispatch, d.DispatchState(), *events)


def running(*pairs: tuple[str, str]) -> tuple[Event, ...]:
    return tuple(
        e
        for deployment_id, key in pairs
        for e in (
            SlotQueued(deployment_id=deployment_id, key=key),
            SlotTaken(deployment_id=deployment_id, key=key),
        )
    )


def queued(*pairs: tuple[str, str]) -> tuple[Event, ...]:
    return tuple(SlotQueued(deployment_id=deployment_id, key=key) for deployment_id, key in pairs)


def test_a_deployment_under_the_limit_is_queued_and_taken_at_once() -> None:
    events = d.decide_enqueue(dispatch(), deployment_id="dep_1", key="svc_1:env_1", limit=5)

    assert events == [
        SlotQueued(deployment_id="dep_1", key="svc_1:env_1"),
        SlotTaken(deployment_id="dep_1", key="svc_1:env_1"),
    ]
    after = given(d.evolve_dispatch, dispatch(), *events)
    assert after.running == {"dep_1": "svc_1:env_1"}
    assert after.queue == ()


def test_a_deployment_at_the_limit_waits_in_the_queue() -> None:
    state = dispatch(*running(("dep_1", "svc_1:env_1"), ("dep_2", "svc_2:env_1")))

    events = d.decide_enqueue(state, deployment_id="dep_3", key="svc_3:env_1", limit=2)

    assert events == [SlotQueued(deployment_id="dep_3", key="svc_3:env_1")]


def test_a_deployment_waits_for_its_service_and_environment_even_with_free_slots() -> None:
    state = dispatch(*running(("dep_1", "svc_1:env_1")))

    events = d.decide_enqueue(state, deployment_id="dep_2", key="svc_1:env_1", limit=5)

    assert events == [SlotQueued(deployment_id="dep_2", key="svc_1:env_1")]


def test_the_same_service_in_another_environment_runs_alongside() -> None:
    state = dispatch(*running(("dep_1", "svc_1:env_1")))

    events = d.decide_enqueue(state, deployment_id="dep_2", key="svc_1:env_2", limit=5)

    assert events == [
        SlotQueued(deployment_id="dep_2", key="svc_1:env_2"),
        SlotTaken(deployment_id="dep_2", key="svc_1:env_2"),
    ]


def test_releasing_a_slot_dispatches_the_next_in_line() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1"), ("dep_2", "svc_2:env_1")),
        *queued(("dep_3", "svc_3:env_1"), ("dep_4", "svc_4:env_1")),
    )

    events = d.decide_release(state, deployment_id="dep_1", limit=2)

    assert events == [
        SlotReleased(deployment_id="dep_1"),
        SlotTaken(deployment_id="dep_3", key="svc_3:env_1"),
    ]
    after = given(d.evolve_dispatch, state, *events)
    assert after.running == {"dep_2": "svc_2:env_1", "dep_3": "svc_3:env_1"}
    assert d.queue_positions(after) == {"dep_4": 1}


def test_releasing_a_deployment_dispatches_the_one_waiting_for_its_key() -> None:
    state = dispatch(*running(("dep_1", "svc_1:env_1")), *queued(("dep_2", "svc_1:env_1")))

    events = d.decide_release(state, deployment_id="dep_1", limit=5)

    assert events == [
        SlotReleased(deployment_id="dep_1"),
        SlotTaken(deployment_id="dep_2", key="svc_1:env_1"),
    ]


def test_a_deployment_waiting_for_its_key_does_not_hold_up_the_ones_behind_it() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1"), ("dep_2", "svc_2:env_1")),
        *queued(("dep_3", "svc_1:env_1"), ("dep_4", "svc_3:env_1")),
    )

    events = d.decide_release(state, deployment_id="dep_2", limit=2)

    assert events == [
        SlotReleased(deployment_id="dep_2"),
        SlotTaken(deployment_id="dep_4", key="svc_3:env_1"),
    ]
    assert d.queue_positions(given(d.evolve_dispatch, state, *events)) == {"dep_3": 1}


def test_two_waiting_for_the_same_key_start_one_at_a_time() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1")),
        *queued(("dep_2", "svc_1:env_1"), ("dep_3", "svc_1:env_1")),
    )

    events = d.decide_release(state, deployment_id="dep_1", limit=5)

    assert events == [
        SlotReleased(deployment_id="dep_1"),
        SlotTaken(deployment_id="dep_2", key="svc_1:env_1"),
    ]


def test_releasing_a_waiting_deployment_takes_it_out_of_the_queue() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1")),
        *queued(("dep_2", "svc_2:env_1"), ("dep_3", "svc_3:env_1")),
    )

    events = d.decide_release(state, deployment_id="dep_2", limit=1)

    assert events == [SlotReleased(deployment_id="dep_2")]
    after = given(d.evolve_dispatch, state, *events)
    assert after.running == {"dep_1": "svc_1:env_1"}
    assert d.queue_positions(after) == {"dep_3": 1}


@pytest.mark.parametrize(
    "state",
    [
        dispatch(*running(("dep_1", "svc_1:env_1"))),
        dispatch(*running(("dep_9", "svc_9:env_1")), *queued(("dep_1", "svc_1:env_1"))),
    ],
    ids=["running", "queued"],
)
def test_enqueueing_a_deployment_twice_records_nothing(state: d.DispatchState) -> None:
    assert d.decide_enqueue(state, deployment_id="dep_1", key="svc_1:env_1", limit=1) == []


def test_releasing_an_unknown_deployment_records_nothing() -> None:
    state = dispatch(*running(("dep_1", "svc_1:env_1")))

    assert d.decide_release(state, deployment_id="dep_9", limit=5) == []
    assert d.decide_release(dispatch(), deployment_id="dep_9", limit=5) == []


def test_releasing_twice_records_nothing_the_second_time() -> None:
    state = dispatch(*running(("dep_1", "svc_1:env_1")), SlotReleased(deployment_id="dep_1"))

    assert d.decide_release(state, deployment_id="dep_1", limit=5) == []


def test_queue_positions_count_from_one_in_arrival_order() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1")),
        *queued(("dep_2", "svc_1:env_1"), ("dep_3", "svc_2:env_1"), ("dep_4", "svc_1:env_1")),
    )

    assert d.queue_positions(state) == {"dep_2": 1, "dep_3": 2, "dep_4": 3}


def test_an_empty_queue_has_no_positions() -> None:
    assert d.queue_positions(dispatch(*running(("dep_1", "svc_1:env_1")))) == {}


def test_seven_services_with_a_limit_of_five_run_five_and_queue_two_in_order() -> None:
    state = dispatch()
    taken: list[str] = []
    for n in range(1, 8):
        events = d.decide_enqueue(state, deployment_id=f"dep_{n}", key=f"svc_{n}:env_1", limit=5)
        taken += [e.deployment_id for e in events if isinstance(e, SlotTaken)]
        state = given(d.evolve_dispatch, state, *events)

    assert taken == ["dep_1", "dep_2", "dep_3", "dep_4", "dep_5"]
    assert sorted(state.running) == taken
    assert d.queue_positions(state) == {"dep_6": 1, "dep_7": 2}

    first = d.decide_release(state, deployment_id="dep_3", limit=5)
    state = given(d.evolve_dispatch, state, *first)
    second = d.decide_release(state, deployment_id="dep_1", limit=5)
    state = given(d.evolve_dispatch, state, *second)

    assert first == [
        SlotReleased(deployment_id="dep_3"),
        SlotTaken(deployment_id="dep_6", key="svc_6:env_1"),
    ]
    assert second == [
        SlotReleased(deployment_id="dep_1"),
        SlotTaken(deployment_id="dep_7", key="svc_7:env_1"),
    ]
    assert sorted(state.running) == ["dep_2", "dep_4", "dep_5", "dep_6", "dep_7"]
    assert d.queue_positions(state) == {}


# --- pipelines ----------------------------------------------------------------------------


def _pipeline(*names: str) -> ev.PipelineCreated:
    return ev.PipelineCreated(
        pipeline_id="ppl_1",
        organization_id="org_1",
        service_id="svc_1",
        name="release",
        steps=[ev.PipelineStepSpec(name=n, command=["true"]) for n in names],
    )


LIVE_SERVICE = d.ServiceState(service_id="svc_1", organization_id="org_1", project_id="prj_1")


def test_a_pipeline_is_created_by_a_writer() -> None:
    writer = Principal(user_id="usr_w", memberships={"org_1": "deployer"})
    created = _pipeline("tests", "migrate")
    assert d.decide_create_pipeline(d.PipelineState(), LIVE_SERVICE, writer, created) == [created]


@pytest.mark.parametrize("names", [("tests", "tests"), ("build",), ("tests", "switch")])
def test_pipeline_step_names_are_unique_and_not_the_agents_own(names: tuple[str, ...]) -> None:
    owner = Principal(user_id="usr_o", memberships={"org_1": "owner"})
    with pytest.raises(ValidationFailed) as raised:
        d.decide_create_pipeline(d.PipelineState(), LIVE_SERVICE, owner, _pipeline(*names))
    assert raised.value.details.get("field") == "$.steps"


def test_a_viewer_cannot_create_a_pipeline_and_an_outsider_cannot_see_the_service() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_create_pipeline(
            d.PipelineState(),
            LIVE_SERVICE,
            Principal(user_id="usr_v", memberships={"org_1": "viewer"}),
            _pipeline("tests"),
        )
    with pytest.raises(NotFound):
        d.decide_create_pipeline(
            d.PipelineState(),
            LIVE_SERVICE,
            Principal(user_id="usr_x", memberships={"org_2": "owner"}),
            _pipeline("tests"),
        )


def test_each_key_remembers_its_deployments_in_arrival_order() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1")),
        *queued(("dep_2", "svc_2:env_1"), ("dep_3", "svc_1:env_1")),
        SlotReleased(deployment_id="dep_1"),
    )

    assert d.earlier_deployments(state, "svc_1:env_1", before="dep_3") == ["dep_1"]
    assert d.earlier_deployments(state, "svc_1:env_1", before="dep_9") == ["dep_3", "dep_1"]
    assert d.earlier_deployments(state, "svc_2:env_1", before="dep_2") == []


def test_a_key_remembers_only_its_last_deployments() -> None:
    pairs = [(f"dep_{n}", "svc_1:env_1") for n in range(d.HISTORY + 5)]
    state = dispatch(*queued(*pairs))

    remembered = d.earlier_deployments(state, "svc_1:env_1", before="dep_x")
    assert len(remembered) == d.HISTORY
    assert remembered[0] == f"dep_{d.HISTORY + 4}"


def test_a_service_is_in_progress_while_it_waits_or_holds_a_slot() -> None:
    state = dispatch(
        *running(("dep_1", "svc_1:env_1"), ("dep_2", "svc_12:env_1")),
        *queued(("dep_3", "svc_1:env_2")),
    )

    assert sorted(d.in_progress(state, "svc_1")) == ["dep_1", "dep_3"]
    after = given(
        d.evolve_dispatch,
        state,
        SlotReleased(deployment_id="dep_1"),
        SlotReleased(deployment_id="dep_3"),
    )
    assert d.in_progress(after, "svc_1") == []
