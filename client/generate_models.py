"""Writes deployforge_client/models.py from the API's OpenAPI document: one TypedDict per
schema, so the SDK's answers stay the plain dicts the JSON was, and mypy and editors
know their keys and types.

    python client/generate_models.py              # from the gateway's routes (no server)
    python client/generate_models.py doc.json     # from a saved /v1/openapi.json

tests/unit/client/test_models.py fails when the committed file and the document differ.
Not part of the package: it is how the package's models are made.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).parent / "src" / "deployforge_client" / "models.py"
HEADER = '''"""The API's schemas as TypedDicts (generated from /v1/openapi.json by
client/generate_models.py: do not edit; `make models` writes it again).

Answers are the JSON's dicts; these types name their keys for mypy and editors.
A key the document does not require is `NotRequired`."""

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
{names}]
'''


def class_name(schema_name: str) -> str:
    """`Page_Deployment_` -> `PageDeployment`; `IssuedToken` stays."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", schema_name) if p]
    return "".join(p[0].upper() + p[1:] for p in parts)


def annotation(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return class_name(schema["$ref"].rsplit("/", 1)[1])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            members: list[str] = []
            for option in schema[key]:
                rendered = annotation(option)
                if rendered not in members:
                    members.append(rendered)
            return " | ".join(members)
    if "enum" in schema:
        return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
    if "const" in schema:
        return f"Literal[{json.dumps(schema['const'])}]"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(annotation({**schema, "type": k}) for k in kind)
    if kind == "string":
        return "str"
    if kind == "integer":
        return "int"
    if kind == "number":
        return "float"
    if kind == "boolean":
        return "bool"
    if kind == "null":
        return "None"
    if kind == "array":
        return f"list[{annotation(schema.get('items', {}))}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        value = annotation(extra) if isinstance(extra, dict) and extra else "Any"
        return f"dict[str, {value}]"
    return "Any"


def render_class(name: str, schema: dict[str, Any]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    doc = (schema.get("description") or schema.get("title") or name).strip().splitlines()[0]
    fields = []
    for field, sub in properties.items():
        rendered = annotation(sub)
        fields.append((field, rendered if field in required else f"NotRequired[{rendered}]"))
    if all(f.isidentifier() and not keyword.iskeyword(f) for f, _ in fields):
        body = "".join(f"    {field}: {rendered}\n" for field, rendered in fields)
        return f'class {name}(TypedDict):\n    """{doc}"""\n\n' + body
    entries = "".join(f"        {json.dumps(field)}: {rendered},\n" for field, rendered in fields)
    return f"{name} = TypedDict(\n    {json.dumps(name)},\n    {{\n{entries}    }},\n)\n"


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[1]} if "$ref" in schema else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


def _in_dependency_order(schemas: dict[str, Any]) -> list[str]:
    """Each schema after those it refers to (annotations are evaluated at import, so
    that `NotRequired` is seen at run time too)."""
    ordered: list[str] = []

    def visit(key: str, seen: frozenset[str]) -> None:
        if key in ordered or key in seen or key not in schemas:
            return
        for ref in sorted(_refs(schemas[key])):
            visit(ref, seen | {key})
        ordered.append(key)

    for key in sorted(schemas):
        visit(key, frozenset())
    return ordered


def render(document: dict[str, Any]) -> str:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    classes = [
        (class_name(key), schemas[key])
        for key in _in_dependency_order(schemas)
        if schemas[key].get("type") == "object" and "properties" in schemas[key]
    ]
    names = "".join(f"    {json.dumps(name)},\n" for name in sorted(n for n, _ in classes))
    parts = [HEADER.format(names=names)]
    parts += [render_class(name, schema) for name, schema in classes]
    return "\n\n".join(parts)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        document = json.loads(Path(argv[1]).read_text())
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from gateway import app  # noqa: F401  (registers every route)
        from gateway.openapi import document as build

        document = build()
    TARGET.write_text(render(document))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main(sys.argv)
