"""Drift scans and their findings (the DeployForge seed's headline): an environment's
declared infrastructure against what its provider has."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routes.environments import get_visible_environment
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import require_visible
from libs.errors import Conflict
from services.deploy.commands import CreateDeployment
from services.deploy.status import TERMINAL as DEPLOYMENT_ENDED
from services.drift import commands as c
from services.drift.triage import SERVICES

api = Api("drift")


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    pointer: str  # a JSON pointer into the resource (RFC 6901); `/-` ends a set member
    expected: Any = None
    actual: Any = None


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    environment_id: str
    resource_type: str
    resource_id: str | None
    address: str
    kind: str  # missing | unexpected | changed
    severity: str  # low | medium | high | critical
    differences: list[Difference]
    state: str  # open | acknowledged | ignored | resolved
    first_seen: datetime
    last_seen: datetime
    last_scan_id: str
    resolved_at: datetime | None
    # Who acknowledged, ignored or reopened it last, why, and until when (an ignore).
    state_by: str | None = None
    state_reason: str | None = None
    state_at: datetime | None = None
    ignored_until: datetime | None = None
    # The last remediation or acceptance asked for (remediate | accept), by whom, when.
    last_action: str | None = None
    last_action_by: str | None = None
    last_action_at: datetime | None = None
    # The deployment a remediation of a service started.
    remediation_deployment_id: str | None = None


class CriticalFinding(msgspec.Struct, frozen=True, kw_only=True):
    """The seed's shape of a critical finding."""

    resource_id: str
    expected_config: Any
    actual_config: Any


