"""``circuitdb circuits``: one circuit per cell type, plus faithfulness numbers."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from circuitdb.cli.console import detail, info, progress, warn
from circuitdb.errors import InputError
from circuitdb.transcoder.common import model_card


def _sizes(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--sizes {text!r} is not a list of integers; use e.g. 10,25,50") from None
    if not out or any(n < 1 for n in out):
        raise InputError(f"--sizes {text!r} needs positive integers; use e.g. 10,25,50")
    return out


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Saved model directory.")
@click.option("--transcoders", "tc_dir", required=True, type=click.Path(path_type=Path), help="Transcoder directory (one cfg.json per layer).")
@click.option("--label-key", default=None, help="obs column with cell types (default: the model's, else bulk_labels).")
@click.option("--cells-per-type", default=32, show_default=True, type=click.IntRange(min=1), help="Cells attributed per type (and evaluated).")
@click.option("--method", type=click.Choice(["influence", "greedy"]), default="influence", show_default=True, help="Subgraph method.")
@click.option("--node-threshold", default=0.8, show_default=True, type=click.FloatRange(0, 1), help="Influence pruning: node fraction.")
@click.option("--edge-threshold", default=0.98, show_default=True, type=click.FloatRange(0, 1), help="Influence pruning: edge fraction.")
@click.option("--keep-fraction", default=0.8, show_default=True, type=click.FloatRange(0, 1, min_open=True), help="Circuit: share of mean influence kept per node group.")
@click.option("--min-features", default=50, show_default=True, type=click.IntRange(min=0), help="Circuit: keep at least this many features.")
@click.option("--dataset-name", default=None, help="Dataset name in the provenance (default: the file name).")
@click.option("--dataset-source", default=None, help="Where the data came from, for the provenance (default: the file's path).")
@click.option("--top-k", default=None, type=click.IntRange(min=1), help="Genes per cell sentence (default: the model's).")
@click.option("--max-feature-nodes", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Feature nodes per graph, chosen by estimated influence (the rest fold into error nodes); 0: all active.")
@click.option("--sizes", default="10,25,50", show_default=True, help="Top-n features ablated for faithfulness.")
@click.option("--n-random", default=20, show_default=True, type=click.IntRange(min=1), help="Random sets per size.")
@click.option("--rank-by", type=click.Choice(["influence", "effect"]), multiple=True, default=("influence",), show_default=True,
              help="Order of the circuit's features for the top-n ablations: mean influence or mean signed effect (repeatable: rows for each).")
@click.option("--no-faithfulness", is_flag=True, help="Only build the circuits.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random ablation sets.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output directory.")
def circuits(data: str, model_dir: Path, tc_dir: Path, label_key: str | None, cells_per_type: int, method: str,
             node_threshold: float, edge_threshold: float, keep_fraction: float, min_features: int,
             dataset_name: str | None, dataset_source: str | None, top_k: int | None, max_feature_nodes: int | None, sizes: str, n_random: int,
             rank_by: tuple[str, ...], no_faithfulness: bool, seed: int, out_dir: Path) -> None:
    """Build one circuit per cell type of DATA and test its faithfulness.

    Each type's first N training cells (obs positions not divisible by 5) are attributed,
    pruned, collapsed over positions and averaged into a circuit
    (OUT/circuit-<slug>-<hash>.json, circuit-tracer graph JSON with provenance); the
    circuit's top features are then ablated on the type's held-out cells against 20
    random sets of active features (OUT/faithfulness.json). Shards over processes under
    torchrun (gloo).
    """
    import torch

    from circuitdb.attribution.aggregate import AggregateOptions, make_provenance
    from circuitdb.attribution.faithfulness import Scores, ablation_runner, answer_scores
    from circuitdb.attribution.pipeline import CircuitsConfig, build_circuits, dist_context, run_faithfulness, split_cells, write_outputs
    from circuitdb.loaders.io import read_anndata
    from circuitdb.loaders.model import load_model
    from circuitdb.loaders.prompts import DEFAULT_ORGANISM, PromptTemplate, build_prompt, gene_token_spans
    from circuitdb.loaders.sentences import SentenceOptions, iter_cell_sentences

    from circuitdb.attribution.attribute import answer_target, attribute, transcoders_fingerprint
    from circuitdb.attribution.replacement import ReplacementModel, load_transcoders, model_fingerprint

    size_list = _sizes(sizes)
    meta = model_card(model_dir) if model_dir.is_dir() else {}
    label_key = label_key or meta.get("label_key") or "bulk_labels"
    top_k = top_k or int(meta.get("top_k", 0) or 0) or 200
    organism = str(meta.get("organism", DEFAULT_ORGANISM))
    template = PromptTemplate(**{k: str(meta[f"{k}_template"]) for k in ("prompt", "answer") if meta.get(f"{k}_template")})

    with dist_context() as ctx, torch.no_grad():
        loaded = load_model(model_dir)
        model, tokenizer = loaded.model, loaded.tokenizer
        transcoders = load_transcoders(tc_dir)
        rm = ReplacementModel(model, transcoders)  # checks the transcoders belong to the model
        adata = read_anndata(data, backed=False)
        if label_key not in adata.obs.columns:
            raise InputError(f"--label-key {label_key!r} is not an obs column of {data}; pick one of {list(adata.obs.columns)[:10]}")
        cells = list(iter_cell_sentences(adata, SentenceOptions(top_k=top_k, label_key=label_key, organism=organism)))
        candidates = [str(c) for c in (meta.get("cell_types") or sorted({c.label for c in cells if c.label is not None}))]
        splits = split_cells(cells, cells_per_type)
        unknown = sorted(set(splits) - set(candidates))
        if unknown:
            raise InputError(f"cell types {unknown[:3]} in {data} are not answers of the model; relabel them or use the model's label key")
        if not splits:
            raise InputError(f"no labelled cells in {data} under {label_key!r}; check --label-key")

        cfg = CircuitsConfig(cells_per_type=cells_per_type, method=method,  # type: ignore[arg-type]
                             node_threshold=node_threshold, edge_threshold=edge_threshold,
                             aggregate=AggregateOptions(keep_fraction=keep_fraction, min_features=min_features),
                             sizes=size_list, n_random=n_random, seed=seed, rank_by=rank_by[0])  # type: ignore[arg-type]
        model_hash = loaded.hash or model_fingerprint(model)
        tc_hash = transcoders_fingerprint(rm.transcoders)
        any_tc = next(iter(rm.transcoders.values()))
        dname = dataset_name or Path(data).stem
        dsrc = dataset_source or str(Path(data).resolve())
        dataset_id = f"{dname}-{_file_hash(Path(data))}" if Path(data).is_file() else dname
        thresholds = cfg.thresholds()
        max_feature_nodes = max_feature_nodes or None
        thresholds["max_feature_nodes"] = float(max_feature_nodes or 0)

        def provenance_fn(cell_type: str, ids: list[str]):  # noqa: ANN202
            return make_provenance(
                cell_type=cell_type, cells=ids, method=method, thresholds=thresholds,
                model=str(model_dir), model_hash=model_hash, transcoders=str(tc_dir), transcoder_hash=tc_hash,
                dataset=dname, dataset_id=dataset_id, dataset_n_cells=int(adata.n_obs), dataset_source=dsrc,
                architecture=rm.adapter.arch, n_layers=rm.adapter.n_layers, transcoder_kind=any_tc.cfg.activation,
                d_features=int(any_tc.cfg.d_features),
            )

        def attribute_fn(cell: Any, cell_type: str):  # noqa: ANN202
            return attribute(cell, rm, tokenizer=tokenizer, answer=cell_type, candidates=candidates, template=template,
                             organism=organism, max_feature_nodes=max_feature_nodes)

        n_cells = sum(len(s.attributed) for s in splits.values())
        if ctx.rank == 0:
            info(f"{len(splits)} cell types, {n_cells} cells to attribute ({ctx.world} process{'es' if ctx.world > 1 else ''}); "
                 f"faithfulness on {'held-out' if all(s.eval_cells == 'heldout' for s in splits.values()) else 'held-out (else attributed)'} cells")
        with progress() as bar:
            mine = len(ctx.shard(n_cells))
            task = bar.add_task(f"attributing (rank {ctx.rank})" if ctx.world > 1 else "attributing", total=mine)
            built = build_circuits(splits, attribute_fn, provenance_fn, cfg, ctx, callback=lambda k: bar.advance(task, k))
        circs, pools = built.circuits, built.pools
        rows = None
        if not no_faithfulness:
            mlps = {i: rm.adapter.layer(i).mlp for i in rm.transcoders}
            ans_ids = {c: list(tokenizer(template.answer_text(c), add_special_tokens=False)["input_ids"]) for c in candidates}

            def make_runner(cell_type: str, eval_cells: list[Any]):  # noqa: ANN202
                tgt = answer_target(tokenizer, candidates, cell_type, template=template)
                k = len(tgt.prefix)
                comp = [ids[k] for c, ids in ans_ids.items()
                        if c != cell_type and len(ids) > k and tuple(ids[:k]) == tuple(tgt.prefix)]
                inputs = [gene_token_spans(tokenizer, build_prompt(c.genes, organism=organism, template=template))[0] + list(tgt.prefix)
                          for c in eval_cells]

                def evaluate() -> Scores:
                    return answer_scores(model, tokenizer, inputs, tgt.token, comp)

                return ablation_runner(mlps, rm.transcoders, evaluate)

            my_types = len(ctx.shard(len(circs)))
            rows = []
            with progress() as bar:
                task = bar.add_task("faithfulness", total=len(rank_by) * my_types * (1 + len(size_list) * (1 + n_random)))
                for rb in dict.fromkeys(rank_by):
                    rows += run_faithfulness(circs, pools, splits, make_runner, replace(cfg, rank_by=rb), ctx,  # type: ignore[arg-type]
                                             callback=lambda k: bar.advance(task, k))
        if ctx.rank == 0:
            paths = write_outputs(out_dir, circs, rows, built.feature_stats)
            for t, c in circs.items():
                nf = sum(n.kind == "feature" for n in c.nodes)
                detail(f"{t}: {nf} features, {sum(n.kind == 'gene' for n in c.nodes)} genes, {len(c.edges)} edges")
            if rows:
                losers = sorted({r["cell_type"] for r in rows if not r["beats_random"]})
                if losers:
                    warn(f"circuit does not beat random ablations for: {', '.join(losers)}")
                _table(rows)
            info(f"wrote {len(paths)} files to {out_dir}")


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from circuitdb.cli.console import console, verbosity

    if verbosity() < 0:
        return
    t = Table(title="faithfulness (mean drop of the target logit over the evaluated cells)")
    for col in ("cell type", "n", "circuit", "random", "ratio", "acc circuit", "acc random"):
        t.add_column(col, justify="left" if col == "cell type" else "right")
    for r in rows:
        ratio = ("inf" if r["circuit_logit_drop"] > 0 else "n/a") if r["ratio"] is None else f"{r['ratio']:.2f}"
        t.add_row(r["cell_type"], str(r["n"]), f"{r['circuit_logit_drop']:.3f}", f"{r['random_logit_drop_mean']:.3f}", ratio,
                  f"{r['circuit_acc_drop']:.2f}", f"{r['random_acc_drop_mean']:.2f}")
    console.print(t)
