"""What people do with a finding: acknowledge, ignore, reopen, remediate, accept. Pure.

- acknowledge: seen, someone is on it; it still counts as drift.
- ignore: not drift for now (a reason; until a time, or until reopened). A
  scan reopens a finding whose ignore expired.
- remediate: make the world the desired state again. For an infrastructure
  resource a job re-applies its spec (changed) or makes it again (missing),
  leaving alone every place an ignore rule names; a deployed service is
  deployed again (a fresh build of the commit that should run, with the
  variables as they are now: the gateway starts it, the finding records it).
  Something nobody declared (`unexpected`) is never deleted: that is for a
  person to do.
- accept: make what runs the desired state. For an infrastructure resource,
  its spec and tags become what the provider has (a change of the resource,
  applied by a job that then finds nothing to do). What cannot be declared
  (a rule naming another group, say) is refused with the place named.

Each returns the finding's events and the resource's.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import msgspec

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.drift import resources as r
from services.drift import specs
from services.drift.aws_provision import desired_rules
from services.drift.events import (
    FindingAccepted,
    FindingAcknowledged,
    FindingIgnored,
    FindingReopened,
    RemediationRequested,
    ResourceChangeRequested,
    ResourceReprovisionRequested,
)
from services.drift.findings import ACKNOWLEDGED, CHANGED, IGNORED, MISSING, OPEN, RESOLVED
from services.drift.scans import FindingState

INFRASTRUCTURE = frozenset(specs.SPECS)
# Findings about a deployed service: remediated by deploying it again.
# What a deployment puts right (a missing instance included; an instance nobody
# deployed is never touched).
SERVICES = frozenset({"service", "env", "release_file", "instance"})
# What an edge replica routes and serves: it follows the edge bucket, which the
# domains context writes; a replica that differs has stopped following it.
EDGE = frozenset({"route", "certificate"})
EDGE_REMEDY = (
    "an edge replica serves what it loaded from the edge bucket: restart the replica"
    " to load it again"
)


class Decided(msgspec.Struct, frozen=True, kw_only=True):
    finding: list[Event] = []
    resource: list[Event] = []


def _found(state: FindingState, actor: Principal) -> None:
    if state.state is None:
        raise NotFound("finding not found")
    require(actor, "write", state.organization_id)


def _standing(state: FindingState, doing: str) -> None:
    if state.state == RESOLVED:
        raise Conflict(f"the finding is resolved: nothing to {doing}")


def decide_acknowledge(state: FindingState, actor: Principal, reason: str | None) -> list[Event]:
    _found(state, actor)
    _standing(state, "acknowledge")
    if state.state == ACKNOWLEDGED:
        return []
    return [FindingAcknowledged(by=actor.user_id, reason=reason)]


def decide_ignore(
    state: FindingState,
    actor: Principal,
    reason: str,
    until: datetime | None,
    *,
    now: datetime,
) -> list[Event]:
    _found(state, actor)
    _standing(state, "ignore")
    if until is not None and until <= now:
        raise ValidationFailed("`until` has passed already", "$.until")
    if state.state == IGNORED and state.until == until:
        return []
    return [FindingIgnored(by=actor.user_id, reason=reason, until=until)]


def decide_reopen(state: FindingState, actor: Principal) -> list[Event]:
    _found(state, actor)
    if state.state in (OPEN, RESOLVED):
        return []
    return [FindingReopened(by=actor.user_id)]


def ignore_expired(state: FindingState, now: datetime) -> bool:
    return state.state == IGNORED and state.until is not None and state.until <= now


def decide_remediate(
    state: FindingState,
    actor: Principal,
    resource: r.ResourceState | None,
    *,
    deployment_id: str | None = None,
    now: datetime | None = None,
) -> Decided:
    _found(state, actor)
    _standing(state, "remediate")
    if state.kind not in (MISSING, CHANGED):
        raise Conflict(
            "DeployForge never deletes what it did not declare: remove it"
            " yourself, or silence it with an ignore rule"
        )
    if state.resource_type in SERVICES:
        if deployment_id is None:
            raise Conflict("a service is remediated by deploying it again")
        action = RemediationRequested(
            by=actor.user_id, action="redeploy", deployment_id=deployment_id
        )
        return Decided(finding=[action])
    if state.resource_type in EDGE:
        raise Conflict(EDGE_REMEDY)
    if state.resource_type not in INFRASTRUCTURE:
        raise Conflict(f"{_a(state.resource_type)} finding cannot be remediated here")
    resource = _resource_of(state, resource)
    if resource.status in r.BUSY:
        raise Conflict(f"the resource is {resource.status}: wait for that job to end")
    by = actor.user_id
    if state.kind == MISSING:
        return Decided(
            finding=[RemediationRequested(by=by, action="reprovision", requested_at=now)],
            resource=[ResourceReprovisionRequested(finding_id=state.finding_id)],
        )
    return Decided(
        finding=[RemediationRequested(by=by, action="reapply", requested_at=now)],
        resource=[ResourceChangeRequested(finding_id=state.finding_id, reason="remediate")],
    )


def decide_accept(
    state: FindingState, actor: Principal, resource: r.ResourceState | None
) -> Decided:
    _found(state, actor)
    _standing(state, "accept")
    if state.resource_type == "env":
        raise Conflict(
            "an environment variable that is not applied cannot be accepted: the processes"
            " were started with the old values; remediate (redeploy) to apply it"
        )
    if state.resource_type in SERVICES:
        raise Conflict(
            "what a deployed service runs cannot be accepted: remediate (deploy it again),"
            " or ignore it"
        )
    if state.resource_type in EDGE:
        raise Conflict(
            "what an edge replica serves cannot be accepted: the domain's settings"
            f" (PATCH /v1/domains/{{id}}) say what it should; {EDGE_REMEDY}"
        )
    if state.kind == MISSING:
        raise Conflict(
            "to accept that a resource is gone, delete its declaration"
            " (DELETE /v1/infrastructure/resources/{id})"
        )
    if state.kind != CHANGED or state.resource_type not in INFRASTRUCTURE:
        raise Conflict(f"{_a(state.kind)} {state.resource_type} cannot be accepted")
    resource = _resource_of(state, resource)
    if resource.status in r.BUSY:
        raise Conflict(f"the resource is {resource.status}: wait for that job to end")
    new_specs, new_tags = accepted(resource.type, resource.specs, resource.tags, state.differences)
    return Decided(
        finding=[FindingAccepted(by=actor.user_id)],
        resource=[
            ResourceChangeRequested(
                specs=new_specs if new_specs != resource.specs else None,
                tags=new_tags if new_tags != resource.tags else None,
                finding_id=state.finding_id,
                reason="accept",
            )
        ],
    )


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _resource_of(state: FindingState, resource: r.ResourceState | None) -> r.ResourceState:
    if resource is None or not resource.exists or resource.environment_id != state.environment_id:
        raise Conflict("the finding's resource is no longer declared")
    return resource


# --- accept: the provider's values as a spec --------------------------------------------

_RULE_SETS = ("ingress", "egress")


def accepted(
    resource_type: str,
    declared: dict[str, Any],
    tags: dict[str, str],
    differences: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec and tags that make each difference's actual value the desired one."""
    new_specs, new_tags = copy.deepcopy(declared), dict(tags)
    rule_changes: dict[str, list[dict[str, Any]]] = {}
    for difference in differences:
        pointer, actual = difference["pointer"], difference.get("actual")
        tokens = pointer.split("/")[1:]
        if tokens[:1] == ["tags"] and len(tokens) == 2:
            key = tokens[1].replace("~1", "/").replace("~0", "~")
            if actual is None:
                new_tags.pop(key, None)
            else:
                new_tags[key] = str(actual)
        elif tokens[:1] and tokens[0] in _RULE_SETS and tokens[1:] == ["-"]:
            rule_changes.setdefault(tokens[0], []).append(difference)
        elif resource_type == "bucket" and tokens[:1] == ["public_access_block"]:
            new_specs["block_public_access"] = False
        elif len(tokens) == 1 and tokens[0] in new_specs and tokens[0] != "security_group_ids":
            new_specs[tokens[0]] = actual
        else:
            raise Conflict(
                f"the difference at {pointer} cannot be declared in a spec:"
                " change the resource's spec (PATCH) instead",
                {"pointer": pointer},
            )
    for place, changes in rule_changes.items():
        new_specs[place] = _rules_after(new_specs.get(place) or [], changes, place)
    try:
        spec = specs.check(resource_type, new_specs)
    except ValidationFailed as exc:
        raise Conflict(f"what the provider has is not a valid spec: {exc}") from exc
    return msgspec.to_builtins(spec), new_tags


