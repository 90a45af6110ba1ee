"""OpenAPI 3.1, generated from the route registry and the msgspec types it names."""

from __future__ import annotations

import html
import re
from typing import Any

import msgspec
from aiohttp import web

from gateway.routing import REGISTRY, Api, RouteSpec, json_response

api = Api("meta")

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details", "request_id"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        "VALIDATION_ERROR",
                        "AUTHENTICATION_REQUIRED",
                        "AUTHORIZATION_DENIED",
                        "RESOURCE_NOT_FOUND",
                        "METHOD_NOT_ALLOWED",
                        "CONFLICT",
                        "RATE_LIMIT_EXCEEDED",
                        "INTERNAL_ERROR",
                        "SERVICE_UNAVAILABLE",
                    ],
                },
                "message": {"type": "string"},
                "details": {"type": "object"},
                "request_id": {"type": "string"},
            },
        }
    },
}


def build_document(specs: list[RouteSpec]) -> dict[str, Any]:
    types = [t for s in specs for t in (s.body, s.response) if t is not None]
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(types, schemas, strict=True))
    components["Error"] = _ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        op: dict[str, Any] = {
            "summary": spec.summary,
            "tags": [spec.tag],
            "operationId": _operation_id(spec),
            "responses": {
                "default": {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        params = re.findall(r"{(\w+)}", spec.path)
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if spec.body is not None:
            media = "application/x-www-form-urlencoded" if spec.form else "application/json"
            op["requestBody"] = {
                "required": True,
                "content": {media: {"schema": by_type[spec.body]}},
            }
        ok: dict[str, Any] = {"description": "Success"}
        if spec.response is not None:
            ok["content"] = {"application/json": {"schema": by_type[spec.response]}}
        op["responses"][str(spec.status)] = ok
        if spec.scope is not None:
            op["security"] = [{"bearer": []}, {"apiKey": []}]
            op["x-required-scope"] = spec.scope
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DeployForge API",
            "version": "1.0.0",
            "description": "Self-hosted deployment control plane.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def _operation_id(spec: RouteSpec) -> str:
    words = re.sub(r"[^a-zA-Z0-9]+", "_", spec.path.replace("/v1/", "")).strip("_")
    return f"{spec.method.lower()}_{words}"


_DOCUMENT: dict[str, Any] | None = None


def document() -> dict[str, Any]:
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = build_document(REGISTRY)
    return _DOCUMENT


@api.get("/v1/openapi.json", summary="This document", scope=None, rate_limited=False)
async def openapi(_: web.Request) -> web.Response:
    return json_response(document())


@api.get("/docs", summary="Human-readable API reference", scope=None, rate_limited=False)
async def docs(_: web.Request) -> web.Response:
    # Rendered here rather than by a CDN-hosted viewer, so it works offline.
    rows = []
    for path, ops in sorted(document()["paths"].items()):
        for method, op in ops.items():
            scope = op.get("x-required-scope", "public")
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op['summary'])}</td><td>{scope}</td></tr>"
            )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>DeployForge API</title>"
        "<style>body{font-family:system-ui;margin:2rem}td{padding:.25rem 1rem;"
        "border-bottom:1px solid #ddd}</style></head><body><h1>DeployForge API</h1>"
        "<p>Machine-readable: <a href='/v1/openapi.json'>/v1/openapi.json</a></p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Scope</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")
