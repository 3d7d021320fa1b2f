"""``circuitdb harvest``, ``circuitdb train-transcoders``, ``circuitdb eval-transcoders``."""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import detail, emit_json, info, progress
from circuitdb.errors import InputError


def _prompt_options(model_dir: str, label_key: str | None, top_k: int | None, holdout_every: int, layer: str, organism: str | None, symbol_key: str | None):  # type: ignore[no-untyped-def]
    from circuitdb.loaders.prompts import DEFAULT_ORGANISM
    from circuitdb.transcoder.common import PromptOptions, default_top_k, model_card

    card = model_card(model_dir)
    return PromptOptions(
        top_k=top_k if top_k is not None else default_top_k(model_dir),
        label_key=label_key,
        organism=organism or card.get("organism", DEFAULT_ORGANISM),
        layer=layer,
        symbol_key=symbol_key,
        holdout_every=holdout_every,
        prompt_template=card.get("prompt_template"),
        answer_template=card.get("answer_template"),
    )


_data_options = [
    click.option("--label-key", required=True, help="obs column with cell types."),
    click.option("--holdout-every", type=int, default=5, show_default=True, help="Cells 0, N, 2N, ... are held out."),
    click.option("--top-k", type=int, default=None, help="Genes per cell sentence [default: the model card's top_k, else 200]."),
    click.option("--layer", "expr_layer", default="raw", show_default=True, help="Expression source: raw, X or a layer name."),
    click.option("--symbol-key", default=None, help="var column with gene symbols (default: var_names)."),
    click.option("--organism", default=None, help="Organism named in the prompt [default: the model card's, else Homo sapiens]."),
]


def data_options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(_data_options):
        f = opt(f)
    return f


@click.command("harvest")
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Model directory.")
@click.argument("data", type=click.Path())
@data_options
@click.option("--layers", default="all", show_default=True, help="'all', '0,2,5' or '1-3'.")
@click.option("--positions", type=click.Choice(["all", "genes"]), default="all", show_default=True, help="Harvest every token or only gene tokens.")
@click.option("--no-answer", is_flag=True, help="Do not append the answer ' {cell_type}.' to the prompts.")
@click.option("--cells-per-shard", type=int, default=64, show_default=True, help="Cells per shard (memory bound and resume unit).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Prompts per forward pass.")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True, help="Storage dtype.")
@click.option("--max-cells", type=int, default=None, help="Harvest at most this many training cells.")
@click.option("--out", required=True, type=click.Path(), help="Output directory (an interrupted harvest there resumes).")
def harvest_cmd(model_dir: str, data: str, label_key: str, holdout_every: int, top_k: int | None, expr_layer: str, symbol_key: str | None,
                organism: str | None, layers: str, positions: str, no_answer: bool, cells_per_shard: int, batch_size: int, dtype: str,
                max_cells: int | None, out: str) -> None:
    """Capture each layer's MLP input/output on the training cells of DATA into shards.

    Runs data-parallel under torchrun (each rank takes every WORLD_SIZE-th shard, gloo backend).
    """
    from circuitdb.transcoder.common import check_labels, load_model, read_data
    from circuitdb.transcoder.harvest import HarvestConfig, harvest, init_distributed

    opts = _prompt_options(model_dir, label_key, top_k, holdout_every, expr_layer, organism, symbol_key)
    cfg = HarvestConfig(layers=layers, positions=positions, with_answer=not no_answer, cells_per_shard=cells_per_shard,  # type: ignore[arg-type]
                        batch_size=batch_size, dtype=dtype, max_cells=max_cells)  # type: ignore[arg-type]
    rank, world = init_distributed()
    model, tok = load_model(model_dir)
    adata = read_data(data)
    check_labels(adata, label_key)
    from circuitdb.loaders.adapters import adapter_for

    adapter_for(model).resolve_layers(layers)
    n_obs = int(adata.n_obs)
    n_train = n_obs - (n_obs + holdout_every - 1) // holdout_every
    if max_cells is not None:
        n_train = min(n_train, max_cells)
    with progress() as bar:
        task = bar.add_task("harvest" + (f" rank {rank}/{world}" if world > 1 else ""), total=n_train)
        state = {"tok": 0}

        def cb(cells: int, tokens: int) -> None:
            state["tok"] += tokens
            bar.update(task, advance=cells, status=f"{state['tok']:,} tokens")

        res = harvest(model, tok, adata, out, cfg, opts, model_name=str(Path(model_dir).name), callback=cb)
    if rank == 0:
        m = res.manifest
        info(f"harvested {m['rows']:,} rows x {len(m['layers'])} layers from {m['cells_used']} cells into {out} "
             f"({res.shards_written} shards written, {res.shards_skipped} already done)")


@click.command("train-transcoders")
@click.option("--acts", required=True, type=click.Path(), help="Harvested activations directory.")
@click.option("--layers", default="all", show_default=True, help="'all', '0,2,5' or '1-3'.")
@click.option("--features", type=int, default=4096, show_default=True, help="Features per layer.")
@click.option("--k", type=int, default=32, show_default=True, help="Active features per token (topk).")
@click.option("--activation", type=click.Choice(["topk", "relu", "jumprelu"]), default="topk", show_default=True)
@click.option("--l1", "l1_coeff", type=float, default=1e-3, show_default=True, help="L1 (relu) / L0 (jumprelu) coefficient.")
@click.option("--skip/--no-skip", default=False, show_default=True, help="Learn a linear skip connection.")
@click.option("--steps", type=int, default=None, help="Optimiser steps per layer.")
@click.option("--epochs", type=int, default=None, help="Passes over the rows per layer [default: 10 when --steps is not given].")
@click.option("--batch-size", type=int, default=1024, show_default=True, help="Rows per step.")
@click.option("--lr", type=float, default=None, help="Learning rate [default: scaled by width].")
@click.option("--positions", type=click.Choice(["all", "genes"]), default="all", show_default=True, help="Train on all rows or gene rows only.")
@click.option("--dead-after", "dead_after_rows", type=int, default=200_000, show_default=True, help="Rows without firing before a feature counts as dead.")
@click.option("--resample-every", type=int, default=0, show_default=True,
              help="Re-initialise dead features every N steps from badly reconstructed rows (0: off; AuxK handles them).")
