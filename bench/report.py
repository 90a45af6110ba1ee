"""Tables for the terminal and for docs/performance.md.

The run rewrites only the part of docs/performance.md between the two
markers below; everything else in that file is written by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


class Table(msgspec.Struct, frozen=True, kw_only=True):
    """One benchmark's figures: a title, rows of cells, and notes under them."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = msgspec.field(default_factory=list)
    # How many leading columns hold labels (left-aligned) rather than figures.
    labels: int = 1


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table cell; an em dash for a missing one."""
    if math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}x"


def render_text(table: Table) -> str:
    """An aligned plain-text table with its notes, for the terminal."""
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [f"== {table.title}", line(table.columns), line(["-" * w for w in widths])]
    out += [line(row) for row in table.rows]
    out += [f"   {note}" for note in table.notes]
    return "\n".join(out)


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table under a heading, notes as a list."""
    align = ["---"] * table.labels + ["---:"] * (len(table.columns) - table.labels)
    out = [f"### {table.title}", ""]
    out.append("| " + " | ".join(table.columns) + " |")
    out.append("|" + "|".join(align) + "|")
    out += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {note}" for note in table.notes]
    return "\n".join(out)


def _number(title: str) -> int | None:
    """The benchmark number a table title starts with ("3. Command to ..." -> 3)."""
    head, dot, _ = title.partition(".")
    return int(head) if dot and head.strip().isdigit() else None


def kept_tables(path: Path, tables: list[Table]) -> list[tuple[int, str]]:
    """The Markdown of the tables in `path`'s results that `tables` does not replace.

    A run of some benchmarks only (`--only`) keeps the others' latest figures,
    each marked with the run it comes from (the date and commit of that run).
    """
    text = path.read_text() if path.exists() else ""
    start, end = text.find(START), text.find(END)
    if start == -1 or end < start:
        return []
    section = text[start + len(START) : end]
    facts = dict(
        (cells[1].strip(), cells[2].strip())
        for line in section.splitlines()
        if len(cells := line.split("|")) == 4
    )
    origin = f"{facts.get('Date', 'an earlier run')}, commit {facts.get('Commit', '?')}"
    # A table is known by its title (an unnumbered one, the door, sorts first).
    rerun = {t.title for t in tables}
    kept = []
    for block in section.split("\n### ")[1:]:
        title = block.split("\n", 1)[0]
        number = _number(title) or 0
        if title in rerun or title == "Machine":
            continue
        body = f"### {block}".rstrip()
        if "Kept from the run of" not in body:
            body += f"\n- Kept from the run of {origin} (not rerun since)."
        kept.append((number, body))
    return kept


def results_section(
    machine: list[tuple[str, str]],
    tables: list[Table],
    kept: list[tuple[int, str]] | None = None,
) -> str:
    """The generated block: machine facts, then one table per benchmark.

    `kept`: (number, Markdown) of earlier tables to keep, in number order with the new ones.
    """
    out = [START, "", "## Latest results", "", "Written by `make bench`; do not edit by hand.", ""]
    out += ["| Machine | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in machine]
    blocks = [(_number(t.title) or 0, render_markdown(t)) for t in tables] + (kept or [])
    for _, block in sorted(blocks, key=lambda b: b[0]):
        out += ["", block]
    out += ["", END]
    return "\n".join(out)


def write_results(path: Path, section: str) -> None:
    """Replace the generated block in `path`, or append it if the file has none."""
    text = path.read_text() if path.exists() else "# Performance\n"
    start, end = text.find(START), text.find(END)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
