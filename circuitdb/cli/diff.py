"""``circuitdb diff --cell-type A --vs B``: what changes between two circuits."""

from __future__ import annotations

import click

from circuitdb.cli.console import console, emit_json, info


@click.command()
@click.option("--cell-type", "cell_type", required=True, help="Side A's cell type.")
@click.option("--vs", "vs", default=None, help="Side B's cell type (default: the same, for a dataset diff).")
@click.option("--dataset", default=None, help="Side A's dataset, by id or by name (default: the one that has the cell type).")
@click.option("--vs-dataset", "vs_dataset", default=None, help="Side B's dataset, by id or by name (default: --dataset).")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 100000), help="Rows shown in the table.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {counts, only_a, only_b, both, features} as JSON on stdout.")
@click.pass_context
def diff(ctx: click.Context, cell_type: str, vs: str | None, dataset: str | None, vs_dataset: str | None, top: int,
         as_json: bool) -> None:
    """Diff two circuits: two cell types (--cell-type A --vs B), or one cell type in two datasets
    (--cell-type A --dataset X --vs-dataset Y)."""
    from circuitdb.cli.db import settings_from_ctx
    from circuitdb.cli.query import print_table
    from circuitdb.errors import UsageError
    from circuitdb.graph.backend import open_backend
    from circuitdb.queries import circuit_diff

    if vs is None and vs_dataset is None:
        raise UsageError("nothing to compare: pass --vs CELL_TYPE, or --dataset X --vs-dataset Y")
    with open_backend(settings_from_ctx(ctx)) as graph:
        result = circuit_diff(graph, cell_type, vs, dataset_a=dataset, dataset_b=vs_dataset,
                              limit=None if as_json else top)
    data = result.as_json()
    if as_json:
        emit_json(data)
        return
    a, b = result.a, result.b
    info(f"A = {a['cell_type']} in {a['dataset']}   B = {b['cell_type']} in {b['dataset']}")
    c, f = data["counts"], data["features"]["counts"]
    info(f"edges: {c['only_a']} only in A, {c['only_b']} only in B, {c['both']} in both; "
         f"features: {f['only_a']} only in A, {f['only_b']} only in B, {f['both']} in both")
    rows = result.edges.to_dict("records")
    if rows:
        print_table(rows, f"top {min(top, len(rows))} edge changes (by |delta|)", limit=top)
    frows = result.features.to_dict("records")
    if frows:
        print_table(frows, f"top {min(top, len(frows))} feature changes (by |delta|)", limit=top)
    if not rows and not frows:
        console.print("both circuits are empty")
