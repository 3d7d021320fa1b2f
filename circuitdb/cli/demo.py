"""``circuitdb demo``: the main job, end to end on the configured backend.

The demo is a list of steps (:data:`STEPS`); each takes the shared
:class:`DemoRun` and may put results on it for later steps. Later stages add
their steps (train transcoders, attribute, export circuits, ...) to the list.

Steps: connect (embedded ArcadeDB unless ``--neo4j-uri``/``NEO4J_URI``), apply the
schema, export the circuits of the shipped demo model (10 cell types of
pbmc68k_reduced, traced through its transcoders; see ``docs/faithfulness.md``),
then ask the graph two questions: a cell type's top circuit features, and what
differs between the B-cell and monocyte circuits. Reruns are idempotent.
Both questions are pinned to the demo circuits' dataset, so other datasets in the
graph change nothing. ``--second-dataset`` (:data:`SECOND_DATASET_STEPS`) also exports
the circuits of the celltypist PBMC sample (``docs/second_dataset.md``) and diffs the
monocyte circuit across the two datasets.
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
    dataset: str | None = None  # dataset id of the shipped demo circuits, once exported


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


def demo_circuits_dir():  # type: ignore[no-untyped-def]
    """The shipped demo circuits (package data)."""
    from importlib import resources

    return resources.files("circuitdb.demo_data").joinpath("circuits")


def second_dataset_circuits_dir():  # type: ignore[no-untyped-def]
    """The shipped circuits of the second dataset, the celltypist PBMC sample (``docs/second_dataset.md``)."""
    from importlib import resources

    return resources.files("circuitdb.demo_data").joinpath("circuits_celltypist")


def _export_shipped(run: DemoRun, traversable: Any, what: str) -> tuple[Any, str]:
    """Export a shipped circuits folder; the summary and the folder's dataset id."""
    from circuitdb.attribution.circuit import Circuit
    from circuitdb.graph.writer import export_dir, find_circuit_files

    with resources_path(traversable) as folder, progress() as bar:
        task = bar.add_task(f"exporting {what}", total=None)

        def on_progress(done: int, total: int, status: str) -> None:
            bar.update(task, total=total, advance=done, status=status)

        summary = export_dir(run.graph, folder, on_progress=on_progress)
        dataset = Circuit.load(find_circuit_files(folder)[0][0]).provenance.dataset_id
    return summary, dataset


def step_export_circuits(run: DemoRun) -> None:
    """Export the shipped demo circuits (MERGE on deterministic ids: a rerun adds nothing)."""
    summary, run.dataset = _export_shipped(run, demo_circuits_dir(), "demo circuits")
    counts = run.graph.run("admin/count_graph")[0]
    run.results["export"] = {**summary.as_dict(), "graph": counts}
    info(f"{len(summary.circuits_written)} circuits written, {len(summary.circuits_skipped)} already present; "
         f"graph holds {counts['nodes']} nodes, {counts['relationships']} relationships")


def resources_path(traversable):  # type: ignore[no-untyped-def]
    from importlib import resources

    return resources.as_file(traversable)


def _table(title: str, rows: list[dict[str, Any]], limit: int = 10) -> None:
    from circuitdb.cli.query import print_table

    if not rows:
        console.print(f"{title}: no rows")
        return
    print_table(rows, title, limit=limit)


def step_top_features(run: DemoRun) -> None:
    """The B-cell circuit's strongest features (library query ``top_features``)."""
    from circuitdb.queries import run_rows

    params = {"cell_type": DEMO_A, "dataset": run.dataset, "limit": 10}
    rows = run_rows(run.graph, "top_features", params)
    run.results["top_features"] = {"params": params, "rows": rows}
    if not run.as_json:
        shown = [
            {"layer": r["layer"], "index": r["index"], "influence": round(r["influence"], 4),
             "direct weight": round(r["direct_weight"] or 0.0, 3), "top genes": " ".join((r["top_genes"] or [])[:5])}
            for r in rows
        ]
        _table(f"top features of the {DEMO_A} circuit", shown)


