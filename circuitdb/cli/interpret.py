"""``circuitdb interpret``: automated, statistically tested interpretation of transcoder features."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from circuitdb.cli.console import console, detail, emit_json, info, progress


def _layers(text: str) -> list[int] | None:
    from circuitdb.errors import InputError

    if text.strip().lower() == "all":
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise InputError(f"--layers {text!r} is not 'all', '0,2' or '1-3'; pass e.g. --layers all") from None
    return sorted(set(out))


def _write_outputs(out: Path, interp: Any, summary: dict[str, Any]) -> list[Path]:
    """interpretation.{parquet,csv}, enrichment.parquet, summary.json; each written to a temp file, then renamed."""
    out.mkdir(parents=True, exist_ok=True)
    table = interp.table.copy()
    table["top_cell_labels"] = table["top_cell_labels"].map(lambda d: json.dumps(d, sort_keys=True))
    csv_table = table.copy()
    for col in ("top_genes", "top_cells"):
        csv_table[col] = csv_table[col].map(lambda xs: ";".join(map(str, xs)))
    written = []

    def atomic(name: str, write: Any) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, out / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(out / name)

    atomic("interpretation.parquet", lambda p: table.to_parquet(p, index=False))
    atomic("interpretation.csv", lambda p: csv_table.to_csv(p, index=False))
    atomic("enrichment.parquet", lambda p: interp.enrichment.to_parquet(p, index=False))
    atomic("summary.json", lambda p: Path(p).write_text(json.dumps(summary, indent=2, default=str) + "\n"))
    return written


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="The C2S model directory.")
@click.option("--transcoders", "tc_dir", required=True, type=click.Path(path_type=Path),
              help="Transcoder set directory ({dir}/layer_{i}/ + transcoders.json).")
@click.option("--label-key", required=True, help="obs column with cell-type labels (markers and specificity).")
@click.option("--gene-sets", "gmt_files", multiple=True, type=click.Path(path_type=Path), help="GMT file (repeatable).")
@click.option("--grn", "grn_file", type=click.Path(path_type=Path), default=None, help="GRN table: its TF regulons become a library.")
@click.option("--grn-format", type=click.Choice(("decoupler", "scenic", "omnipath")), default=None, help="Format of --grn.")
@click.option("--grn-name", default=None, help="Use the regulons of a GRN already imported into the graph.")
@click.option("--n-features", default=200, show_default=True, type=click.IntRange(0),
              help="Features sampled across layers among those active at least once (0: every active feature).")
@click.option("--layers", "layers_text", default="all", show_default=True, help="Layers: all, '0,2' or '1-3'.")
@click.option("--cells", "which_cells", type=click.Choice(("all", "heldout")), default="all", show_default=True,
              help="Cells the statistics come from: all, or the held-out ones (every 5th obs position).")
@click.option("--max-cells", default=None, type=click.IntRange(1), help="Use at most this many cells (first ones).")
@click.option("--top-k", default=None, type=click.IntRange(1), help="Genes per cell sentence (default: the model's, else 200).")
@click.option("--symbol-key", default=None, help="var column with gene symbols (default: var_names).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the sampling and of the control.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for interpretation.{parquet,csv}, enrichment.parquet and summary.json.")
@click.option("--random-control", is_flag=True,
              help="Also interpret as many random encoder directions (same norms and biases): a representation baseline.")
@click.option("--no-graph", is_flag=True, help="Do not write labels and ENRICHED_FOR edges into the graph.")
@click.option("--json", "as_json", is_flag=True, help="Print {n_features, interpretable_fraction, control_fraction, ...}.")
@click.pass_context
def interpret(ctx: click.Context, data: Path, model_dir: Path, tc_dir: Path, label_key: str, gmt_files: tuple[Path, ...],
              grn_file: Path | None, grn_format: str | None, grn_name: str | None, n_features: int, layers_text: str,
              which_cells: str, max_cells: int | None, top_k: int | None, symbol_key: str | None, seed: int,
              out_dir: Path | None, random_control: bool, no_graph: bool, as_json: bool) -> None:
    """Interpret transcoder features on DATA: where they fire, what their top genes are enriched for
    (dataset markers, GRN regulons, GMT sets; hypergeometric, BH across all tests), cell-type
    specificity, and the fraction that is gene-level interpretable against a shuffled control."""
    import time

    from circuitdb.errors import InputError, UsageError
    from circuitdb.interpret.enrichment import read_gmt
    from circuitdb.loaders.io import read_anndata

    t0 = time.perf_counter()
    if grn_file is not None and grn_name is not None:
        raise UsageError("give either --grn FILE or --grn-name NAME, not both")
    layers = _layers(layers_text)
    # -- validate every input before any work or write ------------------------------------
    for g in gmt_files:
        read_gmt(g)
    regulons = None
    grn_label = None
    if grn_file is not None:
        from circuitdb.loaders.grn import read_grn

        network = read_grn(grn_file, format=grn_format)  # type: ignore[arg-type]
        regulons, grn_label = network.regulons(), network.name
    adata = read_anndata(data, backed=False)
    if label_key not in adata.obs.columns:
        raise InputError(f"--label-key {label_key!r} is not an obs column of {data}; columns: {', '.join(map(str, adata.obs.columns))}")
    from circuitdb.interpret.run import (
        active_features, build_libraries, choose_cells, feature_ids, load_transcoder_dir, random_direction_transcoders,
        sample_features, subset_stats, transcoder_hash,
    )

    meta_path = model_dir / "circuitdb.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    transcoders = load_transcoder_dir(tc_dir, layers)
    tc_hash = transcoder_hash(transcoders)

    from circuitdb.loaders.model import load_model
    from circuitdb.loaders.sentences import SentenceOptions, iter_cell_sentences

    loaded = load_model(model_dir)
    opts = SentenceOptions(top_k=top_k or int(meta.get("top_k", 0) or 0) or 200, label_key=label_key, symbol_key=symbol_key,
                           organism=str(meta.get("organism", "human")))
    from circuitdb.loaders.prompts import DEFAULT_ANSWER, PromptTemplate

    template = PromptTemplate(prompt=meta["prompt_template"], answer=meta.get("answer_template", DEFAULT_ANSWER)) \
        if meta.get("prompt_template") else PromptTemplate()
    cells = choose_cells(list(iter_cell_sentences(adata, opts)), which_cells)  # type: ignore[arg-type]
    if max_cells is not None:
        cells = cells[:max_cells]
    if not cells:
        raise InputError(f"no cells to run in {data} (--cells {which_cells}); check the data")

    graph = None
    if not no_graph or grn_name is not None:
        from circuitdb.cli.db import settings_from_ctx
        from circuitdb.graph.backend import open_backend

        graph = open_backend(settings_from_ctx(ctx))
    try:
        if grn_name is not None:
            from circuitdb.queries import run_rows

            edges = run_rows(graph, "grn_edges", {"grn": grn_name})  # type: ignore[arg-type]
            if not edges:
                raise InputError(f"no GRN named {grn_name!r} in the graph (or it has no edges); import it with 'circuitdb grn import'")
            regulons = {}
            for e in edges:
                regulons.setdefault(str(e["tf"]).upper(), []).append(str(e["target"]).upper())
            grn_label = grn_name
        libs = build_libraries(adata, label_key, regulons=regulons, grn_name=grn_label, gmt_files=gmt_files)

        import torch

        from circuitdb.interpret.collect import collect_feature_stats
        from circuitdb.interpret.features import interpret_features

        with progress() as bar:
            task = bar.add_task(f"run {len(cells)} cells through {len(transcoders)} transcoder(s)", total=len(cells))
            with torch.inference_mode():
                stats_all = collect_feature_stats(loaded.model, loaded.tokenizer, transcoders, cells, organism=opts.organism,
                                                  template=template, on_cell=lambda _c: bar.advance(task))
        active = active_features(stats_all)
        n_active = sum(len(v) for v in active.values())
        if n_active == 0:
            raise InputError(f"no feature of {tc_dir} fires on these cells; check that the transcoders belong to --model")
        chosen = sample_features(active, n_features or None, seed)
        stats = subset_stats(stats_all, chosen)
        ids = feature_ids(stats, tc_hash)
        stats.features = stats.features.assign(feature_id=ids)
        detail(f"{n_active} active feature(s); interpreting {len(ids)}")
        interp = interpret_features(stats, libs.libraries, control_seed=seed)
        summary = {
            **interp.summary(),
            "n_active_features": n_active,
            "n_features_total": int(sum(t.cfg.d_features for t in transcoders.values())),
            "features_per_layer": {str(l): int(len(v)) for l, v in chosen.items()},
            "n_cells": len(cells), "cells": which_cells, "seed": seed, "transcoder_hash": tc_hash[:16],
            "library_sizes": {lib.name: len(lib.restricted(set(stats.genes)).sets) for lib in libs.libraries},
            "library_sources": libs.sources, "n_tests": int(len(interp.enrichment)),
            "n_cell_type_specific": int(interp.table["cell_type_specific"].sum()),
        }
        if random_control:
            rand_tcs = random_direction_transcoders(transcoders, seed)
            with progress() as bar:
                task = bar.add_task("random-direction control", total=len(cells))
                with torch.inference_mode():
                    rstats_all = collect_feature_stats(loaded.model, loaded.tokenizer, rand_tcs, cells, organism=opts.organism,
                                                       template=template, on_cell=lambda _c: bar.advance(task))
            ractive = active_features(rstats_all)
            rstats = subset_stats(rstats_all, sample_features(ractive, len(ids), seed))
            rinterp = interpret_features(rstats, libs.libraries, control_seed=None)
            summary["random_directions_fraction"] = rinterp.interpretable_fraction
            summary["random_directions_n"] = rinterp.n_features
        store = None
        if not no_graph:
            from circuitdb.graph.schema import apply_schema
            from circuitdb.interpret.store import store_interpretation

            apply_schema(graph)  # type: ignore[arg-type]
            store = store_interpretation(graph, interp, tc_hash)  # type: ignore[arg-type]
            summary["graph"] = {"features": store.features, "gene_sets": store.gene_sets, "enriched_for": store.enriched_for}
    finally:
        if graph is not None:
            graph.close()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if out_dir is not None:
        _write_outputs(out_dir, interp, summary)
    if as_json:
        emit_json(summary)
        return
    ctl = summary["control_fraction"]
    info(f"{summary['n_features']} feature(s) over {len(cells)} cells: gene-level interpretable "
         f"{summary['interpretable_fraction']:.1%} (shuffled control {ctl:.1%}; criteria q < {interp.criteria.q}, "
         f"odds >= {interp.criteria.min_odds}, overlap >= {interp.criteria.min_overlap})")
    if "random_directions_fraction" in summary:
        info(f"random encoder directions: {summary['random_directions_fraction']:.1%} of {summary['random_directions_n']}")
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="interpretable features (first 20)")
    for col in ("feature", "label", "top genes"):
        table.add_column(col)
    shown = interp.table[interp.table["gene_level_interpretable"]].head(20)
    for r in shown.itertuples(index=False):
        table.add_row(escape(r.feature_id), escape(r.label), escape(", ".join(r.top_genes[:6])))
    if len(shown):
        console.print(table)
    if out_dir is not None:
        info(f"tables written to {out_dir}")
    if store is not None:
        info(f"graph: {store.features} Feature label(s), {store.gene_sets} GeneSet(s), {store.enriched_for} ENRICHED_FOR edge(s)")