def _rules_after(
    declared: list[dict[str, Any]], changes: list[dict[str, Any]], place: str
) -> list[dict[str, Any]]:
    """Declared rules with the provider's extra members added and its missing ones gone."""
    rules = specs.check("security_group", {"ingress": declared}).ingress  # type: ignore[attr-defined]
    members = {msgspec.json.encode(m, order="sorted"): m for m in desired_rules(rules)}
    for change in changes:
        if change.get("expected") is not None:
            members.pop(msgspec.json.encode(change["expected"], order="sorted"), None)
        if change.get("actual") is not None:
            rule = change["actual"]
            if rule.get("group"):
                raise Conflict(
                    f"a rule in /{place} names another security group ({rule['group']}):"
                    " declare it by PATCHing the spec",
                    {"pointer": f"/{place}/-"},
                )
            members[msgspec.json.encode(rule, order="sorted")] = rule
    out = []
    for member in members.values():
        protocol = member["protocol"]
        out.append(
            {
                "protocol": protocol,
                "from_port": member["from_port"] if member.get("from_port") is not None else -1,
                "to_port": member["to_port"] if member.get("to_port") is not None else -1,
                "cidrs": member.get("cidrs") or [],
                "ipv6_cidrs": member.get("ipv6_cidrs") or [],
            }
        )
    return sorted(out, key=lambda m: msgspec.json.encode(m, order="sorted"))
