"""What runs against what was deployed, given the agents' answers: in sync is nothing;
another release, an instance down, a variable set or changed since the start (names
only), files edited or gone (critical) or added (medium), a release directory and an
instance nobody deployed; a service nobody runs is missing unless its agent did not
answer, and then it is unread; ignore rules silence a path or a whole address."""

from __future__ import annotations

import datetime as dt

import msgspec

from services.deploy.observe import InstanceSeen, Observation, RouteSeen, env_digest
from services.deploy.release_files import FileDrift
from services.drift.apps import AppScan, DesiredService, compare_apps
from services.drift.ignore_rules import IgnoreRule

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
SALT = b"s" * 32
ADDRESS = "service/svc_1/env/env_1"


def _digests(env: dict[str, str]) -> dict[str, str]:
    return {k: env_digest(SALT, k, v) for k, v in env.items()}


DESIRED = DesiredService(
    service_id="svc_1",
    release_id="rel_2",
    deployment_id="dpl_2",
    env=_digests({"API_URL": "https://api", "TOKEN": "t2"}),
    releases=frozenset({"rel_1", "rel_2"}),
    run_command=["python", "app.py"],
)
RUNNING = RouteSeen(
    service_id="svc_1",
    release_id="rel_2",
    deployment_id="dpl_2",
    replicas=2,
    argv=["python", "app.py"],
    stopped=False,
    instances=[
        InstanceSeen(instance_id="dpl_2-0", release_id="rel_2", running=True, stopped=False),
        InstanceSeen(instance_id="dpl_2-1", release_id="rel_2", running=True, stopped=False),
    ],
    env=_digests({"API_URL": "https://api", "TOKEN": "t2"}),
    env_defaults=[],
    files=FileDrift(),
)


def _seen(route: RouteSeen = RUNNING, **fields: object) -> Observation:
    base = {
        "agent_id": "agent-a",
        "environment_id": "env_1",
        "routes": [route],
        "release_dirs": {"svc_1": ["rel_1", "rel_2"]},
        "strays": [],
    }
    return Observation(**{**base, **fields})  # type: ignore[arg-type]


def _scan(
    *observations: Observation, unread: tuple[str, ...] = (), rules: tuple[IgnoreRule, ...] = ()
):  # type: ignore[no-untyped-def]
    return compare_apps(
        "env_1", [DESIRED], observations, now=NOW, unread_services=unread, rules=rules
    )


def _pointers(scan: AppScan, resource_type: str) -> list[str]:
    [found] = [f for f in scan.found if f.finding.resource_type == resource_type]
    return [d.pointer for d in found.finding.differences]


def test_what_runs_as_deployed_is_no_drift() -> None:
    scan = _scan(_seen())
    assert (scan.found, scan.could_not_read, scan.compared) == ([], [], 1)


def test_another_release_an_instance_down_and_variables_not_applied() -> None:
    # Given the agent runs the previous release, one instance down, and older variables
    down = msgspec.structs.replace(RUNNING.instances[1], running=False)
    old = msgspec.structs.replace(
        RUNNING,
        release_id="rel_1",
        instances=[RUNNING.instances[0], down],
        env=_digests({"API_URL": "https://api", "TOKEN": "t1", "LEGACY": "x"}),
    )
    # When it is compared
    scan = _scan(_seen(old))
    # Then
    by_type = {f.finding.resource_type: f.finding for f in scan.found}
    assert by_type["service"].differences[0].actual == "rel_1"
    assert by_type["service"].severity == "high"
    assert by_type["instance"].address == f"{ADDRESS}/instance/dpl_2-1"
    assert by_type["instance"].kind == "missing"
    assert _pointers(scan, "env") == ["/LEGACY", "/TOKEN"]
    values = msgspec.json.encode(by_type["env"].differences)
    assert b"t1" not in values and b"t2" not in values


def test_a_run_command_changed_and_not_deployed_is_drift_unless_the_release_gives_it() -> None:
    # given the service's run command changed after its processes started
    changed = msgspec.structs.replace(DESIRED, run_command=["python", "app.py", "--workers=4"])
    # when compared with what runs
    scan = compare_apps("env_1", [changed], [_seen()], now=NOW)
    # then the service differs at /run_command, with both commands
    [found] = scan.found
    [difference] = found.finding.differences
    assert (found.finding.resource_type, difference.pointer) == ("service", "/run_command")
    assert (difference.expected, difference.actual) == (changed.run_command, RUNNING.argv)
    # unless the release's deployforge.yml gave the command the processes run
    from_release = msgspec.structs.replace(RUNNING, argv_from_manifest=True)
    assert compare_apps("env_1", [changed], [_seen(from_release)], now=NOW).found == []


def test_an_instance_stopped_on_request_is_not_drift() -> None:
    stopped = msgspec.structs.replace(RUNNING.instances[1], running=False, stopped=True)
    route = msgspec.structs.replace(RUNNING, instances=[RUNNING.instances[0], stopped])
    assert _scan(_seen(route)).found == []


def test_files_edited_or_gone_are_critical_and_files_added_are_not() -> None:
    edited = FileDrift(
        changed={"app.py": ("sha256:a", "sha256:b")}, missing={"VERSION": "sha256:c"}
    )
    scan = _scan(_seen(msgspec.structs.replace(RUNNING, files=edited)))
    [found] = scan.found
    assert found.finding.address == f"{ADDRESS}/release/rel_2/files"
    assert (found.finding.severity, [d.pointer for d in found.finding.differences]) == (
        "critical",
        ["/VERSION", "/app.py"],
    )
    added = FileDrift(added={"cache/db.sqlite": "sha256:d"})
    [found] = _scan(_seen(msgspec.structs.replace(RUNNING, files=added))).found
    assert found.finding.severity == "medium"
    assert found.finding.differences[0].pointer == "/cache~1db.sqlite"


def test_what_nobody_deployed_is_unexpected() -> None:
    scan = _scan(_seen(release_dirs={"svc_1": ["rel_1", "rel_2", "rel_x"]}, strays=["old-0"]))
    assert [(f.finding.address, f.finding.kind) for f in scan.found] == [
        ("agent/agent-a/instance/old-0", "unexpected"),
        (f"{ADDRESS}/releases/rel_x", "unexpected"),
    ]


def test_a_service_nobody_runs_is_missing_unless_its_agent_did_not_answer() -> None:
    [missing] = _scan().found
    assert (missing.finding.address, missing.finding.kind) == (ADDRESS, "missing")
    unread = _scan(unread=("svc_1",))
    assert (unread.found, unread.could_not_read, unread.compared) == ([], [ADDRESS], 0)
    blind = msgspec.structs.replace(RUNNING, env=None, files=None)
    assert _scan(_seen(blind)).could_not_read == [
        f"{ADDRESS}/vars",
        f"{ADDRESS}/release/rel_2/files",
    ]


def test_ignore_rules_silence_a_path_or_a_whole_address() -> None:
    added = FileDrift(added={"cache/x": "sha256:1"}, changed={"app.py": ("sha256:a", "sha256:b")})
    route = msgspec.structs.replace(RUNNING, files=added)
    cache = IgnoreRule(resource_type="release_file", pointer="/cache~1*")
    assert _pointers(_scan(_seen(route), rules=(cache,)), "release_file") == ["/app.py"]
    everything = IgnoreRule(resource_type="release_file")
    assert _scan(_seen(route), rules=(everything,)).found == []
