"""``circuitdb demo``: the main job, end to end on the configured backend.

The demo is a list of steps (:data:`STEPS`); each takes the shared
:class:`DemoRun` and may put results on it for later steps. Later stages add
their steps (train transcoders, attribute, export circuits, ...) to the list.

v1: connect (embedded ArcadeDB unless ``--neo4j-uri``/``NEO4J_URI``), apply the
schema, MERGE a tiny example circuit graph, and run one library query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from circuitdb.cli.console import console, emit_json, info, progress, verbosity
from circuitdb.config import Settings


@dataclass
class DemoRun:
    """State shared by the demo steps."""

    settings: Settings
    as_json: bool = False
    graph: Any = None  # circuitdb.graph.backend.GraphBackend once connected
    results: dict[str, Any] = field(default_factory=dict)


def step_connect(run: DemoRun) -> None:
    """Open the configured backend (starts the embedded server on first use)."""
    from circuitdb.graph.backend import open_backend

    run.graph = open_backend(run.settings)
    server = run.graph.ping()
    run.results["backend"] = server.as_dict()
    info(f"graph: [bold]{server.backend}[/bold] {server.version} at {server.uri}")


def step_init_schema(run: DemoRun) -> None:
    """Apply cypher/schema idempotently."""
    from circuitdb.graph.schema import apply_schema

    items = apply_schema(run.graph)
    counts = {status: sum(item.status == status for item in items) for status in ("created", "exists", "skipped")}
    run.results["schema"] = {"created": counts["created"], "existing": counts["exists"], "skipped": counts["skipped"]}
    info(f"schema: {counts['created']} created, {counts['exists']} already present")


def step_load_example(run: DemoRun) -> None:
    """MERGE the example circuit graph (idempotent: a rerun creates nothing)."""
    from circuitdb.graph.example import example_graph, load_example

    graph = example_graph()
    total = graph.n_nodes + graph.n_relationships
    with progress() as bar:
        task = bar.add_task("loading example graph", total=total)
        summary = load_example(run.graph, on_batch=lambda n: bar.advance(task, n))
    counts = run.graph.run("admin/count_graph")[0]
    run.results["example"] = {"rows": summary.rows, **summary.counters, **counts}
    info(
        f"example graph: {summary.rows} rows merged "
        f"({summary.counters.get('nodes_created', 0)} nodes, "
        f"{summary.counters.get('relationships_created', 0)} relationships new); "
        f"graph holds {counts['nodes']} nodes, {counts['relationships']} relationships"
    )


def step_query(run: DemoRun) -> None:
    """Run library/example_gene_paths for the B-cell circuit and show it as a table."""
    from rich.table import Table

    from circuitdb.graph.example import B_CELL, circuit_id

    params = {"circuit": circuit_id(B_CELL), "min_weight": 0.1, "limit": 10}
    rows = run.graph.run("library/example_gene_paths", params)
    run.results["query"] = {"name": "example_gene_paths", "params": params, "rows": rows}
    if run.as_json:
        return
    table = Table(title=f"gene -> {B_CELL} paths (circuit {params['circuit']}, |w| >= {params['min_weight']})")
    table.add_column("gene")
    table.add_column("features")
    table.add_column("cell type")
    table.add_column("score", justify="right")
    table.add_column("hops", justify="right")
    for row in rows:
        table.add_row(row["gene"], " -> ".join(row["features"]), row["cell_type"], f"{row['score']:.4f}",
                      str(row["hops"]))
    console.print(table)


#: The demo, in order. Later stages insert their steps here.
STEPS: list[tuple[str, Callable[[DemoRun], None]]] = [
    ("connect", step_connect),
    ("init schema", step_init_schema),
    ("load example graph", step_load_example),
    ("query", step_query),
]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results of every step as JSON on stdout.")
@click.pass_context
def demo(ctx: click.Context, as_json: bool) -> None:
    """Run the main job end to end on the configured graph (embedded ArcadeDB by default)."""
    from circuitdb.cli.db import settings_from_ctx

    run = DemoRun(settings=settings_from_ctx(ctx), as_json=as_json)
    try:
        for name, step in STEPS:
            if not as_json and verbosity() >= 0:
                console.rule(f"[bold]{name}[/bold]")
            step(run)
    finally:
        if run.graph is not None:
            run.graph.close()
    if as_json:
        emit_json(run.results)
