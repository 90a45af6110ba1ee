"""Changing a pipeline: given its events, when renamed or given new steps, then these events."""

from __future__ import annotations

from functools import reduce

import pytest

from libs.errors import AuthorizationDenied, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal
from services.deploy import decider as d
from services.deploy.events import (
    PipelineCreated,
    PipelineDeleted,
    PipelineStepSpec,
    PipelineUpdated,
)

WRITER = Principal(user_id="usr_w", memberships={"org_1": "deployer"})
VIEWER = Principal(user_id="usr_v", memberships={"org_1": "viewer"})
OUTSIDER = Principal(user_id="usr_x", memberships={"org_2": "owner"})


def steps(*names: str) -> list[PipelineStepSpec]:
    return [PipelineStepSpec(name=n, command=["make", n]) for n in names]


CREATED = PipelineCreated(
    pipeline_id="ppl_1",
    organization_id="org_1",
    service_id="svc_1",
    name="release",
    steps=steps("tests", "migrate"),
)


def pipeline(*events: Event) -> d.PipelineState:
    return reduce(d.evolve_pipeline, (CREATED, *events), d.PipelineState())


def test_renaming_records_the_new_name_only() -> None:
    events = d.decide_update_pipeline(pipeline(), WRITER, name="ship", steps=None)

    assert events == [PipelineUpdated(name="ship")]
    assert reduce(d.evolve_pipeline, events, pipeline()).name == "ship"


def test_new_steps_replace_every_step_and_runs_get_them() -> None:
    new = steps("lint", "tests", "smoke")

    events = d.decide_update_pipeline(pipeline(), WRITER, name=None, steps=new)

    assert events == [PipelineUpdated(steps=new)]
    assert reduce(d.evolve_pipeline, events, pipeline()).steps == tuple(new)


def test_the_same_name_and_steps_record_nothing() -> None:
    assert d.decide_update_pipeline(pipeline(), WRITER, name=None, steps=None) == []
    assert (
        d.decide_update_pipeline(
            pipeline(), WRITER, name="release", steps=steps("tests", "migrate")
        )
        == []
    )


def test_only_what_changed_is_recorded() -> None:
    events = d.decide_update_pipeline(
        pipeline(), WRITER, name="release", steps=steps("tests", "deploy-docs")
    )

    assert events == [PipelineUpdated(steps=steps("tests", "deploy-docs"))]


@pytest.mark.parametrize("names", [("tests", "tests"), ("cleanup",), ("lint", "fetch")])
def test_new_steps_follow_the_rules_of_a_new_pipeline(names: tuple[str, ...]) -> None:
    with pytest.raises(ValidationFailed) as raised:
        d.decide_update_pipeline(pipeline(), WRITER, name=None, steps=steps(*names))

    assert raised.value.details.get("field") == "$.steps"


def test_a_viewer_cannot_change_a_pipeline() -> None:
    with pytest.raises(AuthorizationDenied):
        d.decide_update_pipeline(pipeline(), VIEWER, name="ship", steps=None)


def test_another_organizations_pipeline_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_update_pipeline(pipeline(), OUTSIDER, name="ship", steps=None)


def test_a_service_token_changes_only_its_own_services_pipelines() -> None:
    other = Principal(
        user_id="usr_w",
        memberships={"org_1": "deployer"},
        kind="service",
        scopes=("read", "write", "deploy"),
        service_id="svc_2",
    )

    with pytest.raises(NotFound):
        d.decide_update_pipeline(pipeline(), other, name="ship", steps=None)


def test_a_deleted_pipeline_is_not_found() -> None:
    with pytest.raises(NotFound):
        d.decide_update_pipeline(pipeline(PipelineDeleted()), WRITER, name="ship", steps=None)
