"""``circuitdb predict``: cell types by ranking candidate answers with a C2S-style model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from circuitdb.cli.console import emit_json, info, progress


@click.command("predict")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model", required=True, type=click.Path(path_type=Path),
              help="Model directory (e.g. \"$(circuitdb demo-model path)\").")
@click.option("--label-key", default=None, help="obs column with true labels (default: the model's, if present).")
@click.option("--top-k", type=int, default=None, help="Genes per sentence (default: the model's own top-k).")
@click.option("--layer", default="raw", show_default=True, help="raw, X or a layer name.")
@click.option("--symbol-key", default=None, help="var column with gene symbols (Ensembl-indexed data).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Prompts per forward pass.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with cell_id,true,predicted,margin (one row per cell, dataset order).")
@click.option("--json", "as_json", is_flag=True, help="Print {accuracy, heldout_accuracy, per_class_recall, n_cells} as JSON.")
def predict(data: Path, model: Path, label_key: str | None, top_k: int | None, layer: str, symbol_key: str | None,
            batch_size: int, out: Path | None, as_json: bool) -> None:
    """Predict each cell's type in DATA (.h5ad/.zarr) by summed answer log-probability."""
    from circuitdb.demo.predict import load_model_dir, predict_cells
    from circuitdb.errors import InputError
    from circuitdb.loaders.io import open_cells

    if out is not None and not out.parent.exists():
        raise InputError(f"the folder of --out {out} does not exist; create it first")
    bundle = load_model_dir(model)
    with open_cells(data) as store, progress() as bar:
        if label_key is None and bundle.meta.get("label_key") in store.obs.columns:
            label_key = bundle.meta["label_key"]  # the model's own label column, when the data has it
        if label_key is not None and label_key not in store.obs.columns:
            raise InputError(f"no obs column {label_key!r} for --label-key; obs columns: {', '.join(map(str, store.obs.columns)) or 'none'}")
        task = bar.add_task("scoring cells", total=store.n_obs)
        preds = predict_cells(bundle, store, label_key=label_key, top_k=top_k, layer=layer, symbol_key=symbol_key,
                              batch_size=batch_size, callback=lambda n: bar.advance(task, n))
    summary = preds.summary()
    if out is not None:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(fd)
        try:
            preds.table.to_csv(tmp, index=False)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if as_json:
        emit_json(summary)
    else:
        acc = summary["accuracy"]
        hacc = summary["heldout_accuracy"]
        info(f"{summary['n_cells']} cells (top-k {preds.top_k}); accuracy "
             f"{'-' if acc is None else f'{acc:.3f}'}, held-out {'-' if hacc is None else f'{hacc:.3f}'}"
             + (f"; {summary['n_skipped_no_genes']} cells without expressed genes skipped" if summary["n_skipped_no_genes"] else "")
             + (f"; wrote {out}" if out is not None else ""))
