"""Findings: what a scan found, how bad it is, and what became of last scan's.

Pure. A finding is one resource that is `missing` (desired, not there),
`unexpected` (there, not desired: nobody deployed it) or `changed` (there, but
its attributes differ; the differences say where). Its fingerprint is the
resource's type and address and the kind: the same drift found again is the
same finding, and a finding whose differences moved is `changed`, not new.

Across scans (`match`): new, persisting, changed, resolved, reopened. A
resource that could not be read this time resolves nothing: its findings
persist as they were, and the scan says it could not read it.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from services.drift.diff import Difference, canonical, covers

MISSING, UNEXPECTED, CHANGED = "missing", "unexpected", "changed"
SEVERITIES = ("low", "medium", "high", "critical")  # in order
OPEN, ACKNOWLEDGED, IGNORED, RESOLVED = "open", "acknowledged", "ignored", "resolved"


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    resource_type: str  # instance | release | release_file | env | route | certificate | server ...
    address: str  # e.g. service/<id>/env/<id>/instance/<n>, aws/security_group/<id>
    kind: str  # missing | unexpected | changed
    differences: list[Difference] = []
    severity: str = "medium"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.resource_type, self.address, self.kind)

    @property
    def digest(self) -> str:
        """What the finding says: a changed digest is a changed finding."""
        return hashlib.sha256(canonical(msgspec.to_builtins(self.differences))).hexdigest()[:32]


def fingerprint(resource_type: str, address: str, kind: str) -> str:
    return hashlib.sha256(f"{resource_type}\n{address}\n{kind}".encode()).hexdigest()[:32]


# --- severity: an ordered rule table, the first rule that matches decides ---------------

Predicate = Callable[[str, str, Difference | None], bool]


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    severity: str
    resource_type: str = "*"  # a glob
    kind: str = "*"
    pointer: str = ""  # a pointer pattern the difference must be at (or inside)
    # Looks at the difference itself (an ingress rule's source and port, say).
    test: Any = None  # Predicate | None; Any: msgspec does not encode callables

    def applies(self, resource_type: str, kind: str, difference: Difference | None) -> bool:
        if not fnmatch.fnmatchcase(resource_type, self.resource_type):
            return False
        if self.kind != "*" and kind != self.kind:
            return False
        if self.pointer and (difference is None or not covers(self.pointer, difference.pointer)):
            return False
        return self.test is None or bool(self.test(resource_type, kind, difference))


_WEB_PORTS = {80, 443}
_EVERYWHERE = {"0.0.0.0/0", "::/0"}


def _open_to_the_world(_: str, __: str, difference: Difference | None) -> bool:
    """An ingress rule present that admits anyone on a port other than 80 or 443."""
    rule = difference.actual if difference is not None else None
    if not isinstance(rule, dict):
        return False
    sources = set(rule.get("cidrs") or []) | set(rule.get("ipv6_cidrs") or [])
    if not sources & _EVERYWHERE:
        return False
    low, high = rule.get("from_port"), rule.get("to_port", rule.get("from_port"))
    if low is None or str(rule.get("protocol")) == "-1":
        return True  # every port
    ports = set(range(int(low), int(high if high is not None else low) + 1))
    return bool(ports - _WEB_PORTS)


def _recorded_file(_: str, __: str, difference: Difference | None) -> bool:
    """A file the build recorded (changed or gone); one added since is less alarming."""
    return difference is not None and difference.expected is not None


RULES: tuple[Rule, ...] = (
    Rule(
        name="ingress open to the world beyond 80/443",
        severity="critical",
        resource_type="security_group",
        pointer="/ingress",
        test=_open_to_the_world,
    ),
    Rule(
        name="a file of a release changed or gone",
        severity="critical",
        resource_type="release_file",
        test=_recorded_file,
    ),
    Rule(name="a service not running", severity="high", resource_type="service", kind=MISSING),
    Rule(
        name="another release running",
        severity="high",
        resource_type="service",
        pointer="/release_id",
    ),
    Rule(name="an instance not running", severity="high", resource_type="instance", kind=MISSING),
    Rule(
        name="a public bucket",
        severity="critical",
        resource_type="bucket",
        pointer="/public_access_block",
    ),
    Rule(
        name="an expired certificate served",
        severity="critical",
        resource_type="certificate",
        pointer="/not_after",
    ),
    Rule(name="a certificate not served", severity="high", resource_type="certificate"),
    Rule(name="a domain routed otherwise", severity="high", resource_type="route"),
    Rule(name="something nobody deployed", severity="medium", kind=UNEXPECTED),
    Rule(name="an environment variable not applied", severity="medium", resource_type="env"),
    Rule(name="tags", severity="low", pointer="/tags"),
    Rule(name="anything else", severity="medium"),
)


def severity_of(
    resource_type: str,
    kind: str,
    differences: Iterable[Difference],
    rules: tuple[Rule, ...] = RULES,
) -> str:
    """The worst severity the first matching rule gives any difference (or the finding
    itself, when it has none: missing and unexpected resources)."""
    worst = -1
    each: list[Difference | None] = [*differences]
    for difference in each or [None]:
        for rule in rules:
            if rule.applies(resource_type, kind, difference):
                worst = max(worst, SEVERITIES.index(rule.severity))
                break
    return SEVERITIES[max(worst, 0)]


def finding(
    resource_type: str, address: str, kind: str, differences: Iterable[Difference] = ()
) -> Finding:
    found = list(differences)
    return Finding(
        resource_type=resource_type,
        address=address,
        kind=kind,
        differences=found,
        severity=severity_of(resource_type, kind, found),
    )


# --- across scans -----------------------------------------------------------------------


class Known(msgspec.Struct, frozen=True, kw_only=True):
    """A finding as the last scans left it."""

    fingerprint: str
    address: str
    state: str  # open | acknowledged | ignored | resolved
    digest: str


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    new: list[Finding] = []
    reopened: list[Finding] = []
    changed: list[Finding] = []
    persisting: list[Finding] = []
    resolved: list[Known] = []
    # Known findings of resources this scan could not read: neither persisting nor
    # resolved, just not looked at.
    unread: list[Known] = []


def match(
    known: Mapping[str, Known],
    current: Iterable[Finding],
    *,
    could_not_read: Iterable[str] = (),
) -> Outcome:
    """Sort this scan's findings against the known ones. `could_not_read`: address
    prefixes (a service, an agent's instances, a provider's resources) whose state this
    scan does not know."""
    unreadable = tuple(could_not_read)
    new: list[Finding] = []
    reopened: list[Finding] = []
    changed: list[Finding] = []
    persisting: list[Finding] = []
    seen: set[str] = set()
    for one in current:
        seen.add(one.fingerprint)
        before = known.get(one.fingerprint)
        if before is None:
            new.append(one)
        elif before.state == RESOLVED:
            reopened.append(one)
        elif before.digest != one.digest:
            changed.append(one)
        else:
            persisting.append(one)
    resolved: list[Known] = []
    unread: list[Known] = []
    for fp, before in sorted(known.items()):
        if fp in seen or before.state == RESOLVED:
            continue
        if any(before.address == p or before.address.startswith(p + "/") for p in unreadable):
            unread.append(before)
        else:
            resolved.append(before)
    return Outcome(
        new=new,
        reopened=reopened,
        changed=changed,
        persisting=persisting,
        resolved=resolved,
        unread=unread,
    )
