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
from gateway.routing import Api, convert, json_response
from gateway.scoping import require_visible
from services.drift import commands as c

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
    status: str  # running | completed | failed
    drifts_detected: int | None
    critical: int | None
    new: int | None
    reopened: int | None
    changed: int | None
    resolved: int | None
    resources: int | None
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
    "id, environment_id, initiated_by, status, drifts_detected, critical, new, reopened,"
    " changed, resolved, resources, could_not_read, reason, started_at, finished_at,"
    " organization_id"
)
_FINDING = (
    "id, environment_id, resource_type, resource_id, address, kind, severity, differences,"
    " state, first_seen, last_seen, last_scan_id, resolved_at"
)
_SEVERITY_ORDER = "array_position(ARRAY['critical','high','medium','low'], severity)"


def _scan(row: asyncpg.Record) -> Scan:
    fields = dict(row)
    fields.pop("organization_id")
    return Scan(scan_id=fields["id"], **fields)


def _finding(row: asyncpg.Record) -> Finding:
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