def step_diff(run: DemoRun) -> None:
    """What differs between the B-cell and monocyte circuits (``circuitdb diff``)."""
    from circuitdb.queries import circuit_diff

    # pinned to the demo circuits' dataset, so other datasets in the graph (e.g. --second-dataset) change nothing
    result = circuit_diff(run.graph, DEMO_A, DEMO_B, dataset_a=run.dataset, limit=10)
    data = result.as_json()
    run.results["diff"] = {"a": DEMO_A, "b": DEMO_B, "counts": data["counts"], "features": data["features"]["counts"]}
    c, f = data["counts"], data["features"]["counts"]
    info(f"{DEMO_A} vs {DEMO_B}: edges {c['only_a']} only A, {c['only_b']} only B, {c['both']} both; "
         f"features {f['only_a']} only A, {f['only_b']} only B, {f['both']} both")
    if not run.as_json:
        shown = [
            {"status": r["status"], "layer": r["layer"], "index": r["index"],
             "influence A": _round(r["influence_a"]), "influence B": _round(r["influence_b"]), "delta": _round(r["delta"])}
            for r in result.features.to_dict("records")
        ]
        _table("top feature changes (by |delta|)", shown)


def step_export_second_dataset(run: DemoRun) -> None:
    """Export the shipped circuits of the second dataset (the celltypist PBMC sample, labelled by the demo model)."""
    summary, dataset = _export_shipped(run, second_dataset_circuits_dir(), "celltypist sample circuits")
    run.results["second_dataset"] = {"dataset": dataset,
                                      "written": len(summary.circuits_written), "unchanged": len(summary.circuits_skipped)}
    info(f"second dataset {dataset}: {len(summary.circuits_written)} circuits written, "
         f"{len(summary.circuits_skipped)} already present")


def step_cross_dataset_diff(run: DemoRun) -> None:
    """One cell type in both datasets: the circuit diff and the genes whose influence changes most."""
    from circuitdb.queries import circuit_diff, run_rows

    other = run.results["second_dataset"]["dataset"]
    result = circuit_diff(run.graph, DEMO_X, dataset_a=run.dataset, dataset_b=other, limit=10)
    genes = run_rows(run.graph, "gene_influence_change",
                     {"cell_type": DEMO_X, "dataset_a": run.dataset, "dataset_b": other, "limit": 10})
    data = result.as_json()
    c, f = data["counts"], data["features"]["counts"]
    run.results["second_dataset"].update({"cell_type": DEMO_X, "counts": c, "features": f, "genes": genes})
    info(f"{DEMO_X} in {run.dataset} (A) vs {other} (B): edges {c['only_a']} only A, {c['only_b']} only B, {c['both']} both; "
         f"features {f['only_a']} only A, {f['only_b']} only B, {f['both']} both")
    if not run.as_json:
        shown = [{"gene": r["gene"], "influence A": _round(r["influence_a"]), "influence B": _round(r["influence_b"]),
                  "delta": _round(r["delta"])} for r in genes]
        _table(f"genes whose influence on {DEMO_X} changes most between the datasets", shown)


def _round(value: Any) -> Any:
    try:
        return None if value is None or value != value else round(float(value), 4)
    except (TypeError, ValueError):
        return value


DEMO_A = "CD19+ B"
DEMO_B = "CD14+ Monocyte"
DEMO_X = "CD14+ Monocyte"  # the cross-dataset example: the second dataset's largest predicted type


#: The demo, in order. Later stages insert their steps here.
STEPS: list[tuple[str, Callable[[DemoRun], None]]] = [
    ("connect", step_connect),
    ("init schema", step_init_schema),
    ("export demo circuits", step_export_circuits),
    (f"top features: {DEMO_A}", step_top_features),
    (f"diff: {DEMO_A} vs {DEMO_B}", step_diff),
]
#: Added by ``--second-dataset``.
SECOND_DATASET_STEPS: list[tuple[str, Callable[[DemoRun], None]]] = [
    ("export second dataset (celltypist PBMC sample)", step_export_second_dataset),
    (f"cross-dataset diff: {DEMO_X}", step_cross_dataset_diff),
]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results of every step as JSON on stdout.")
@click.option("--second-dataset", is_flag=True,
              help="Also export the circuits of the celltypist PBMC sample and diff one cell type across the two datasets "
                   "(the graph then holds two datasets: name one with --dataset in later diffs).")
@click.pass_context
def demo(ctx: click.Context, as_json: bool, second_dataset: bool) -> None:
    """Run the main job end to end on the configured graph (embedded ArcadeDB by default)."""
    from circuitdb.cli.db import settings_from_ctx

    run = DemoRun(settings=settings_from_ctx(ctx), as_json=as_json)
    try:
        for name, step in STEPS + (SECOND_DATASET_STEPS if second_dataset else []):
            if not as_json and verbosity() >= 0:
                console.rule(f"[bold]{name}[/bold]")
            step(run)
    finally:
        if run.graph is not None:
            run.graph.close()
    if as_json:
        emit_json(run.results)
