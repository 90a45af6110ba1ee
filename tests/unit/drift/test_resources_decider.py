"""Infrastructure resources, given their events: one job at a time, outcomes recorded
once, a failed provisioning not patched but deleted, other organizations' ids unknown."""

from __future__ import annotations

from functools import reduce

import pytest

from libs.errors import AuthorizationDenied, Conflict, NotFound
from libs.events import Event
from libs.principal import Principal
from services.drift import resources as r
from services.drift.events import (
    ResourceChangeRequested,
    ResourceDeleted,
    ResourceDeletionRequested,
    ResourceFailed,
    ResourceProvisioned,
    ResourceRequested,
)

OWNER = Principal(user_id="usr_o", memberships={"org_1": "owner"})
VIEWER = Principal(user_id="usr_v", memberships={"org_1": "viewer"})
OUTSIDER = Principal(user_id="usr_x", memberships={"org_2": "owner"})
REQUESTED = ResourceRequested(
    resource_id="res_1",
    organization_id="org_1",
    environment_id="env_1",
    resource_type="volume",
    provider="aws",
    region="eu-west-1",
    specs={"size": 10},
)
PROVISIONED = ResourceProvisioned(provider_id="vol-1")


def resource(*events: Event) -> r.ResourceState:
    return reduce(r.evolve_resource, (REQUESTED, *events), r.ResourceState())


def test_a_request_needs_write_in_the_organization_and_its_environment() -> None:
    assert r.decide_request(r.ResourceState(), OWNER, REQUESTED, environment_org="org_1") == [
        REQUESTED
    ]
    with pytest.raises(NotFound) as caught:
        r.decide_request(r.ResourceState(), OWNER, REQUESTED, environment_org="org_2")
    assert caught.value.details == {"field": "$.environment_id"}
    with pytest.raises(AuthorizationDenied):
        r.decide_request(r.ResourceState(), VIEWER, REQUESTED, environment_org="org_1")


def test_one_job_at_a_time_and_each_outcome_recorded_once() -> None:
    provisioning = resource()
    with pytest.raises(Conflict, match="provisioning"):
        r.decide_change(provisioning, OWNER, specs={"size": 20}, tags=None)
    with pytest.raises(Conflict):
        r.decide_delete(provisioning, OWNER)
    assert r.decide_provisioned(provisioning, "vol-1", {}) == [
        ResourceProvisioned(provider_id="vol-1", attributes={})
    ]
    active = resource(PROVISIONED)
    assert (active.status, active.provider_id) == (r.ACTIVE, "vol-1")
    assert r.decide_provisioned(active, "vol-1", {}) == []  # a redelivered job


def test_a_change_names_what_changes_and_nothing_is_no_event() -> None:
    active = resource(PROVISIONED)
    assert r.decide_change(active, OWNER, specs={"size": 10}, tags=None) == []
    [changed] = r.decide_change(active, OWNER, specs={"size": 20}, tags=None)
    assert changed == ResourceChangeRequested(specs={"size": 20}, tags=None)
    updating = r.evolve_resource(active, changed)
    assert (updating.status, updating.specs) == (r.UPDATING, {"size": 20})
    assert r.decide_updated(updating, {"size": 20}) != []


def test_a_failed_provisioning_is_deleted_not_patched_and_a_failed_update_retried() -> None:
    failed = resource(ResourceFailed(operation="provision", error="no credentials"))
    with pytest.raises(Conflict, match="never provisioned"):
        r.decide_change(failed, OWNER, specs={"size": 20}, tags=None)
    assert r.decide_delete(failed, OWNER) == [ResourceDeletionRequested()]
    update_failed = resource(
        PROVISIONED,
        ResourceChangeRequested(specs={"size": 20}),
        ResourceFailed(operation="update", error="x"),
    )
    assert r.decide_change(update_failed, OWNER, specs={"size": 30}, tags=None) != []


def test_deleted_resources_and_other_organizations_ids_do_not_exist() -> None:
    deleted = resource(PROVISIONED, ResourceDeletionRequested(), ResourceDeleted())
    with pytest.raises(NotFound):
        r.decide_delete(deleted, OWNER)
    with pytest.raises(NotFound):
        r.decide_change(resource(PROVISIONED), OUTSIDER, specs={"size": 20}, tags=None)
    deleting = resource(PROVISIONED, ResourceDeletionRequested())
    assert r.decide_delete(deleting, OWNER) == []  # asked twice: once
    assert r.decide_deleted(deleting) == [ResourceDeleted()]
