"""``circuitdb demo``: the main job, end to end on the configured backend."""

from __future__ import annotations

import click

from circuitdb.cli.console import info


@click.command()
def demo() -> None:
    """Run the main job end to end (grows with each stage)."""
    info("circuitdb demo: nothing to run yet")
