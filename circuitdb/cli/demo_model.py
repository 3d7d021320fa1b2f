"""``circuitdb demo-model``: retrain the shipped C2S-style demo model, or print where it lies."""

from __future__ import annotations

from pathlib import Path

import click

from circuitdb.cli.console import info, progress


@click.group("demo-model")
def demo_model() -> None:
    """The project's own C2S-style GPT-NeoX demo model (trained on pbmc68k_reduced)."""


@demo_model.command("path")
def path_cmd() -> None:
    """Print the directory of the shipped demo model."""
    from circuitdb.demo import model_dir
    from circuitdb.errors import InputError

    d = model_dir()
    if not (d / "model.safetensors").is_file():
        raise InputError(f"the shipped demo model is missing from {d}; reinstall circuitdb or run 'circuitdb demo-model train --out DIR'")
    click.echo(str(d))


@demo_model.command("train")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="New directory for the model.")
@click.option("--epochs", type=int, default=None, help="Training epochs (default: the shipped model's).")
@click.option("--top-k", type=int, default=None, help="Genes per cell sentence (default: the shipped model's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads (results depend on it).")
@click.option("--eval-every", type=int, default=None, help="Held-out accuracy every N epochs (0: only at the end).")
@click.option("--layers", type=int, default=None, help="Transformer layers (default: the shipped model's).")
@click.option("--d-model", type=int, default=None, help="Residual width; d_mlp is 4x (default: the shipped model's).")
@click.option("--heads", type=int, default=None, help="Attention heads (default: the shipped model's).")
def train_cmd(out: Path, epochs: int | None, top_k: int | None, seed: int, threads: int, eval_every: int | None,
              layers: int | None, d_model: int | None, heads: int | None) -> None:
    """Train tokenizer + model from scratch on pbmc68k_reduced (held-out cells 0, 5, 10, ... never seen)."""
    from dataclasses import replace

    from circuitdb.demo.train import TrainConfig, train

    cfg = TrainConfig(seed=seed, threads=threads)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if top_k is not None:
        cfg = replace(cfg, top_k=top_k)
    if eval_every is not None:
        cfg = replace(cfg, eval_every=eval_every)
    if layers is not None:
        cfg = replace(cfg, n_layers=layers)
    if d_model is not None:
        cfg = replace(cfg, d_model=d_model, d_mlp=4 * d_model)
    if heads is not None:
        cfg = replace(cfg, n_heads=heads)
    with progress(transient=False) as bar:
        task = bar.add_task("training", total=None, status="")

        def cb(m: dict[str, float]) -> None:
            acc = m["heldout_acc"]
            acc_txt = "-" if acc != acc else f"{acc:.3f}"
            bar.update(task, total=m["total"], completed=m["step"],
                       status=f"epoch {int(m['epoch'])} loss {m['loss']:.3f} held-out acc {acc_txt}")

        result = train(cfg, out, callback=cb)
    info(
        f"saved {out}: held-out accuracy {result.heldout_accuracy:.3f}, train {result.train_accuracy:.3f}, "
        f"{result.wall_s:.0f} s wall / {result.cpu_s:.0f} s CPU"
    )