@click.option("--encoder-precision", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--checkpoint-every", type=int, default=200, show_default=True, help="Steps between checkpoints.")
@click.option("--save-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Output directory (a rerun resumes; finished layers are skipped).")
def train_cmd(acts: str, layers: str, features: int, k: int, activation: str, l1_coeff: float, skip: bool, steps: int | None, epochs: int | None,
              batch_size: int, lr: float | None, positions: str, dead_after_rows: int, resample_every: int, encoder_precision: str, checkpoint_every: int,
              save_dtype: str, seed: int, out: str) -> None:
    """Train one transcoder per layer on harvested activations (resumable)."""
    from circuitdb.transcoder.train import TrainConfig, train_transcoders

    cfg = TrainConfig(d_features=features, k=k, activation=activation, l1_coeff=l1_coeff, skip=skip, steps=steps, epochs=epochs,  # type: ignore[arg-type]
                      batch_size=batch_size, lr=lr, positions=positions, dead_after_rows=dead_after_rows, resample_every=resample_every,  # type: ignore[arg-type]
                      encoder_precision=encoder_precision, checkpoint_every=checkpoint_every, save_dtype=save_dtype, seed=seed)  # type: ignore[arg-type]
    with progress() as bar:
        tasks: dict[int, int] = {}

        def cb(layer: int, step: int, total: int, m: dict[str, float]) -> None:
            if layer not in tasks:
                tasks[layer] = bar.add_task(f"layer {layer}", total=total, completed=step - 1)
            bar.update(tasks[layer], completed=step,
                       status=f"loss {m.get('loss', 0):.4f}  fvu {m.get('fvu', 0):.4f}  L0 {m.get('l0', 0):.1f}  dead {m.get('dead', 0):.1%}")

        results, manifest = train_transcoders(acts, out, cfg, layers=layers, callback=cb)
    for r in results:
        how = "already trained" if r.skipped else (f"resumed at step {r.resumed_from}" if r.resumed_from else "trained")
        m = r.metrics
        info(f"layer {r.layer}: {how}; fvu {m.get('fvu', float('nan')):.4f}, L0 {m.get('l0', float('nan')):.1f}, dead {m.get('dead', float('nan')):.1%}")
    detail(f"transcoder set {manifest['transcoder_set_hash']} for model {manifest['model_hash']}")
    info(f"wrote {len(manifest['layers'])} transcoders to {out}")


@click.command("eval-transcoders")
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Model directory.")
@click.option("--transcoders", "tc_dir", required=True, type=click.Path(), help="Directory written by train-transcoders.")
@click.argument("data", type=click.Path())
@data_options
@click.option("--layers", default=None, help="Evaluate only these layers (default: every trained one).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Prompts per forward pass.")
@click.option("--max-cells", type=int, default=None, help="Evaluate at most this many held-out cells.")
@click.option("--no-accuracy", is_flag=True, help="Skip candidate scoring (cell-type accuracy).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Resamples of the held-out cells for 95% intervals of CE recovered (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--table", type=click.Path(), default=None, help="Write the markdown table to this file.")
def eval_cmd(model_dir: str, tc_dir: str, data: str, label_key: str, holdout_every: int, top_k: int | None, expr_layer: str, symbol_key: str | None,
             organism: str | None, layers: str | None, batch_size: int, max_cells: int | None, no_accuracy: bool, n_boot: int, as_json: bool, table: str | None) -> None:
    """Held-out faithfulness: FVU, L0, dead features, CE recovered, KL and accuracy with transcoders spliced in."""
    from circuitdb.transcoder.common import check_labels, load_model, read_data
    from circuitdb.transcoder.evaluate import evaluate_transcoders, load_transcoders, markdown_table

    opts = _prompt_options(model_dir, label_key, top_k, holdout_every, expr_layer, organism, symbol_key)
    model, tok = load_model(model_dir)
    from circuitdb.loaders.adapters import adapter_for

    chosen = adapter_for(model).resolve_layers(layers) if layers else None
    tset = load_transcoders(tc_dir, model=model, layers=chosen)
    adata = read_data(data)
    check_labels(adata, label_key)
    with progress() as bar:
        task = bar.add_task("evaluate", total=None)

        def cb(stage: str, done: int, total: int) -> None:
            bar.update(task, total=total, advance=done if stage == "ce" else 0, status=stage)

        result = evaluate_transcoders(model, tok, adata, tset, opts, batch_size=batch_size, max_cells=max_cells, accuracy=not no_accuracy, n_boot=n_boot, callback=cb)
    md = markdown_table(result)
    if table:
        p = Path(table)
        if p.parent and not p.parent.exists():
            raise InputError(f"no directory {p.parent} for --table; create it first")
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(md)
        tmp.replace(p)
    if as_json:
        emit_json(result)
    else:
        info(md)
