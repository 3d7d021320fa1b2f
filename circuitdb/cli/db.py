"""``circuitdb db``: the graph backend (ping, init).

The backend is Neo4j when ``--neo4j-uri`` / ``NEO4J_URI`` is set, else the
embedded ArcadeDB default (started on demand, see :mod:`circuitdb.graph.arcade`).
"""

from __future__ import annotations

import click

from circuitdb.cli.console import console, emit_json, info
from circuitdb.cli.db_local import down, status, up
from circuitdb.config import Settings


def settings_from_ctx(ctx: click.Context) -> Settings:
    """Settings from the environment plus the root group's ``--neo4j-uri`` and ``--embedded-dir``."""
    obj = ctx.find_root().obj or {}
    return Settings.from_env(neo4j_uri=obj.get("neo4j_uri"), embedded_dir=obj.get("embedded_dir"))


@click.group()
def db() -> None:
    """The graph backend: Neo4j at --neo4j-uri / NEO4J_URI, else the embedded ArcadeDB;
    and a local Neo4j without Docker (up --local / down / status)."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def ping(ctx: click.Context, as_json: bool) -> None:
    """Connect and print backend, server agent and version."""
    from circuitdb.graph.backend import open_backend

    with open_backend(settings_from_ctx(ctx)) as graph:
        server = graph.ping()
    if as_json:
        emit_json(server.as_dict())
        return
    # the result itself, so it shows under -q too
    console.print(f"backend  [bold]{server.backend}[/bold]")
    console.print(f"uri      {server.uri}")
    console.print(f"agent    {server.agent}")
    console.print(f"version  {server.version}")
    console.print(f"database {server.database or '(server default)'}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was applied as JSON on stdout.")
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Apply the schema (constraints and indexes of cypher/schema) idempotently."""
    from rich.table import Table

    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.schema import apply_schema

    with open_backend(settings_from_ctx(ctx)) as graph:
        items = apply_schema(graph)
        where = f"{graph.backend} at {graph.uri}"
    counts = {status: sum(item.status == status for item in items) for status in ("created", "exists", "skipped")}
    if as_json:
        emit_json({"backend": where, "created": counts["created"], "existing": counts["exists"],
                   "skipped": counts["skipped"], "items": [item.__dict__ for item in items]})
        return
    table = Table(title=f"schema on {where}")
    for column in ("name", "kind", "status"):
        table.add_column(column)
    styles = {"created": "[green]created[/green]", "exists": "exists",
              "skipped": "[yellow]skipped (unsupported here)[/yellow]"}
    for item in items:
        table.add_row(item.name, item.kind, styles[item.status])
    if items:
        console.print(table)
    info(f"schema: {counts['created']} created, {counts['exists']} already present"
         + (f", {counts['skipped']} skipped (unsupported on {graph.backend})" if counts["skipped"] else ""))


# -- for `db down --embedded` / `db status` (the local-Neo4j commands live in circuitdb.cli.db_local) --


def down_embedded(settings: Settings) -> str:
    """Stop the embedded ArcadeDB server of ``settings.embedded_dir``; returns what happened (one line)."""
    from circuitdb.graph import arcade

    stopped = arcade.stop_server(settings.embedded_dir)
    if stopped is None:
        return f"no embedded graph server running for {settings.embedded_dir}"
    return f"embedded graph server at {stopped.uri} (pid {stopped.pid}) stopped; data kept in {settings.embedded_dir}"


def embedded_status(settings: Settings) -> dict:
    """State of the embedded server: running or not, its URI, pid, version and data dir (no password)."""
    from circuitdb.graph import arcade

    state = arcade.read_state(settings.embedded_dir)
    out: dict = {"backend": "arcadedb", "running": state is not None, "data_dir": str(settings.embedded_dir)}
    if state is not None:
        out.update(uri=state.uri, pid=state.pid, version=state.version, database=state.database,
                   idle_timeout_s=state.idle_timeout_s)
    return out


db.add_command(up)
db.add_command(down)
db.add_command(status)
