"""Drift's pure core: differences as JSON pointers (sets compared as sets, ignore
patterns honoured), severity from the ordered rule table, and findings matched across
scans (new, persisting, changed, resolved, reopened; a failed read resolves nothing)."""

from __future__ import annotations

from services.drift import findings as f
from services.drift.diff import Difference, covers, diff, escape, names

SSH_OPEN = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": ["0.0.0.0/0"]}
HTTPS_OPEN = {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}
OFFICE_SSH = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": ["203.0.113.0/24"]}


def test_equal_values_have_no_differences_and_numbers_compare_by_value() -> None:
    assert diff({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}) == []
    assert diff({"size": 30}, {"size": 30.0}) == []
    assert diff({"on": True}, {"on": 1}) == [Difference(pointer="/on", expected=True, actual=1)]


def test_differences_are_json_pointers_with_expected_and_actual() -> None:
    expected = {"instance_type": "t3.small", "tags": {"team": "web"}, "run": ["python", "app.py"]}
    actual = {"instance_type": "t3.large", "tags": {"team": "web", "x": "y"}, "run": ["python"]}
    assert diff(expected, actual) == [
        Difference(pointer="/instance_type", expected="t3.small", actual="t3.large"),
        Difference(pointer="/run/1", expected="app.py", actual=None),
        Difference(pointer="/tags/x", expected=None, actual="y"),
    ]
    # RFC 6901 escaping of `/` and `~` in keys.
    assert escape("a/b~c") == "a~1b~0c"
    assert diff({"a/b": 1}, {"a/b": 2})[0].pointer == "/a~1b"


def test_lists_that_are_sets_ignore_order_and_name_members_missing_or_unexpected() -> None:
    expected = {"ingress": [HTTPS_OPEN, OFFICE_SSH], "sans": ["a", "b"]}
    reordered = {"ingress": [OFFICE_SSH, HTTPS_OPEN], "sans": ["b", "a"]}
    assert diff(expected, reordered, sets=["/ingress", "/sans"]) == []
    # Reordered without saying it is a set: two changed positions.
    assert len(diff(expected, reordered, sets=["/ingress"])) == 2
    opened = {"ingress": [HTTPS_OPEN, OFFICE_SSH, SSH_OPEN], "sans": ["a", "b"]}
    assert diff(expected, opened, sets=["/ingress"]) == [
        Difference(pointer="/ingress/-", expected=None, actual=SSH_OPEN)
    ]
    closed = {"ingress": [HTTPS_OPEN], "sans": ["a", "b"]}
    assert diff(expected, closed, sets=["/ingress"]) == [
        Difference(pointer="/ingress/-", expected=OFFICE_SSH, actual=None)
    ]


def test_pointer_patterns_name_places_with_wildcards_and_cover_what_is_inside() -> None:
    assert names("/ingress", "/ingress") and not names("/ingress", "/ingress/0")
    assert names("/groups/*/rules", "/groups/3/rules")
    assert covers("/tags", "/tags/env") and covers("/tags/**", "/tags/a/b")
    assert covers("/ingress/*/description", "/ingress/2/description")
    assert not covers("/tags", "/tagsx") and not covers("/a/b", "/a")
    ignored = diff(
        {"tags": {"a": 1}, "size": 8, "rules": [{"d": "x", "p": 1}]},
        {"tags": {"a": 2}, "size": 9, "rules": [{"d": "y", "p": 1}]},
        ignore=["/tags", "/rules/*/d"],
    )
    assert ignored == [Difference(pointer="/size", expected=8, actual=9)]


