"""How dfctl prints what was asked for: a table on a terminal (headers, colour unless
NO_COLOR), plain rows when piped, or exactly `-o json|yaml|ndjson|id` on stdout and
nothing else. Notices go to stderr (`notice`)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import click

LIST_OUTPUTS = click.Choice(["table", "json", "yaml", "ndjson", "id"])
ONE_OUTPUTS = click.Choice(["text", "json", "yaml", "id"])
# Words coloured in tables and notices (green good, red bad, yellow waiting).
_COLOURS = {
    "succeeded": "green", "healthy": "green", "verified": "green", "issued": "green",
    "active": "green", "running": "green", "success": "green", "resolved": "green",
    "failed": "red", "down": "red", "cancelled": "red", "exhausted": "red",
    "critical": "red", "high": "red", "revoked": "red", "disabled": "red",
    "queued": "yellow", "pending": "yellow", "degraded": "yellow", "retrying": "yellow",
    "open": "yellow", "medium": "yellow",
}  # fmt: skip


def colour_on(stream: Any = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and stream.isatty()


def notice(message: str) -> None:
    click.echo(message, err=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _dig(item: Mapping[str, Any], column: str) -> Any:
    value: Any = item
    for part in column.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _yaml(data: Any) -> str:
    import yaml  # type: ignore[import-untyped]

    dumped: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return dumped


def emit_list(items: Iterable[Mapping[str, Any]], output: str, columns: list[str]) -> None:
    items = list(items)
    if output == "json":
        click.echo(json.dumps(items, indent=2))
    elif output == "yaml":
        click.echo(_yaml(items), nl=False)
    elif output == "ndjson":
        for item in items:
            click.echo(json.dumps(item))
    elif output == "id":
        for item in items:
            click.echo(item["id"])
    else:
        rows = [[_cell(_dig(item, c)) for c in columns] for item in items]
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        tty, colour = sys.stdout.isatty(), colour_on()
        if tty:
            header = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
            click.echo(click.style(header, bold=True) if colour else header)
        for row in rows:
            cells = []
            for value, width in zip(row, widths, strict=True):
                padded = value.ljust(width)
                if colour and value in _COLOURS:
                    padded = click.style(value, fg=_COLOURS[value]) + " " * (width - len(value))
                cells.append(padded)
            click.echo("  ".join(cells).rstrip())
        if tty and not rows:
            notice("(none)")


def emit_one(item: Mapping[str, Any] | None, output: str, fields: list[str] | None = None) -> None:
    if item is None:
        return
    if output == "json":
        click.echo(json.dumps(item, indent=2))
    elif output == "yaml":
        click.echo(_yaml(dict(item)), nl=False)
    elif output == "id":
        click.echo(item["id"])
    else:
        colour = colour_on()
        for key in fields or list(item):
            value = _dig(item, key)
            if value is None or value == [] or value == {}:
                continue
            text = _cell(value)
            if colour and text in _COLOURS:
                text = click.style(text, fg=_COLOURS[text])
            click.echo(f"{key}: {text}")
