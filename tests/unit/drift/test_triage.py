"""What people do with a finding, given its events: acknowledge, ignore (until a time),
reopen, remediate (a job re-applies or re-makes; never deletes what nobody declared),
accept (the provider's values become the spec; refused for what cannot be declared and
for environment variables not applied); and ignore rules, which scans and remediation
honour alike."""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pytest

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal
from services.drift import findings as f
from services.drift import ignore_rules as ig
from services.drift import resources as r
from services.drift import scans as s
from services.drift import triage as t
from services.drift.aws import Observed
from services.drift.aws_provision import Untouched
from services.drift.compare import Declared, compare
from services.drift.diff import Difference
from services.drift.events import (
    FindingAccepted,
    FindingAcknowledged,
    FindingIgnored,
    FindingReopened,
    IgnoreRuleAdded,
    RemediationRequested,
    ResourceChangeRequested,
    ResourceReprovisionRequested,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
OWNER = Principal(user_id="usr_o", memberships={"org_1": "owner"})
STRANGER = Principal(user_id="usr_s", memberships={"org_2": "owner"})
WORLD_SSH = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": ["0.0.0.0/0"]}
HTTPS = {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}
GROUP = r.ResourceState(
    resource_id="res_1",
    organization_id="org_1",
    environment_id="env_1",
    type="security_group",
    specs={"description": "web", "ingress": [{**HTTPS, "ipv6_cidrs": []}], "egress": None},
    tags={"team": "web"},
    status=r.ACTIVE,
    provider_id="sg-1",
)


NONE = s.FindingState()


def detected(
    finding: f.Finding, state: s.FindingState = NONE, now: dt.datetime = NOW
) -> list[Event]:
    return s.decide_seen(
        state, finding, organization_id="org_1", environment_id="env_1", scan_id="scan_1",
        resource_id="res_1", now=now,
    )  # fmt: skip


def state_of(*events: Event) -> s.FindingState:
    return reduce(s.evolve_finding, events, s.FindingState())


OPENED = f.finding(
    "security_group",
    "aws/security_group/res_1",
    f.CHANGED,
    [
        Difference(pointer="/ingress/-", expected=None, actual=WORLD_SSH),
        Difference(pointer="/tags/team", expected="web", actual="ops"),
    ],
)
MISSING = f.finding("security_group", "aws/security_group/res_1", f.MISSING)
STRAY = f.finding("security_group", "aws/security_group/sg-9", f.UNEXPECTED)


def test_acknowledged_then_ignored_until_a_time_then_reopened_by_the_next_scan() -> None:
    # Given an open finding
    opened = state_of(*detected(OPENED))
    # When it is acknowledged, then ignored for an hour
    [ack] = t.decide_acknowledge(opened, OWNER, "on it")
    assert isinstance(ack, FindingAcknowledged) and ack.by == "usr_o"
    assert t.decide_acknowledge(state_of(*detected(OPENED), ack), OWNER, None) == []
    [ignored] = t.decide_ignore(opened, OWNER, "known", NOW + dt.timedelta(hours=1), now=NOW)
    assert isinstance(ignored, FindingIgnored)
    quiet = state_of(*detected(OPENED), ignored)
    assert quiet.state == f.IGNORED
    # Then a scan within the hour records nothing; one after it reopens the finding
    assert detected(OPENED, quiet, NOW + dt.timedelta(minutes=30)) == []
    [reopened] = detected(OPENED, quiet, NOW + dt.timedelta(hours=2))
    assert isinstance(reopened, FindingReopened)
    assert s.evolve_finding(quiet, reopened).state == f.OPEN


def test_an_ignore_in_the_past_a_stranger_and_a_resolved_finding_are_refused() -> None:
    opened = state_of(*detected(OPENED))
    with pytest.raises(ValidationFailed) as caught:
        t.decide_ignore(opened, OWNER, "late", NOW - dt.timedelta(seconds=1), now=NOW)
    assert caught.value.details["field"] == "$.until"
    with pytest.raises(NotFound):
        t.decide_acknowledge(opened, STRANGER, None)
    with pytest.raises(NotFound):
        t.decide_acknowledge(s.FindingState(), OWNER, None)
    resolved = s.evolve_finding(opened, s.decide_resolved(opened, scan_id="scan_2")[0])
    with pytest.raises(Conflict, match="resolved"):
        t.decide_remediate(resolved, OWNER, GROUP)


def test_remediating_a_changed_resource_reapplies_its_spec_and_a_missing_one_remakes_it() -> None:
    changed = t.decide_remediate(state_of(*detected(OPENED)), OWNER, GROUP)
    assert changed.finding == [RemediationRequested(by="usr_o", action="reapply")]
    [change] = changed.resource
    assert isinstance(change, ResourceChangeRequested) and change.reason == "remediate"
    assert change.specs is None and change.tags is None  # the spec as declared
    assert r.evolve_resource(GROUP, change).reason == "remediate"
    gone = t.decide_remediate(state_of(*detected(MISSING)), OWNER, GROUP)
    [remake] = gone.resource
    assert isinstance(remake, ResourceReprovisionRequested)
    assert r.evolve_resource(GROUP, remake).status == r.PROVISIONING


def test_remediation_never_deletes_what_nobody_declared_nor_races_a_job() -> None:
    with pytest.raises(Conflict, match="never deletes"):
        t.decide_remediate(state_of(*detected(STRAY)), OWNER, None)
    busy = r.evolve_resource(GROUP, ResourceChangeRequested(tags={"a": "b"}))
    with pytest.raises(Conflict, match="updating"):
        t.decide_remediate(state_of(*detected(OPENED)), OWNER, busy)


def test_accepting_makes_the_providers_rules_and_tags_the_spec() -> None:
    decided = t.decide_accept(state_of(*detected(OPENED)), OWNER, GROUP)
    assert decided.finding == [FindingAccepted(by="usr_o")]
    [change] = decided.resource
    assert isinstance(change, ResourceChangeRequested) and change.reason == "accept"
    assert change.tags == {"team": "ops"}
    assert change.specs is not None
    ports = sorted(rule["from_port"] for rule in change.specs["ingress"])
    assert ports == [22, 443]


def test_accept_is_refused_for_what_a_spec_cannot_say_naming_the_place() -> None:
    other_group = {"protocol": "tcp", "from_port": 5432, "to_port": 5432, "group": "sg-7"}
    finding = f.finding(
        "security_group", "aws/security_group/res_1", f.CHANGED,
        [Difference(pointer="/ingress/-", actual=other_group)],
    )  # fmt: skip
    with pytest.raises(Conflict, match="another security group") as caught:
        t.decide_accept(state_of(*detected(finding)), OWNER, GROUP)
    assert caught.value.details == {"pointer": "/ingress/-"}
    with pytest.raises(Conflict, match="delete its declaration"):
        t.decide_accept(state_of(*detected(MISSING)), OWNER, GROUP)
    not_applied = f.finding("env", "service/svc_1/env/env_1/env/API_KEY", f.CHANGED)
    with pytest.raises(Conflict, match="remediate"):
        t.decide_accept(state_of(*detected(not_applied)), OWNER, None)


def test_an_instance_down_is_remediated_by_a_deployment_and_a_stray_never_is() -> None:
    # given an instance of a deployed service that is down, and one nobody deployed
    down = f.finding("instance", "service/svc_1/env/env_1/instance/ins_1", f.MISSING)
    stray = f.finding("instance", "agent/agt_1/instance/ins_9", f.UNEXPECTED)
    # when each is remediated
    decided = t.decide_remediate(state_of(*detected(down)), OWNER, None, deployment_id="dpl_1")
    # then the one down is put right by deploying again; the stray is left to its owner
    [asked] = decided.finding
    assert isinstance(asked, RemediationRequested)
    assert (asked.action, asked.deployment_id) == ("redeploy", "dpl_1")
    with pytest.raises(Conflict, match="never deletes"):
        t.decide_remediate(state_of(*detected(stray)), OWNER, None, deployment_id="dpl_2")
    with pytest.raises(Conflict, match="cannot be accepted"):
        t.decide_accept(state_of(*detected(stray)), OWNER, None)


RULE = ig.IgnoreRule(resource_type="security_group", resource="res_*", pointer="/tags/team")


def test_an_ignore_rule_leaves_its_place_out_of_a_scan_until_it_expires() -> None:
    declared = [
        Declared(
            resource_id="res_1",
            resource_type="security_group",
            desired={"tags": {"team": "web"}, "ingress": [HTTPS]},
        )
    ]
    observed = [
        Observed(
            resource_type="security_group",
            provider_id="sg-1",
            deployforge_id="res_1",
            environment_id="env_1",
            attributes={"tags": {"team": "ops"}, "ingress": [HTTPS]},
        )
    ]
    assert compare(declared, observed, environment_id="env_1", rules=[RULE], now=NOW) == []
    expired = ig.IgnoreRule(**{**_fields(RULE), "expires_at": NOW})
    [found] = compare(declared, observed, environment_id="env_1", rules=[expired], now=NOW)
    assert [d.pointer for d in found.finding.differences] == ["/tags/team"]
    whole = ig.IgnoreRule(resource="aws/security_group/*")
    assert compare(declared, [], environment_id="env_1", rules=[whole], now=NOW) == []


def test_remediation_leaves_alone_what_the_rules_name() -> None:
    keep = Untouched(("/tags/team", "/ingress/-"))
    assert keep.attribute("ingress") and not keep.attribute("egress")
    assert keep.tags({"team": "ops", "x": "1"}, {"team": "web", "y": "2"}) == {
        "team": "ops",
        "y": "2",
    }
    everything = Untouched(("",))
    assert everything.attribute("instance_type")
    assert everything.tags({"a": "1"}, {"b": "2"}) == {"a": "1"}


def test_a_rule_is_added_for_a_visible_environment_and_not_in_the_past() -> None:
    added = IgnoreRuleAdded(
        rule_id="ign_1", organization_id="org_1", environment_id="env_1",
        resource_type="*", resource="*", pointer="/tags", reason="tags are ops'", by="usr_o",
    )  # fmt: skip
    assert ig.decide_add(ig.RuleState(), OWNER, added, environment_org="org_1", now=NOW) == [added]
    with pytest.raises(NotFound):
        ig.decide_add(ig.RuleState(), OWNER, added, environment_org="org_2", now=NOW)
    stale = IgnoreRuleAdded(**{**_fields(added), "expires_at": NOW})
    with pytest.raises(ValidationFailed):
        ig.decide_add(ig.RuleState(), OWNER, stale, environment_org="org_1", now=NOW)
    live = ig.evolve_rule(ig.RuleState(), added)
    [removed] = ig.decide_remove(live, OWNER)
    with pytest.raises(NotFound):
        ig.decide_remove(ig.evolve_rule(live, removed), OWNER)


def _fields(struct: object) -> dict[str, object]:
    return {k: getattr(struct, k) for k in struct.__struct_fields__}  # type: ignore[attr-defined]
