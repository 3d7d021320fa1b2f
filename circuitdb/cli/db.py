"""``circuitdb db``: the graph backend (ping, init).

The backend is Neo4j when ``--neo4j-uri`` / ``NEO4J_URI`` is set, else the
embedded ArcadeDB default (started on demand, see :mod:`circuitdb.graph.arcade`).
"""

from __future__ import annotations

import click

from circuitdb.cli.console import console, emit_json, info
from circuitdb.config import Settings


def settings_from_ctx(ctx: click.Context) -> Settings:
    """Settings from the environment plus the root group's ``--neo4j-uri``."""
    obj = ctx.find_root().obj or {}
    return Settings.from_env(neo4j_uri=obj.get("neo4j_uri"))


@click.group()
def db() -> None:
    """The graph backend: Neo4j at --neo4j-uri / NEO4J_URI, else the embedded ArcadeDB."""


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
    info(f"backend  [bold]{server.backend}[/bold]")
    info(f"uri      {server.uri}")
    info(f"agent    {server.agent}")
    info(f"version  {server.version}")
    info(f"database {server.database or '(server default)'}")


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
    created = sum(item.created for item in items)
    if as_json:
        emit_json({"backend": where, "created": created, "existing": len(items) - created,
                   "items": [item.__dict__ for item in items]})
        return
    table = Table(title=f"schema on {where}")
    for column in ("name", "kind", "status"):
        table.add_column(column)
    for item in items:
        table.add_row(item.name, item.kind, "[green]created[/green]" if item.created else "exists")
    if items:
        console.print(table)
    info(f"schema: {created} created, {len(items) - created} already present")


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
