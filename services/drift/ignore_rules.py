"""Ignore rules: drift someone decided is not drift, per environment. Pure.

A rule names a resource type (a glob: `security_group`, `*`), the resources (a
glob matched against the DeployForge id and against the address: `res_*`,
`aws/bucket/*`), and a JSON pointer pattern (`/tags/owner`, `/ingress/-`):
differences at or inside that place are left out. An empty pointer silences
the resource's findings as a whole. A rule has a reason and may expire; an
expired or removed rule silences nothing. Scans and remediation honour the
same rules: a remediation never touches a place a rule ignores.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import datetime

import msgspec

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.drift.events import IgnoreRuleAdded, IgnoreRuleRemoved


class IgnoreRule(msgspec.Struct, frozen=True, kw_only=True):
    resource_type: str = "*"
    resource: str = "*"
    pointer: str = ""
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def applies(self, resource_type: str, resource_id: str | None, address: str) -> bool:
        if not fnmatch.fnmatchcase(resource_type, self.resource_type):
            return False
        names = [address] + ([resource_id] if resource_id else [])
        return any(fnmatch.fnmatchcase(name, self.resource) for name in names)


class Silenced(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules say about one resource."""

    whole: bool = False  # nothing about it is reported
    pointers: tuple[str, ...] = ()  # these places are left out


def silenced(
    rules: Iterable[IgnoreRule],
    resource_type: str,
    resource_id: str | None,
    address: str,
    now: datetime,
) -> Silenced:
    applying = [
        rule
        for rule in rules
        if rule.live(now) and rule.applies(resource_type, resource_id, address)
    ]
    if any(not rule.pointer for rule in applying):
        return Silenced(whole=True)
    return Silenced(pointers=tuple(sorted({rule.pointer for rule in applying})))


# --- the rule's aggregate (`ignore_rule.<id>`) ------------------------------------------


class RuleState(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: str | None = None
    organization_id: str | None = None
    environment_id: str | None = None
    removed: bool = False

    @property
    def exists(self) -> bool:
        return self.rule_id is not None and not self.removed


def evolve_rule(state: RuleState, event: Event) -> RuleState:
    match event:
        case IgnoreRuleAdded():
            return RuleState(
                rule_id=event.rule_id,
                organization_id=event.organization_id,
                environment_id=event.environment_id,
            )
        case IgnoreRuleRemoved():
            return msgspec.structs.replace(state, removed=True)
    return state


def decide_add(
    state: RuleState,
    actor: Principal,
    added: IgnoreRuleAdded,
    *,
    environment_org: str | None,
    now: datetime,
) -> list[Event]:
    require(actor, "write", added.organization_id)
    if environment_org != added.organization_id:
        raise NotFound("environment not found")
    if added.expires_at is not None and added.expires_at <= now:
        raise ValidationFailed("the rule would have expired already", "$.expires_at")
    if state.rule_id is not None:
        raise Conflict("rule already exists")
    return [added]


def decide_remove(state: RuleState, actor: Principal) -> list[Event]:
    if not state.exists:
        raise NotFound("rule not found")
    require(actor, "write", state.organization_id)
    return [IgnoreRuleRemoved(by=actor.user_id)]
