"""Scans and findings, given their events: one outcome per scan; a finding new, then seen
again quietly, changed, resolved, reopened; acknowledged stays acknowledged."""

from __future__ import annotations

from functools import reduce

import pytest

from libs.errors import NotFound
from libs.events import Event
from libs.principal import Principal
from services.drift import findings as f
from services.drift import scans as s
from services.drift.diff import Difference
from services.drift.events import (
    DriftDetected,
    DriftResolved,
    ScanCompleted,
    ScanFailed,
    ScanRequested,
)

OWNER = Principal(user_id="usr_o", memberships={"org_1": "owner"})
REQUESTED = ScanRequested(scan_id="scan_1", organization_id="org_1", environment_id="env_1")
ONE = f.finding("server", "aws/server/res_1", f.CHANGED, [Difference(pointer="/a", actual=1)])
MOVED = f.finding("server", "aws/server/res_1", f.CHANGED, [Difference(pointer="/a", actual=2)])


def seen(state: s.FindingState, finding: f.Finding = ONE) -> list[Event]:
    return s.decide_seen(
        state, finding, organization_id="org_1", environment_id="env_1", scan_id="scan_2",
        resource_id="res_1",
    )  # fmt: skip


def finding(*events: Event) -> s.FindingState:
    return reduce(s.evolve_finding, events, s.FindingState())


def test_a_scan_is_requested_for_a_visible_environment_and_ends_once() -> None:
    assert s.decide_scan(s.ScanState(), OWNER, REQUESTED, environment_org="org_1") == [REQUESTED]
    with pytest.raises(NotFound):
        s.decide_scan(s.ScanState(), OWNER, REQUESTED, environment_org="org_2")
    running = s.evolve_scan(s.ScanState(), REQUESTED)
    done = ScanCompleted(drifts_detected=0, critical=0)
    assert s.decide_outcome(running, done) == [done]
    ended = s.evolve_scan(running, done)
    assert s.decide_outcome(ended, ScanFailed(reason="x")) == []


def test_a_finding_is_new_then_quiet_then_changed_then_resolved_then_reopened() -> None:
    [new] = seen(finding())
    assert isinstance(new, DriftDetected) and new.change == "new"
    assert new.finding_id == s.finding_id("env_1", ONE.fingerprint)
    assert [d.pointer for d in new.differences] == ["/a"]
    assert seen(finding(new)) == []  # the same drift again: no event
    [changed] = seen(finding(new), MOVED)
    assert isinstance(changed, DriftDetected) and changed.change == "changed"
    [resolved] = s.decide_resolved(finding(new), scan_id="scan_3")
    assert resolved == DriftResolved(scan_id="scan_3")
    assert s.decide_resolved(finding(new, resolved), scan_id="scan_4") == []
    [reopened] = seen(finding(new, resolved))
    assert isinstance(reopened, DriftDetected) and reopened.change == "reopened"
    assert finding(new, resolved, reopened).state == f.OPEN


def test_an_acknowledged_finding_stays_acknowledged_when_its_drift_changes() -> None:
    [new] = seen(finding())
    acknowledged = s.FindingState(
        finding_id=new.finding_id if isinstance(new, DriftDetected) else "",
        state=f.ACKNOWLEDGED,
        digest=ONE.digest,
    )
    [changed] = seen(acknowledged, MOVED)
    assert s.evolve_finding(acknowledged, changed).state == f.ACKNOWLEDGED
