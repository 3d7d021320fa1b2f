"""``circuitdb predict``: cell types by ranking candidate answers with a C2S-style model."""

from __future__ import annotations

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
@click.option("--write-obs", "write_obs", default=None, metavar="KEY",
              help="Also write DATA with the predicted type in obs[KEY] (and its margin in obs[KEY_margin]) to --out-h5ad.")
@click.option("--out-h5ad", "out_h5ad", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The labelled copy of DATA written with --write-obs (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print {accuracy, heldout_accuracy, per_class_recall, n_cells} as JSON.")
def predict(data: Path, model: Path, label_key: str | None, top_k: int | None, layer: str, symbol_key: str | None,
            batch_size: int, out: Path | None, write_obs: str | None, out_h5ad: Path | None, as_json: bool) -> None:
    """Predict each cell's type in DATA (.h5ad/.zarr) by summed answer log-probability.

    With --write-obs KEY --out-h5ad FILE, DATA is also written to FILE with the prediction
    in obs[KEY] (categorical; empty for cells without expressed genes) and its margin in
    obs[KEY_margin], e.g. to label an unlabelled dataset for 'circuitdb circuits --label-key KEY'.
    """
    from circuitdb.demo.predict import load_model_dir, predict_cells
    from circuitdb.errors import InputError
    from circuitdb.loaders.io import open_cells, write_atomic

    if out is not None and not out.parent.exists():
        raise InputError(f"the folder of --out {out} does not exist; create it first")
    if (write_obs is None) != (out_h5ad is None):
        raise InputError("--write-obs KEY and --out-h5ad FILE go together; pass both (or neither)")
    if out_h5ad is not None:
        if out_h5ad.suffix.lower() != ".h5ad":
            raise InputError(f"--out-h5ad {out_h5ad} must end in .h5ad")
        if not out_h5ad.parent.exists():
            raise InputError(f"the folder of --out-h5ad {out_h5ad} does not exist; create it first")
        if not str(write_obs).strip():
            raise InputError("--write-obs is empty; name the obs column, e.g. --write-obs predicted_type")
    bundle = load_model_dir(model)
    with open_cells(data) as store, progress() as bar:
        if label_key is None and bundle.meta.get("label_key") in store.obs.columns:
            label_key = bundle.meta["label_key"]  # the model's own label column, when the data has it
        if label_key is not None and label_key not in store.obs.columns:
            raise InputError(f"no obs column {label_key!r} for --label-key; obs columns: {', '.join(map(str, store.obs.columns)) or 'none'}")
        if write_obs is not None and write_obs == label_key:
            raise InputError(f"--write-obs {write_obs!r} is the --label-key column; pick another name, e.g. predicted_type")
        task = bar.add_task("scoring cells", total=store.n_obs)
        preds = predict_cells(bundle, store, label_key=label_key, top_k=top_k, layer=layer, symbol_key=symbol_key,
                              batch_size=batch_size, callback=lambda n: bar.advance(task, n))
    summary = preds.summary()
    if out is not None:
        write_atomic(out, lambda p: preds.table.to_csv(p, index=False))
    if write_obs is not None and out_h5ad is not None:
        from circuitdb.demo.predict import labelled_anndata
        from circuitdb.loaders.io import read_anndata

        adata = labelled_anndata(read_anndata(data, backed=False), preds, write_obs,
                                 params={"model": str(model), "layer": layer, "data": str(data)})
        write_atomic(out_h5ad, adata.write_h5ad)
        summary["predicted_counts"] = {str(k): int(v) for k, v in adata.obs[write_obs].value_counts().items()}
    if as_json:
        emit_json(summary)
    else:
        acc = summary["accuracy"]
        hacc = summary["heldout_accuracy"]
        info(f"{summary['n_cells']} cells (top-k {preds.top_k}); accuracy "
             f"{'-' if acc is None else f'{acc:.3f}'}, held-out {'-' if hacc is None else f'{hacc:.3f}'}"
             + (f"; {summary['n_skipped_no_genes']} cells without expressed genes skipped" if summary["n_skipped_no_genes"] else "")
             + (f"; wrote {out}" if out is not None else "")
             + (f"; wrote {out_h5ad} with obs[{write_obs!r}]" if out_h5ad is not None else ""))
