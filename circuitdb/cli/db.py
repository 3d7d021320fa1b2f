"""``circuitdb db``: the graph database commands."""

from __future__ import annotations

import click

from circuitdb.cli.db_local import down, status, up


@click.group("db")
def db() -> None:
    """Graph database: start/stop a local Neo4j, check and initialise the backend."""


db.add_command(up)
db.add_command(down)
db.add_command(status)
