"""OpenAPI 3.1, generated from the route registry and the msgspec types it names."""

from __future__ import annotations

import html
import re
from typing import Any

import msgspec
from aiohttp import web

from gateway.pagination import Page, PageQuery
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
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
        parameters += _query_parameters(spec, components)
        if parameters:
            op["parameters"] = parameters
        op["responses"] |= _errors(spec, bool(params))
        if spec.body is not None:
            media = "application/x-www-form-urlencoded" if spec.form else "application/json"
            op["requestBody"] = {
                "required": True,
                "content": {media: {"schema": by_type[spec.body]}},
            }
        ok: dict[str, Any] = {"description": "Success"}
        if spec.response is not None:
            ok["content"] = {"application/json": {"schema": by_type[spec.response]}}
        if spec.stream:
            ok.setdefault("content", {})["text/event-stream"] = {
                "schema": {"type": "string", "description": "Server-sent events"}
            }
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


_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _errors(spec: RouteSpec, has_path_params: bool) -> dict[str, Any]:
    """The error answers a route can give, each in the error envelope."""
    codes: dict[str, str] = {}
    if spec.body is not None or spec.query is not None or _is_page(spec.response):
        codes["400"] = "Malformed request"
        codes["422"] = "A field is not valid (`details.field` names it)"
    if spec.scope is not None:
        codes["401"] = "Not authenticated"
        codes["403"] = "The credential lacks the scope or role"
    if has_path_params:
        codes["404"] = "Not found (or another organization's)"
    if spec.method in ("POST", "PUT", "PATCH", "DELETE"):
        codes["409"] = "Conflicts with the resource's state"
    if spec.rate_limited:
        codes["429"] = "Rate limited (`Retry-After`)"
    return {code: {"description": text, "content": _ERROR_REF} for code, text in codes.items()}


def _is_page(response: Any) -> bool:
    return getattr(response, "__origin__", None) is Page


def _query_parameters(spec: RouteSpec, components: dict[str, Any]) -> list[dict[str, Any]]:
    structs = [s for s in (spec.query,) if s is not None]
    if _is_page(spec.response) and not (
        spec.query is not None and issubclass(spec.query, PageQuery)
    ):
        structs.append(PageQuery)
    out: list[dict[str, Any]] = []
    for struct in structs:
        (schema,), defs = msgspec.json.schema_components(
            [struct], ref_template="#/components/schemas/{name}"
        )
        body = defs.pop(struct.__name__) if "$ref" in schema else schema
        components.update(defs)
        required = set(body.get("required", []))
        for name, field in body.get("properties", {}).items():
            out.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _not_null(field),
                }
            )
    return out


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter left out is the null: `X | None` is described as X."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) != 1:
        return schema
    plain = {**schema, **options[0]}
    plain.pop("anyOf")
    if "default" in plain and plain["default"] is None:
        plain.pop("default")
    return plain


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