class Scan(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    scan_id: str  # the seed's name for `id`
    environment_id: str
    initiated_by: str | None
    scheduled: bool  # requested by the environment's schedule
    remediate: bool  # a remediate-mode schedule's: it remediates what it finds
    status: str  # running | completed | failed | skipped (a deployment was running)
    drifts_detected: int | None
    critical: int | None
    new: int | None
    reopened: int | None
    changed: int | None
    resolved: int | None
    resources: int | None
    services: int | None  # deployed services compared
    # What could not be read (a busy resource, a service whose agent did not answer).
    could_not_read: list[str]
    reason: str | None
    started_at: datetime
    finished_at: datetime | None


class ScanDetail(Scan, frozen=True, kw_only=True):
    # The environment's findings this scan left open, worst first.
    findings: list[Finding]
    critical_findings: list[CriticalFinding]


class FindingFilters(msgspec.Struct, frozen=True, kw_only=True):
    state: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    severity: Annotated[str, msgspec.Meta(max_length=20)] | None = None


_SCAN = (
    "id, environment_id, initiated_by, scheduled, remediate, status, drifts_detected,"
    " critical, new, reopened, changed, resolved, resources, services, could_not_read,"
    " reason, started_at, finished_at, organization_id"
)
_FINDING = (
    "id, environment_id, resource_type, resource_id, address, kind, severity, differences,"
    " state, first_seen, last_seen, last_scan_id, resolved_at, state_by, state_reason,"
    " state_at, ignored_until, last_action, last_action_by, last_action_at,"
    " remediation_deployment_id"
)
_SEVERITY_ORDER = "array_position(ARRAY['critical','high','medium','low'], severity)"


def _scan(row: asyncpg.Record) -> Scan:
    fields = dict(row)
    fields.pop("organization_id")
    return Scan(scan_id=fields["id"], **fields)


def _finding(row: asyncpg.Record | dict[str, Any]) -> Finding:
    fields = dict(row)
    raw = fields.pop("differences")
    decoded = msgspec.json.decode(raw) if isinstance(raw, str | bytes) else raw
    return Finding(differences=msgspec.convert(decoded, list[Difference]), **fields)


async def _visible_scan(request: web.Request, scan_id: str) -> asyncpg.Record:
    row = await request.app[keys.POOL].fetchrow(
        f"SELECT {_SCAN} FROM drift.scans WHERE id = $1",  # noqa: S608
        scan_id,
    )
    require_visible(principal_of(request), row["organization_id"] if row else None, "scan")
    return row


@api.post(
    "/v1/environments/{id}/drift-scans",
    summary="Scan an environment for drift now (asynchronous: 202)",
    scope="write",
    response=Scan,
    status=202,
)
async def request_scan(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    result = await send(
        request, "drift", "request_scan", c.RequestScan(environment_id=environment.id)
    )
    scan_id = msgspec.json.decode(result.data, type=c.Created).id
    await caught_up(request, result)
    row = await _visible_scan(request, scan_id)
    return json_response(_scan(row), status=202, headers={"Location": f"/v1/drift-scans/{scan_id}"})


_SCANS = (
    f"SELECT {_SCAN} FROM drift.scans WHERE environment_id = $1"  # noqa: S608
    " AND ($2::timestamptz IS NULL OR (started_at, id) > ($2, $3)) ORDER BY started_at, id"
    " LIMIT $4"
)


@api.get(
    "/v1/environments/{id}/drift-scans",
    summary="An environment's scans, oldest first",
    response=Page[Scan],
)
async def list_scans(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    page = await fetch_page(request, _SCANS, environment.id, build=_scan, at="started_at")
    return json_response(page)


@api.get(
    "/v1/drift-scans/{id}",
    summary="One scan: its status, counts and the findings it left open",
    response=ScanDetail,
)
async def get_scan(request: web.Request) -> web.Response:
    row = await _visible_scan(request, request.match_info["id"])
    scan = _scan(row)
    rows = await request.app[keys.POOL].fetch(
        f"SELECT {_FINDING} FROM drift.findings WHERE environment_id = $1"  # noqa: S608
        f" AND state IN ('open', 'acknowledged') ORDER BY {_SEVERITY_ORDER}, first_seen, id",
        scan.environment_id,
    )
    found = [_finding(r) for r in rows] if scan.status == "completed" else []
    critical = [
        CriticalFinding(
            resource_id=f.resource_id or f.address,
            expected_config={d.pointer: d.expected for d in f.differences},
            actual_config={d.pointer: d.actual for d in f.differences},
        )
        for f in found
        if f.severity == "critical"
    ]
    fields = msgspec.structs.asdict(scan)
    return json_response(ScanDetail(**fields, findings=found, critical_findings=critical))


_FINDINGS = (
    f"SELECT {_FINDING} FROM drift.findings WHERE environment_id = $1"  # noqa: S608
    " AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR severity = $3)"
    " AND ($4::timestamptz IS NULL OR (first_seen, id) > ($4, $5)) ORDER BY first_seen, id"
    " LIMIT $6"
)


@api.get(
    "/v1/environments/{id}/drift-findings",
    summary="An environment's findings (filters: state, severity)",
    response=Page[Finding],
    query=FindingFilters,
)
async def list_findings(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    query = {k: v for k, v in request.query.items() if k in FindingFilters.__struct_fields__}
    filters = convert(query, FindingFilters)
    page = await fetch_page(
        request,
        _FINDINGS,
        environment.id,
        filters.state,
        filters.severity,
        build=_finding,
        at="first_seen",
    )
    return json_response(page)


# --- one finding, and what people do with it --------------------------------------------


async def _visible_finding(request: web.Request, finding_id: str) -> Finding:
    row = await request.app[keys.POOL].fetchrow(
        f"SELECT {_FINDING}, organization_id FROM drift.findings WHERE id = $1",  # noqa: S608
        finding_id,
    )
    require_visible(principal_of(request), row["organization_id"] if row else None, "finding")
    fields = dict(row)
    fields.pop("organization_id")
    return _finding(fields)


@api.get("/v1/drift-findings/{id}", summary="One finding with its differences", response=Finding)
async def get_finding(request: web.Request) -> web.Response:
    return json_response(await _visible_finding(request, request.match_info["id"]))


class AcknowledgeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: c.Reason | None = None


class IgnoreBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: c.Reason
    # Ignored until then (with its offset); absent: until reopened.
    until: c.When | None = None


async def _act(request: web.Request, action: str, command: c.Command) -> Finding:
    finding = await _visible_finding(request, request.match_info["id"])
    result = await send(request, "drift", action, command)
    await caught_up(request, result)
    return await _visible_finding(request, finding.id)


@api.post(
    "/v1/drift-findings/{id}/acknowledge",
    summary="Acknowledge a finding: seen, someone is on it (it still counts as drift)",
    scope="write",
    body=AcknowledgeBody,
    response=Finding,
)
async def acknowledge_finding(request: web.Request) -> web.Response:
    body = await read_json(request, AcknowledgeBody) if request.can_read_body else AcknowledgeBody()
    command = c.AcknowledgeFinding(finding_id=request.match_info["id"], reason=body.reason)
    return json_response(await _act(request, "acknowledge_finding", command))


@api.post(
    "/v1/drift-findings/{id}/ignore",
    summary="Ignore a finding (a reason; until a time, or until reopened)",
    scope="write",
    body=IgnoreBody,
    response=Finding,
)
async def ignore_finding(request: web.Request) -> web.Response:
    body = await read_json(request, IgnoreBody)
    command = c.IgnoreFinding(
        finding_id=request.match_info["id"], reason=body.reason, until=body.until
    )
    return json_response(await _act(request, "ignore_finding", command))


@api.post(
    "/v1/drift-findings/{id}/reopen",
    summary="Reopen an acknowledged or ignored finding",
    scope="write",
    response=Finding,
)
async def reopen_finding(request: web.Request) -> web.Response:
    command = c.FindingCommand(finding_id=request.match_info["id"], action="reopen")
    return json_response(await _act(request, "act_on_finding", command))


@api.post(
    "/v1/drift-findings/{id}/remediate",
    summary="Remediate: re-apply a resource's spec or make it again (a job; places ignore"
    " rules name are left alone), or deploy a service again (202)",
    scope="write",
    response=Finding,
    status=202,
)
async def remediate_finding(request: web.Request) -> web.Response:
    finding = await _visible_finding(request, request.match_info["id"])
    deployment_id = None
    if (
        finding.resource_type in SERVICES
        and finding.kind != "unexpected"
        and finding.state != "resolved"
    ):
        deployment_id = await _redeploy(request, finding)
    command = c.FindingCommand(
        finding_id=finding.id, action="remediate", deployment_id=deployment_id
    )
    return json_response(await _act(request, "act_on_finding", command), status=202)


async def _redeploy(request: web.Request, finding: Finding) -> str:
    """A fresh deployment of the commit that should run, with the variables of now."""
    parts = finding.address.split("/")  # service/<svc>/env/<env>[/...]
    service_id, environment_id = parts[1], parts[3]
    pool = request.app[keys.POOL]
    if finding.remediation_deployment_id is not None:
        status = await pool.fetchval(
            "SELECT status FROM deploy.deployments WHERE id = $1",
            finding.remediation_deployment_id,
        )
        if status is not None and status not in DEPLOYMENT_ENDED:
            raise Conflict(
                f"deployment {finding.remediation_deployment_id} is remediating this"
                " already: wait for it to end"
            )
    commit = await pool.fetchval(
        "SELECT commit_hash FROM deploy.deployments WHERE service_id = $1"
        " AND environment_id = $2 AND status = 'succeeded' ORDER BY finished_at DESC, id DESC"
        " LIMIT 1",
        service_id,
        environment_id,
    )
    command = CreateDeployment(service_id=service_id, environment_id=environment_id, ref=commit)
    result = await send(request, "deploy", "create_deployment", command)
    await caught_up(request, result)
    return str(msgspec.json.decode(result.data)["id"])


@api.post(
    "/v1/drift-findings/{id}/accept",
    summary="Accept: what the provider has becomes the resource's spec (a job: 202)",
    scope="write",
    response=Finding,
    status=202,
)
async def accept_finding(request: web.Request) -> web.Response:
    command = c.FindingCommand(finding_id=request.match_info["id"], action="accept")
    return json_response(await _act(request, "act_on_finding", command), status=202)
