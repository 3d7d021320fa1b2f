"""``circuitdb export CIRCUITS_DIR``: write circuit files into the graph (batched, idempotent, resumable)."""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import console, emit_json, info, progress


@click.command()
@click.argument("circuits_dir", type=click.Path(path_type=Path))
@click.option("--neo4j-uri", default=None, metavar="URI", help="Neo4j Bolt URI (overrides the root option / NEO4J_URI).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Rows per UNWIND transaction.")
@click.option("--workers", default=None, type=click.IntRange(1, 16), metavar="N",
              help="Write transactions in flight at once [default: 2 on a Neo4j server, 1 on the embedded default].")
@click.option("--no-init", is_flag=True, help="Do not apply the schema (constraints, indexes) first.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_context
def export(ctx: click.Context, circuits_dir: Path, neo4j_uri: str | None, batch_size: int, workers: int | None,
           no_init: bool, as_json: bool) -> None:
    """Write every circuit file under CIRCUITS_DIR into the graph.

    Reruns are exact: complete, unchanged circuits are skipped, interrupted ones are finished,
    rebuilt ones replaced.
    """
    from rich.table import Table

    from circuitdb.cli.db import settings_from_ctx
    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.schema import apply_schema
    from circuitdb.graph.writer import export_circuits, find_circuit_files, load_circuits, load_feature_stats
    from circuitdb.errors import InputError

    paths, other = find_circuit_files(circuits_dir)
    if not paths:
        raise InputError(f"no circuit files (*.json with metadata.circuitdb) under {circuits_dir}; "
                         "run the attribution step first or pass its output folder")
    circuits = load_circuits(paths)
    stats = load_feature_stats(circuits_dir)
    settings = settings_from_ctx(ctx)
    if neo4j_uri:
        settings = settings.with_(neo4j_uri=neo4j_uri)
    with open_backend(settings) as graph:
        where = f"{graph.backend} at {graph.uri}"
        if not no_init:
            apply_schema(graph)
        with progress() as bar:
            task = bar.add_task(f"export {len(circuits)} circuit(s)", total=None)

            def on_progress(advance: int, total: int, status: str) -> None:
                bar.update(task, advance=advance, total=total, status=status)

            summary = export_circuits(graph, circuits, batch_size=batch_size, feature_stats=stats,
                                      on_progress=on_progress, workers=workers)
    summary.files_ignored = [str(p) for p in other]
    if as_json:
        emit_json({"backend": where, **summary.as_dict()})
        return
    rate = summary.relationships_written / summary.seconds if summary.seconds > 0 else 0.0
    info(f"exported into {where}: {len(summary.circuits_written)} circuit(s) written"
         f" ({len(summary.circuits_replaced)} replaced), {len(summary.circuits_skipped)} unchanged and skipped;"
         f" {summary.relationships_written} relationship rows in {summary.seconds:.1f} s ({rate:,.0f}/s)")
    if summary.skipped_nodes:
        info(f"not stored: {summary.skipped_nodes} error/bias node(s) and {summary.skipped_edges} edge(s) from them")
    if summary.files_ignored:
        info(f"ignored {len(summary.files_ignored)} JSON file(s) that are not circuits")
    table = Table(title="graph now holds")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("count", justify="right")
    for kind, counts in summary.totals.items():
        for name, n in counts.items():
            table.add_row(kind, name, f"{n:,}")
    console.print(table)
