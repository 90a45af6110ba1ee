"""Given a deployment and its organization's queue, when reconciled, then the missing step."""

from __future__ import annotations

import pytest

from services.deploy import decider as d
from services.deploy.events import DeploymentDispatched, DeploymentQueued
from services.deploy.reconcile import Dispatch, Enqueue, MarkQueued, Release, Step, reconcile

KEY = "svc_1:env_1"


def _deployment(status: str) -> d.DeploymentState:
    return d.DeploymentState(
        deployment_id="dpl_1",
        organization_id="org_1",
        service_id="svc_1",
        environment_id="env_1",
        status=status,
    )


NOWHERE = d.DispatchState()
WAITING = d.DispatchState(queue=(("dpl_0", KEY), ("dpl_1", KEY)))
HOLDING = d.DispatchState(running={"dpl_1": KEY})


@pytest.mark.parametrize(
    ("status", "queue", "steps"),
    [
        # A crash right after the deployment was appended: it never reached the queue.
        ("created", NOWHERE, [Enqueue()]),
        # Queued, but the command died before telling the deployment so.
        ("created", WAITING, [MarkQueued()]),
        ("queued", WAITING, []),
        # Took a slot, but was never marked dispatched (or its job never published).
        ("created", HOLDING, [Dispatch()]),
        ("queued", HOLDING, [Dispatch()]),
        ("dispatched", HOLDING, [Dispatch()]),
        # Running on an agent: nothing to do.
        ("initializing", HOLDING, []),
        ("running", HOLDING, []),
        # Ended, but its slot or place was not given back.
        ("succeeded", HOLDING, [Release()]),
        ("failed", HOLDING, [Release()]),
        ("cancelled", WAITING, [Release()]),
        # Ended and gone from the queue: in line.
        ("cancelled", NOWHERE, []),
        ("rolled_back", NOWHERE, []),
        # Started but in no slot (never happens in order): not queued again.
        ("running", NOWHERE, []),
    ],
)
def test_given_a_deployment_and_its_queue_when_reconciled_then_the_missing_step(
    status: str, queue: d.DispatchState, steps: list[Step]
) -> None:
    assert reconcile(_deployment(status), queue) == steps


def test_given_an_unknown_deployment_when_reconciled_then_nothing() -> None:
    assert reconcile(d.DeploymentState(), HOLDING) == []


def test_reconciled_steps_once_done_leave_nothing_to_do() -> None:
    """Each step, applied as the handlers apply it, brings the pair in line."""
    deployment, queue = _deployment("created"), NOWHERE
    for _ in range(5):
        steps = reconcile(deployment, queue)
        if not steps:
            break
        for step in steps:
            match step:
                case Enqueue():
                    for event in d.decide_enqueue(queue, deployment_id="dpl_1", key=KEY, limit=5):
                        queue = d.evolve_dispatch(queue, event)
                case MarkQueued():
                    deployment = d.evolve_deployment(deployment, DeploymentQueued(position=1))
                case Dispatch():
                    deployment = d.evolve_deployment(deployment, DeploymentDispatched())
                case Release():
                    for event in d.decide_release(queue, deployment_id="dpl_1", limit=5):
                        queue = d.evolve_dispatch(queue, event)
    assert reconcile(deployment, queue) == [Dispatch()]  # dispatched: its job is (re)published
    assert deployment.status == "dispatched"
    assert "dpl_1" in queue.running
