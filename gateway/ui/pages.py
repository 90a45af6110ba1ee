"""The pages one reads: each is a few `/v1` reads rendered by a template."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from deployforge_client.errors import AuthorizationDenied, NotFound

from gateway.ui.api import UserApi
from gateway.ui.handling import api_of, render

routes = web.RouteTableDef()
ACTIVE = ("queued", "running")


def quoted(value: str) -> str:
    return quote(value, safe="")


def _cursor(request: web.Request) -> str | None:
    cursor = request.query.get("cursor", "")
    return cursor[:512] or None


async def _names(api: UserApi, path: str) -> dict[str, str]:
    return {item["id"]: item["name"] for item in await api.items(path, limit=200)}


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    api = api_of(request)
    services, running, queued, failed, environments = await asyncio.gather(
        api.items("/v1/services", limit=100),
        api.items("/v1/deployments", status="running"),
        api.items("/v1/deployments", status="queued"),
        api.items("/v1/deployments", status="failed", limit=5),
        _names(api, "/v1/environments"),
    )
    healths = await asyncio.gather(
        *(api.get(f"/v1/services/{quoted(s['id'])}/health") for s in services[:30])
    )
    names = {s["id"]: s["name"] for s in services}
    return render(
        request,
        "overview.html",
        {
            "services": list(zip(services, list(healths) + [None] * len(services), strict=False)),
            "active": running + queued,
            "failed": failed,
            "service_names": names,
            "environment_names": environments,
        },
    )


@routes.get("/projects")
async def projects(request: web.Request) -> web.Response:
    items, more = await api_of(request).page("/v1/projects", _cursor(request))
    return render(request, "projects.html", {"projects": items, "next_cursor": more})


@routes.get("/environments")
async def environments(request: web.Request) -> web.Response:
    items, more = await api_of(request).page("/v1/environments", _cursor(request))
    return render(request, "environments.html", {"environments": items, "next_cursor": more})


@routes.get("/services")
async def services(request: web.Request) -> web.Response:
    api = api_of(request)
    (items, more), projects = await asyncio.gather(
        api.page("/v1/services", _cursor(request)), _names(api, "/v1/projects")
    )
    return render(
        request,
        "services.html",
        {"services": items, "project_names": projects, "next_cursor": more},
    )


@routes.get("/services/{id}")
async def service(request: web.Request) -> web.Response:
    api = api_of(request)
    sid = quoted(request.match_info["id"])
    found, deployments, instances, env, pipelines, environments = await asyncio.gather(
        api.get(f"/v1/services/{sid}"),
        api.items(f"/v1/services/{sid}/deployments", limit=20),
        api.get(f"/v1/services/{sid}/instances"),
        api.get(f"/v1/services/{sid}/env"),
        api.items("/v1/pipelines", service_id=request.match_info["id"]),
        api.items("/v1/environments", limit=200),
    )
    return render(
        request,
        "service.html",
        {
            "service": found,
            "deployments": deployments,
            "instances": instances,
            "env": env,
            "pipelines": pipelines,
            "environments": environments,
            "environment_names": {e["id"]: e["name"] for e in environments},
        },
    )


async def previous_good(api: UserApi, current: dict[str, Any]) -> dict[str, Any] | None:
    """The deployment a rollback of `current` goes back to: the last one of that service
    and environment that succeeded before it."""
    for candidate in await api.items(
        "/v1/deployments",
        limit=100,
        service_id=current["service_id"],
        environment_id=current["environment_id"],
        status="succeeded",
    ):
        if candidate["id"] != current["id"] and candidate["created_at"] < current["created_at"]:
            return candidate
    return None


def age(stamp: str | None) -> str:
    if not stamp:
        return "?"
    then = datetime.fromisoformat(stamp)
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


async def _deployment_context(api: UserApi, deployment_id: str) -> dict[str, Any]:
    did = quoted(deployment_id)
    deployment, steps = await asyncio.gather(
        api.get(f"/v1/deployments/{did}"), api.get(f"/v1/deployments/{did}/steps")
    )
    service, environment, target = await asyncio.gather(
        api.get(f"/v1/services/{quoted(deployment['service_id'])}"),
        api.get(f"/v1/environments/{quoted(deployment['environment_id'])}"),
        previous_good(api, deployment),
    )
    return {
        "deployment": deployment,
        "steps": steps,
        "service": service,
        "environment": environment,
        "target": target,
        "target_age": age(target and (target.get("finished_at") or target["created_at"])),
        "active": deployment["status"] in ACTIVE,
    }


@routes.get("/deployments/{id}")
async def deployment(request: web.Request) -> web.Response:
    context = await _deployment_context(api_of(request), request.match_info["id"])
    return render(request, "deployment.html", context)


@routes.get("/deployments/{id}/summary")
async def deployment_summary(request: web.Request) -> web.Response:
    """The status, progress, steps and actions (re-read when the live stream says so)."""
    context = await _deployment_context(api_of(request), request.match_info["id"])
    return render(request, "deployment_summary.html", context)


@routes.get("/webhooks")
async def webhooks(request: web.Request) -> web.Response:
    items, more = await api_of(request).page("/v1/webhooks", _cursor(request))
    return render(request, "webhooks.html", {"webhooks": items, "next_cursor": more})


@routes.get("/webhooks/{id}")
async def webhook(request: web.Request) -> web.Response:
    api = api_of(request)
    wid = quoted(request.match_info["id"])
    found, deliveries = await asyncio.gather(
        api.get(f"/v1/webhooks/{wid}"), api.items(f"/v1/webhooks/{wid}/deliveries", limit=50)
    )
    return render(
        request, "webhook.html", {"webhook": found, "deliveries": deliveries, "new_secret": None}
    )


@routes.get("/tokens")
async def tokens(request: web.Request) -> web.Response:
    items = await api_of(request).items("/v1/tokens", limit=200)
    return render(request, "tokens.html", {"tokens": items, "issued": None})


@routes.get("/members")
async def members(request: web.Request) -> web.Response:
    items, more = await api_of(request).page("/v1/users", _cursor(request))
    return render(request, "members.html", {"members": items, "next_cursor": more})


@routes.get("/audit")
async def audit(request: web.Request) -> web.Response:
    try:
        items, more = await api_of(request).page("/v1/audit", _cursor(request))
    except AuthorizationDenied:
        return render(
            request,
            "error.html",
            {"title": "Audit trail", "message": "the audit trail is for owners and admins"},
            status=403,
        )
    return render(request, "audit.html", {"entries": items, "next_cursor": more})


@routes.get("/domains")
async def domains(request: web.Request) -> web.Response:
    api = api_of(request)
    items = await api.items("/v1/domains", limit=200)

    async def certificate(domain: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await api.get(f"/v1/domains/{quoted(domain['id'])}/certificate")
        except NotFound:
            return None
        return found

    certificates = await asyncio.gather(*(certificate(d) for d in items[:50]))
    rows = list(zip(items, list(certificates) + [None] * len(items), strict=False))
    return render(request, "domains.html", {"domains": rows})


@routes.get("/drift")
async def drift(request: web.Request) -> web.Response:
    api = api_of(request)
    environments = await api.items("/v1/environments", limit=200)
    findings = await asyncio.gather(
        *(
            api.items(f"/v1/environments/{quoted(e['id'])}/drift-findings", limit=100)
            for e in environments
        )
    )
    return render(
        request, "drift.html", {"environments": list(zip(environments, findings, strict=True))}
    )