def test_severity_comes_from_the_first_matching_rule_and_the_worst_difference_wins() -> None:
    opened = diff({"ingress": [HTTPS_OPEN]}, {"ingress": [HTTPS_OPEN, SSH_OPEN]}, sets=["/ingress"])
    assert f.severity_of("security_group", f.CHANGED, opened) == "critical"
    web_only = [Difference(pointer="/ingress/-", actual=HTTPS_OPEN)]
    assert f.severity_of("security_group", f.CHANGED, web_only) == "medium"
    office = [Difference(pointer="/ingress/-", actual=OFFICE_SSH)]
    assert f.severity_of("security_group", f.CHANGED, office) == "medium"
    every_port = [Difference(pointer="/ingress/-", actual={"protocol": "-1", "cidrs": ["::/0"]})]
    assert f.severity_of("security_group", f.CHANGED, every_port) == "critical"
    edited = [Difference(pointer="/app.py", expected="sha256:a", actual="sha256:b")]
    assert f.severity_of("release_file", f.CHANGED, edited) == "critical"
    added = [Difference(pointer="/cache.db", expected=None, actual="sha256:c")]
    assert f.severity_of("release_file", f.CHANGED, added) == "medium"
    assert f.severity_of("service", f.MISSING, []) == "high"
    assert f.severity_of("instance", f.MISSING, []) == "high"
    assert f.severity_of("release_dir", f.UNEXPECTED, []) == "medium"
    tags = [Difference(pointer="/tags/team", expected="a", actual="b")]
    assert f.severity_of("server", f.CHANGED, tags) == "low"
    assert f.severity_of("server", f.CHANGED, [*tags, *opened]) == "medium"  # not a group


def test_a_finding_keeps_its_fingerprint_when_its_differences_move() -> None:
    one = f.finding("server", "aws/server/i-1", f.CHANGED, [Difference(pointer="/a", actual=1)])
    two = f.finding("server", "aws/server/i-1", f.CHANGED, [Difference(pointer="/a", actual=2)])
    assert one.fingerprint == two.fingerprint and one.digest != two.digest
    assert f.finding("server", "aws/server/i-1", f.MISSING).fingerprint != one.fingerprint


def _known(finding: f.Finding, state: str = f.OPEN) -> f.Known:
    return f.Known(
        fingerprint=finding.fingerprint, address=finding.address, state=state, digest=finding.digest
    )


def test_findings_across_scans_are_new_persisting_changed_resolved_or_reopened() -> None:
    stays = f.finding("instance", "svc/s1/env/e1/instance/1", f.MISSING)
    moves = f.finding("server", "aws/server/i-1", f.CHANGED, [Difference(pointer="/a", actual=1)])
    moved = f.finding("server", "aws/server/i-1", f.CHANGED, [Difference(pointer="/a", actual=2)])
    gone = f.finding("release", "svc/s1/env/e1/release/r9", f.UNEXPECTED)
    back = f.finding("env", "svc/s1/env/e1/env/GREETING", f.CHANGED)
    fresh = f.finding("server", "aws/server/i-2", f.MISSING)
    known = {k.fingerprint: k for k in (
        _known(stays), _known(moves), _known(gone), _known(back, f.RESOLVED)
    )}  # fmt: skip
    outcome = f.match(known, [stays, moved, back, fresh])
    assert outcome.new == [fresh]
    assert outcome.persisting == [stays]
    assert outcome.changed == [moved]
    assert outcome.reopened == [back]
    assert [k.address for k in outcome.resolved] == [gone.address]


def test_a_resource_that_could_not_be_read_resolves_nothing() -> None:
    instance = f.finding("instance", "svc/s1/env/e1/instance/1", f.MISSING)
    server = f.finding("server", "aws/server/i-1", f.MISSING)
    known = {k.fingerprint: k for k in (_known(instance), _known(server))}
    outcome = f.match(known, [], could_not_read=["svc/s1", "aws"])
    assert outcome.resolved == []
    assert {k.address for k in outcome.unread} == {instance.address, server.address}
    # A prefix is a whole segment: svc/s10 is another service.
    other = f.finding("instance", "svc/s10/env/e1/instance/1", f.MISSING)
    outcome = f.match({other.fingerprint: _known(other)}, [], could_not_read=["svc/s1"])
    assert [k.address for k in outcome.resolved] == [other.address]
