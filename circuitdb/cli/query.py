"""``circuitdb query NAME --param k=v`` and ``circuitdb queries list``: the named queries."""

from __future__ import annotations

import math
from typing import Any

import click

from circuitdb.cli.console import console, emit_json


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def print_table(rows: list[dict[str, Any]], title: str, limit: int | None = None) -> None:
    """Rows as a rich table on the console (values escaped: names may hold markup)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    columns = list(rows[0]) if rows else []
    for c in columns:
        table.add_column(c)
    for r in rows[:limit] if limit else rows:
        table.add_row(*(escape(_cell(r[c])) for c in columns))
    console.print(table)


@click.command()
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A query parameter (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
@click.pass_context
def query(ctx: click.Context, name: str, params: tuple[str, ...], as_json: bool) -> None:
    """Run the named query NAME (see 'circuitdb queries list')."""
    from circuitdb.cli.db import settings_from_ctx
    from circuitdb.graph.backend import open_backend
    from circuitdb.queries import get, parse_assignments

    named = get(name)
    stmt, values = named.compile(parse_assignments(params))  # validated before connecting
    with open_backend(settings_from_ctx(ctx)) as graph:
        rows = graph.run(stmt, values)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print(f"query {name}: no rows")
        return
    print_table(rows, f"{name} ({len(rows)} rows)")


@click.group()
def queries() -> None:
    """The named queries."""


@queries.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON on stdout.")
def list_queries(as_json: bool) -> None:
    """Names, parameters and descriptions of the named queries."""
    from rich.markup import escape
    from rich.table import Table

    from circuitdb.queries import REGISTRY

    described = [q.describe() for q in sorted(REGISTRY.values(), key=lambda q: q.name)]
    if as_json:
        emit_json(described)
        return
    table = Table(title="named queries (circuitdb query NAME --param key=value)")
    table.add_column("name")
    table.add_column("parameters")
    table.add_column("description")
    for d in described:
        ps = []
        for p in d["params"]:
            default = "required" if p["required"] else f"default {p['default']}"
            ps.append(f"{p['name']}: {p['type']} ({default}) {p['description']}")
        table.add_row(d["name"], escape("\n".join(ps)), escape(d["description"]))
    console.print(table)
