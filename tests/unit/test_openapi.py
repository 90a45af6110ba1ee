"""The OpenAPI document says what each route takes and answers: its query parameters
(filters, `limit`, `cursor`, `tail`, `since`, `follow`), the event streams, the error
answers in the envelope, the security schemes, and an operationId of its own."""

from __future__ import annotations

import inspect
import re

import gateway.app  # noqa: F401  (registers every route)
from gateway.openapi import build_document
from gateway.routing import HANDLERS, REGISTRY, RouteSpec

# What reads the query string: directly, or through the helpers that do.
READS_QUERY = re.compile(r"request\.query|\bhistory\(|\b_query\(request")
DOCUMENT = build_document(REGISTRY)


def _op(spec: RouteSpec) -> dict:  # type: ignore[type-arg]
    return DOCUMENT["paths"][spec.path][spec.method.lower()]  # type: ignore[no-any-return]


def test_every_route_that_reads_the_query_declares_its_parameters() -> None:
    undeclared = [
        f"{spec.method} {spec.path}"
        for spec in REGISTRY
        if spec.query is None
        and READS_QUERY.search(inspect.getsource(HANDLERS[(spec.method, spec.path)]))
    ]
    assert undeclared == []


def test_query_parameters_are_in_the_document_with_their_schemas() -> None:
    for spec in REGISTRY:
        if spec.query is None:
            continue
        named = {p["name"]: p for p in _op(spec)["parameters"] if p["in"] == "query"}
        assert set(spec.query.__struct_fields__) <= set(named), spec.path
    logs = _op(next(s for s in REGISTRY if s.path == "/v1/deployments/{id}/logs"))
    by_name = {p["name"]: p["schema"] for p in logs["parameters"]}
    assert by_name["tail"]["maximum"] >= 1000 and by_name["follow"]["type"] == "boolean"
    assert by_name["since"] == {"type": "string", "format": "date-time"}
    assert "text/event-stream" in logs["responses"]["200"]["content"]


def test_every_list_takes_limit_and_cursor() -> None:
    lists = [s for s in REGISTRY if "Page[" in repr(s.response)]
    assert len(lists) > 20
    for spec in lists:
        names = {p["name"] for p in _op(spec).get("parameters", [])}
        assert {"limit", "cursor"} <= names, spec.path


def test_errors_are_described_in_the_envelope_and_operation_ids_are_unique() -> None:
    assert DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    ids = [_op(spec)["operationId"] for spec in REGISTRY]
    assert len(ids) == len(set(ids))
    for spec in REGISTRY:
        responses = _op(spec)["responses"]
        if spec.scope is not None:
            assert {"401", "403"} <= set(responses), spec.path
            assert _op(spec)["security"]
        if "{" in spec.path:
            assert "404" in responses, spec.path
        for code, answer in responses.items():
            if code.startswith(("4", "5")):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
