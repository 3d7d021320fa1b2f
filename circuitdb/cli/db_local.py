"""``circuitdb db up --local`` / ``db down`` / ``db status``: a real Neo4j without Docker.

Thin Click wrappers over :mod:`circuitdb.graph.local_neo4j`; the ``db`` group in
:mod:`circuitdb.cli.db` adds them.
"""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import detail, emit_json, info
from circuitdb.errors import UsageError
from circuitdb.graph import local_neo4j


def _auth_text(auth: bool | None) -> str:
    return "on" if auth else "off"


@click.command("up")
@click.option("--local", "local", is_flag=True,
              help="Run Neo4j 5.26 from Maven jars on this machine (JDK 17 + Maven; no Docker).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, metavar="N",
              help="Bolt port on 127.0.0.1 (default 7687, or a free port when 7687 is taken).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Data directory (default: the user data dir, env CIRCUITDB_NEO4J_DATA).")
@click.option("--auth", is_flag=True, help="Require a password: user neo4j, password from env NEO4J_PASSWORD.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 3600), default=300.0, show_default=True,
              metavar="SECONDS", help="How long to wait for Neo4j to come up.")
@click.option("--pagecache", default=None, metavar="SIZE",
              help="Neo4j page cache, e.g. 512m or 2g (default 512m, env CIRCUITDB_NEO4J_PAGECACHE).")
@click.option("--json", "as_json", is_flag=True, help="Print the server's state as JSON on stdout.")
def up(local: bool, port: int | None, data_dir: Path | None, auth: bool, timeout_s: float, pagecache: str | None,
       as_json: bool) -> None:
    """Start a local Neo4j (loopback only) and wait until it accepts Bolt connections."""
    if not local:
        raise UsageError("db up needs --local (Neo4j from Maven jars on this machine); with Docker run "
                         "'docker compose -f docker/compose.yml up -d' instead")
    state = local_neo4j.start(port=port, data_dir=data_dir, auth=auth, timeout_s=timeout_s, pagecache=pagecache,
                              on_event=info)
    info(f"local Neo4j {state.version} is up at {state.uri} (auth {_auth_text(state.auth)}, "
         f"data {state.data_dir}, pid {state.pid})")
    info(f"use it with: export NEO4J_URI={state.uri}" + (" NEO4J_PASSWORD=..." if state.auth else ""))
    detail(f"log: {state.log}")
    if as_json:
        emit_json(state.to_json())


@click.command("down")
@click.option("--timeout", "grace_s", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              metavar="SECONDS", help="How long to wait after SIGTERM before killing.")
@click.option("--embedded", is_flag=True, help="Stop the embedded ArcadeDB server instead (its data stays).")
@click.pass_context
def down(ctx: click.Context, grace_s: float, embedded: bool) -> None:
    """Stop the local Neo4j started by 'db up --local', or the embedded server (data stays)."""
    if embedded:
        from circuitdb.cli.db import down_embedded, settings_from_ctx

        info(down_embedded(settings_from_ctx(ctx)))
        return
    result = local_neo4j.stop(grace_s=grace_s)
    if result.pid is None:
        info(result.note)
        return
    info(f"local Neo4j at {result.uri} (pid {result.pid}) {result.note}; data kept in {result.data_dir}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.option("--embedded", is_flag=True, help="Report the embedded ArcadeDB server instead.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, embedded: bool) -> None:
    """Say whether the local Neo4j runs, on which port, with which data directory and auth."""
    if embedded:
        from circuitdb.cli.db import embedded_status, settings_from_ctx

        state = embedded_status(settings_from_ctx(ctx))
        if as_json:
            emit_json(state)
        elif state["running"]:
            info(f"embedded ArcadeDB {state['version']}: up at {state['uri']}, data {state['data_dir']}, pid {state['pid']}")
        else:
            info(f"embedded ArcadeDB: not running (data {state['data_dir']})")
        return
    result = local_neo4j.status()
    if as_json:
        emit_json(result.to_json())
        return
    if not result.running:
        info("local Neo4j: not running" + (f" ({result.note})" if result.note else ""))
        return
    state = "starting" if result.note == "starting" else ("up" if result.reachable else "not answering")
    info(f"local Neo4j {result.version}: {state} at {result.uri}, auth {_auth_text(result.auth)}, "
         f"data {result.data_dir}, pid {result.pid}")
    detail(f"log: {result.log}")
