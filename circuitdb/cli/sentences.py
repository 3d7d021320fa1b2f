"""``circuitdb sentences``: an AnnData -> one C2S cell sentence per cell, as a table."""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import emit_json, info, progress, warn


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--label-key", required=True, metavar="KEY", help="obs column with the cell-type labels.")
@click.option("--top-k", type=int, default=200, show_default=True, help="Genes kept per cell.")
@click.option("--layer", default="raw", show_default=True, metavar="LAYER",
              help="'raw' (adata.raw.X), 'X', or a named layer.")
@click.option("--symbol-key", default=None, metavar="COL", help="var column with gene symbols (for Ensembl-indexed data).")
@click.option("--organism", default="Homo sapiens", show_default=True, help="Organism named in prompts ('human'/'mouse' accepted).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the tie-breaking order between equal values.")
@click.option("--chunk-size", type=int, default=4096, show_default=True, help="Cells read from disk at once.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Output table: .csv, .tsv or .parquet.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def sentences(
    data: Path, label_key: str, top_k: int, layer: str, symbol_key: str | None, organism: str,
    seed: int, chunk_size: int, out: Path, as_json: bool,
) -> None:
    """Write one row per cell (cell_id, label, sentence, n_genes) from an .h5ad/.zarr DATA file.

    Genes are ordered by descending expression (ties broken by --seed), uppercased,
    and cut to the top --top-k. Cells with no expressed gene are skipped and counted.
    """
    from circuitdb.loaders.sentence_table import table_format, write_sentence_table
    from circuitdb.loaders.sentences import SentenceOptions

    table_format(out)  # fail on a bad --out before reading anything
    opts = SentenceOptions(top_k=top_k, layer=layer, symbol_key=symbol_key, label_key=label_key,
                           seed=seed, chunk_size=chunk_size, organism=organism)
    with progress() as bar:
        task = bar.add_task("sentences", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = write_sentence_table(data, out, opts, on_progress=on_progress)
    if summary.n_skipped:
        warn(f"skipped {summary.n_skipped} cell(s) with no expressed gene (e.g. {', '.join(summary.skipped_ids[:3])})")
    if summary.n_genes_without_symbol:
        warn(f"{summary.n_genes_without_symbol} gene(s) have no symbol and never appear in a sentence")
    info(f"wrote {summary.n_written} of {summary.n_cells} cells to {out} (skipped {summary.n_skipped}; top-k {top_k}, layer {layer})")
    if as_json:
        emit_json({**summary.as_dict(), "out": str(out), "top_k": top_k, "seed": seed})
