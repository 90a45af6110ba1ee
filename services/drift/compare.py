"""Declared infrastructure against what the provider has: the findings. Pure.

Only what a spec declares is compared (an attribute nobody declared is not
drift); lists that are sets are compared as sets; ignore patterns are left
out. A declared resource the provider does not have is `missing`; a resource
tagged as ours, in this environment, that nobody declares (any more) is
`unexpected`; look-alikes without our tag are not ours and never reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.drift import findings as f
from services.drift.aws import SETS, Observed
from services.drift.diff import diff
from services.drift.ignore_rules import IgnoreRule, Silenced, silenced


class Declared(msgspec.Struct, frozen=True, kw_only=True):
    resource_id: str
    resource_type: str
    # What the provider should report (aws_provision.desired_attributes).
    desired: dict[str, Any]


class Found(msgspec.Struct, frozen=True, kw_only=True):
    finding: f.Finding
    resource_id: str | None  # ours, when the finding is about a declared resource


def compare(
    declared: Iterable[Declared],
    observed: Iterable[Observed],
    *,
    environment_id: str,
    rules: Iterable[IgnoreRule] = (),
    now: datetime | None = None,
) -> list[Found]:
    """The findings, less what the ignore rules in force at `now` silence."""
    mine = [o for o in observed if o.environment_id == environment_id]
    # By type too: a server's root volume carries the server's DeployForge id.
    by_id = {(o.resource_type, o.deployforge_id): o for o in mine}
    wanted = {d.resource_id: d for d in declared}
    out: list[Found] = []
    rule_list, at = list(rules), now or datetime.now(UTC)

    def quiet(resource_type: str, resource_id: str | None, address: str) -> Silenced:
        return silenced(rule_list, resource_type, resource_id, address, at)

    for resource in wanted.values():
        address = f"aws/{resource.resource_type}/{resource.resource_id}"
        rule = quiet(resource.resource_type, resource.resource_id, address)
        if rule.whole:
            continue
        actual = by_id.get((resource.resource_type, resource.resource_id))
        if actual is None:
            out.append(Found(finding=f.finding(resource.resource_type, address, f.MISSING),
                             resource_id=resource.resource_id))  # fmt: skip
            continue
        compared = {k: actual.attributes.get(k) for k in resource.desired}
        differences = diff(
            resource.desired,
            compared,
            sets=SETS.get(resource.resource_type, ()),
            ignore=rule.pointers,
        )
        if differences:
            finding = f.finding(resource.resource_type, address, f.CHANGED, differences)
            out.append(Found(finding=finding, resource_id=resource.resource_id))
    for actual in mine:
        if actual.deployforge_id not in wanted:
            address = f"aws/{actual.resource_type}/{actual.provider_id}"
            if quiet(actual.resource_type, actual.deployforge_id, address).whole:
                continue
            out.append(Found(finding=f.finding(actual.resource_type, address, f.UNEXPECTED),
                             resource_id=actual.deployforge_id))  # fmt: skip
    return sorted(out, key=lambda found: found.finding.address)
