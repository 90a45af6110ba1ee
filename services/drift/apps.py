"""What runs against what was deployed, for the services of an environment. Pure.

Desired, for each service with a successful deployment in the environment: the
release of the last one, the replicas it was started with (less instances
stopped on request: a person asked for that, through DeployForge), the
service's environment variables as they are now (as salted hashes), and the
releases the service's deployments produced. Actual: what the agents answered
(services/deploy/observe.py). The findings, each at an address:

- `service/<svc>/env/<env>`, a `service`: not running anywhere (missing), or
  another release running (`/release_id`), or a run command changed since the
  processes started and not deployed (`/run_command`; not when the release's
  deployforge.yml gives the command);
- `service/<svc>/env/<env>/instance/<id>`, an `instance` of the release that
  is not running (missing: crashed and restarting, or killed and kept down);
- `service/<svc>/env/<env>/vars`, an `env`: a variable set, changed or removed
  since the processes were started ("not applied"; names only, never values);
- `service/<svc>/env/<env>/release/<rel>/files`, a `release_file`: files of
  the running release changed, gone or added since the build recorded them;
- `service/<svc>/env/<env>/releases/<dir>`, a `release_dir` nobody deployed
  (unexpected);
- `agent/<agent>/instance/<id>`, an `instance` no route names (unexpected).

An agent that did not answer makes its services unread (`could_not_read`):
nothing about them is reported, and nothing of theirs resolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from services.deploy.observe import Observation, RouteSeen
from services.drift import findings as f
from services.drift.compare import Found
from services.drift.diff import Difference, escape, matches
from services.drift.ignore_rules import IgnoreRule, silenced

NOT_APPLIED = "set after the processes started"
CHANGED_SINCE = "changed after the processes started"
STILL_APPLIED = "removed after the processes started"


class DesiredService(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str
    release_id: str | None  # of the last successful deployment
    deployment_id: str
    env: dict[str, str]  # name -> salted digest of the current value
    releases: frozenset[str] = frozenset()  # every release the service's deployments made
    run_command: list[str] = []  # the service's, now


class AppScan(msgspec.Struct, frozen=True, kw_only=True):
    found: list[Found]
    could_not_read: list[str]  # address prefixes
    compared: int  # services compared


def service_address(service_id: str, environment_id: str) -> str:
    return f"service/{service_id}/env/{environment_id}"


class Findings:
    """The findings of one scan, less what the ignore rules in force silence."""

    def __init__(self, rules: list[IgnoreRule], now: datetime) -> None:
        self.rules, self.now = rules, now
        self.found: list[Found] = []

    def add(
        self, resource_type: str, address: str, kind: str, differences: Sequence[Difference] = ()
    ) -> None:
        rule = silenced(self.rules, resource_type, None, address, self.now)
        if rule.whole:
            return
        kept = [d for d in differences if not matches(d.pointer, rule.pointers)]
        if kind == f.CHANGED and not kept:
            return
        finding = f.finding(resource_type, address, kind, kept)
        self.found.append(Found(finding=finding, resource_id=None))


def compare_apps(
    environment_id: str,
    desired: Iterable[DesiredService],
    observations: Iterable[Observation],
    *,
    now: datetime,
    unread_services: Iterable[str] = (),
    rules: Iterable[IgnoreRule] = (),
) -> AppScan:
    """`unread_services`: services whose agent did not answer."""
    seen = list(observations)
    wanted = {service.service_id: service for service in desired}
    unread = set(unread_services)
    routes: dict[str, list[RouteSeen]] = {}
    for observation in seen:
        for route in observation.routes:
            routes.setdefault(route.service_id, []).append(route)
    out = Findings(list(rules), now)
    could_not_read = sorted(service_address(s, environment_id) for s in unread)
    compared = 0
    for service in wanted.values():
        if service.service_id in unread:
            continue
        compared += 1
        address = service_address(service.service_id, environment_id)
        if not routes.get(service.service_id):
            out.add("service", address, f.MISSING)
            continue
        for route in routes[service.service_id]:
            could_not_read += _route_findings(service, route, address, out)
    for observation in seen:
        for service_id, dirs in sorted(observation.release_dirs.items()):
            if service_id not in wanted:
                continue
            for name in dirs:
                if name not in wanted[service_id].releases:
                    stray = f"{service_address(service_id, environment_id)}/releases/{name}"
                    out.add("release_dir", stray, f.UNEXPECTED)
        for instance_id in observation.strays:
            out.add(
                "instance", f"agent/{observation.agent_id}/instance/{instance_id}", f.UNEXPECTED
            )
    out.found.sort(key=lambda one: one.finding.address)
    return AppScan(found=out.found, could_not_read=could_not_read, compared=compared)


def _route_findings(
    service: DesiredService, route: RouteSeen, address: str, out: Findings
) -> list[str]:
    """The route's findings; what of it could not be read."""
    unread: list[str] = []
    differences: list[Difference] = []
    if service.release_id and route.release_id != service.release_id:
        differences.append(
            Difference(pointer="/release_id", expected=service.release_id, actual=route.release_id)
        )
    if service.run_command and not route.argv_from_manifest and route.argv != service.run_command:
        # Changed since the processes started, not deployed since.
        differences.append(
            Difference(pointer="/run_command", expected=service.run_command, actual=route.argv)
        )
    if differences:
        out.add("service", address, f.CHANGED, differences)
    if route.env is None:
        unread.append(f"{address}/vars")
    else:
        out.add("env", f"{address}/vars", f.CHANGED, env_differences(service.env, route))
    if not route.stopped:
        for instance in route.instances:
            if not instance.stopped and not instance.running:
                out.add("instance", f"{address}/instance/{instance.instance_id}", f.MISSING)
    files_address = f"{address}/release/{route.release_id}/files"
    if route.files is None:
        unread.append(files_address)
    elif not route.files.clean:
        out.add("release_file", files_address, f.CHANGED, file_differences(route))
    return unread


def env_differences(current: dict[str, str], route: RouteSeen) -> list[Difference]:
    """Variables whose value the processes did not start with (names only)."""
    started = route.env or {}
    out: list[Difference] = []
    for name in sorted(current.keys() | started.keys()):
        pointer = f"/{escape(name)}"
        if name not in started:
            out.append(Difference(pointer=pointer, expected=NOT_APPLIED, actual=None))
        elif name not in current:
            if name not in route.env_defaults:
                out.append(Difference(pointer=pointer, expected=None, actual=STILL_APPLIED))
        elif current[name] != started[name]:
            out.append(Difference(pointer=pointer, expected=CHANGED_SINCE, actual="older"))
    return out


def file_differences(route: RouteSeen) -> list[Difference]:
    """Each file changed (both digests), gone (`actual` None) or added (`expected` None)."""
    files = route.files
    assert files is not None
    out = [Difference(pointer=f"/{escape(p)}", expected=was, actual=now)
           for p, (was, now) in files.changed.items()]  # fmt: skip
    out += [Difference(pointer=f"/{escape(p)}", expected=was) for p, was in files.missing.items()]
    out += [Difference(pointer=f"/{escape(p)}", actual=now) for p, now in files.added.items()]
    return sorted(out, key=lambda d: d.pointer)
