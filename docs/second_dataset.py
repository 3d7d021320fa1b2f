"""Regenerate ``docs/second_dataset.md``: the celltypist PBMC sample as a second dataset, diffed against pbmc68k_reduced.

Run from the repository root (nothing here is hand-written into the document: rerun it
whenever either dataset's circuits change, e.g. after regenerating the pbmc68k circuits)::

    python docs/second_dataset.py [--work /tmp/circuitdb-second] [--out docs/second_dataset.md]

1. ``WORK/celltypist.h5ad`` and ``WORK/celltypist_labelled.h5ad`` are made when missing, with
   ``circuitdb datasets fetch celltypist-sample`` (pip download of the wheel, cached in ``WORK``)
   and ``circuitdb predict --write-obs predicted_type`` (the shipped demo model);
2. the circuits of both datasets (``--circuits-a``: the shipped pbmc68k_reduced circuits,
   ``--circuits-b``: the shipped celltypist circuits, built by the command in ``CIRCUITS_CMD``)
   are exported into a fresh embedded graph under ``WORK/graph`` (stopped at the end);
3. every shared cell type is diffed (``circuitdb.queries.dataset_diffs``: the library queries
   behind ``circuitdb diff --dataset A --vs-dataset B`` and ``gene_influence_change``),
   and the tables are written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LABEL_KEY = "predicted_type"
TOP_K = int(json.loads((ROOT / "circuitdb/demo_data/model/circuitdb.json").read_text())["top_k"])  # the demo model's top-k
DATASET_A = "pbmc68k_reduced"
DATASET_B = "celltypist_pbmc_sample"
CIRCUITS_CMD = (
    "OMP_NUM_THREADS=1 nice -n 10 python -m torch.distributed.run --nproc_per_node 2 -m circuitdb circuits "
    "WORK/celltypist_labelled.h5ad --model circuitdb/demo_data/model --transcoders circuitdb/demo_data/transcoders "
    f"--label-key {LABEL_KEY} --cells-per-type 32 --max-feature-nodes 500 --dataset-name {DATASET_B} "
    '--dataset-source "celltypist==1.7.1 wheel, celltypist/data/samples/sample_cell_by_gene.csv '
    '(circuitdb datasets fetch celltypist-sample); labels: demo-model predictions" '
    "--rank-by influence --rank-by effect --out CIRCUITS_B && rm CIRCUITS_B/feature_stats.json"
)
#: Coarse lineage markers, for a sanity check of the model's labels (not ground truth).
MARKERS = {
    "monocyte": ["CD14", "LYZ", "S100A8", "S100A9", "FCN1", "VCAN"],
    "T": ["CD3E", "CD3D", "CD2", "IL7R", "TRAC", "LCK"],
    "B": ["MS4A1", "CD79A", "CD79B", "CD19"],
    "NK": ["NKG7", "GNLY", "KLRD1", "PRF1", "KLRF1"],
    "platelet": ["PPBP", "PF4"],
}
#: The lineage each demo-model answer belongs to (CD34+ progenitors and dendritic cells have no marker set above).
LINEAGE = {
    "CD14+ Monocyte": "monocyte", "CD19+ B": "B", "CD56+ NK": "NK", "CD4+/CD25 T Reg": "T",
    "CD4+/CD45RA+/CD25- Naive T": "T", "CD4+/CD45RO+ Memory": "T", "CD8+ Cytotoxic T": "T",
    "CD8+/CD45RA+ Naive Cytotoxic": "T",
}


def cli(*args: str) -> None:
    """Run ``python -m circuitdb ARGS`` (progress hidden); stop on failure."""
    subprocess.run([sys.executable, "-m", "circuitdb", "--hide-progress", *args], check=True, cwd=ROOT)


def make_data(work: Path) -> Path:
    raw, labelled = work / "celltypist.h5ad", work / "celltypist_labelled.h5ad"
    if not raw.is_file():
        cli("datasets", "fetch", "celltypist-sample", "--dest", str(work), "--out", str(raw))
    if not labelled.is_file():
        cli("predict", "--model", str(ROOT / "circuitdb/demo_data/model"), str(raw), "--write-obs", LABEL_KEY,
            "--out-h5ad", str(labelled))
    return labelled


def fmt(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{nd}f}"
    return str(x)


def table(rows: list[list[Any]], head: list[str], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(head)))
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def data_section(adata: Any) -> list[str]:
    import scanpy as sc

    from circuitdb.loaders.sentences import SentenceOptions, cell_sentences

    rep = adata.uns["circuitdb_dataset"]
    norm = rep["normalisation"]
    pbmc = sc.datasets.pbmc68k_reduced()
    panel = {str(g).upper() for g in pbmc.raw.var_names}
    pbmc_expr = np.asarray((pbmc.raw.X > 0).sum(1)).ravel()
    top40, _ = cell_sentences(adata, SentenceOptions(top_k=TOP_K, layer="X"))
    frac_in = np.array([np.mean([g in panel for g in s.genes]) for s in top40])
    oov = Counter(g for s in top40 for g in s.genes if g not in panel)
    oov_top = ", ".join(f"*{g}* ({100 * n / len(top40):.0f}%)" for g, n in oov.most_common(6))
    counts = adata.layers["counts"]
    in_panel = adata.var["in_panel"].to_numpy()
    share = np.asarray(counts[:, in_panel].sum(1)).ravel() / np.asarray(counts.sum(1)).ravel()
    e = rep["expressed_raw_genes_per_cell"]
    return [
        "## Data and normalisation",
        "",
        f"* **Source.** `celltypist/data/samples/sample_cell_by_gene.csv` in the `{rep.get('wheel', 'celltypist==1.7.1')}` wheel on PyPI "
        f"(CSV sha256 `{rep['sha256'][:16]}…`): {rep['n_cells_read']} cells x {rep['n_genes_read']:,} genes, raw UMI counts "
        "(cells in rows, gene symbols in the header), no labels. `circuitdb datasets fetch celltypist-sample --out x.h5ad` runs "
        "`pip download --no-deps --only-binary :all: celltypist==1.7.1` into a cache folder (`--dest`; celltypist is never installed, "
        "a cached wheel needs no network), reads the CSV out of the wheel and writes the AnnData atomically. "
        "A failed download (no network, no pip) is a one-line error, exit 2.",
        f"* **Normalisation, the C2S way** (vandijklab/cell2sentence, tutorial 0): cells with < {norm['min_genes']:.0f} expressed genes "
        f"and genes expressed in < {norm['min_cells']:.0f} cells are dropped (`sc.pp.filter_cells/filter_genes`), counts are scaled to "
        f"{norm['target_sum']:.0f} per cell (`sc.pp.normalize_total`) and log-transformed with `log1p` in base {norm['log_base']:.0f} "
        "(`sc.pp.log1p(base=10)`, C2S's one deviation from scanpy's defaults; a test checks the result against scanpy). "
        f"Kept: {rep['n_cells']} cells, {rep['n_genes']:,} genes. Both steps are monotone within a cell, so they never change a "
        "cell sentence (ranking normalised values = ranking counts; ties are broken by the seeded rule of `circuitdb.loaders.sentences`).",
        "* **Layout.** `X`: log-normalised values of every kept gene; `layers['counts']`: the raw counts; "
        "`.raw`: the log-normalised values of the model's genes only (below); `uns['circuitdb_dataset']`: this report; "
        "`obs`: `n_counts`, `n_genes`, `n_raw_genes`.",
        "",
        "### Gene overlap with the demo model",
        "",
        f"The demo model's vocabulary is the {rep['n_panel']} genes of `pbmc68k_reduced.raw` (it was trained on nothing else). Its byte-level BPE "
        "tokenizer has no unknown token: any other symbol would still be split into sub-word tokens and enter the prompt as a string "
        "the model never saw as a gene. So the loader keeps only the panel genes in `.raw`, which is what `circuitdb "
        "sentences/predict/circuits` read (as `pbmc68k_reduced.raw`, they are log-normalised against the cell's full library). "
        "`--genes all` keeps every gene in `.raw` instead.",
        "",
        table([
            ["panel genes (pbmc68k_reduced .raw)", rep["n_panel"]],
            ["... present in the celltypist CSV (case-insensitive)", rep["n_panel_in_data"]],
            ["... missing from it", ", ".join(map(str, rep["panel_missing"])) or "none"],
            [f"... dropped by the C2S gene filter (< {norm['min_cells']:.0f} cells)", rep["n_panel_filtered"]],
            ["genes in `.raw` (what prompts can hold)", rep["n_raw_genes"]],
            ["panel genes expressed per cell: celltypist (min / median / max)", f"{e['min']:.0f} / {e['median']:.0f} / {e['max']:.0f}"],
            ["panel genes expressed per cell: pbmc68k_reduced (min / median / max)",
             f"{pbmc_expr.min():.0f} / {np.median(pbmc_expr):.0f} / {pbmc_expr.max():.0f}"],
            ["share of a cell's counts in panel genes (median)", f"{np.median(share):.3f}"],
            [f"of a cell's {TOP_K} most expressed genes (all genes), share in the panel (median; min-max)",
             f"{np.median(frac_in):.3f} ({frac_in.min():.3f}-{frac_in.max():.3f})"],
        ], ["", "value"]),
        "",
        f"The last two rows are what restricting `.raw` costs: without it, a median {100 * (1 - np.median(frac_in)):.0f}% of a "
        f"cell's top-{TOP_K} sentence (the demo model's top-k) would be genes the model has never seen; the most frequent "
        f"(share of cells): {oov_top}. " + (f"With it, every cell still has at least {e['min']:.0f} expressed panel genes, more than the {TOP_K} a "
                            "prompt holds." if e["min"] >= TOP_K else
                            f"With it, {int((adata.obs['n_raw_genes'] < TOP_K).sum())} cells have fewer than the {TOP_K} panel genes a "
                            "prompt can hold, so their prompts are shorter."),
        "",
    ]


def labels_section(adata: Any) -> list[str]:
    obs = adata.obs
    pred = obs[LABEL_KEY].astype(object)
    margin = obs[f"{LABEL_KEY}_margin"]
    types = list(obs[LABEL_KEY].cat.categories)
    top_k = int(adata.uns[LABEL_KEY]["params"]["top_k"])
    n = len(obs)
    rows = []
    for t in sorted(types, key=lambda t: (-(pred == t).sum(), t)):
        m = pred == t
        rows.append([t, int(m.sum()), f"{100 * m.sum() / n:.1f}%", fmt(float(margin[m].median()) if m.any() else None, 2)])
    rows.append(["(no prediction: no expressed panel gene)", int(pred.isna().sum()), f"{100 * pred.isna().mean():.1f}%", "-"])
    # coarse marker check on all genes (X)
    names = list(map(str, adata.var_names))
    x = adata.X
    scores = {}
    for lin, genes in MARKERS.items():
        cols = [names.index(g) for g in genes if g in names]
        scores[lin] = np.asarray(x[:, cols].mean(1)).ravel() if cols else np.zeros(n)
    marker = pd.DataFrame(scores, index=obs.index).idxmax(axis=1)
    mapped = pred.map(LINEAGE)
    comparable = mapped.notna() & marker.isin(set(LINEAGE.values()))
    agree = float((mapped[comparable] == marker[comparable]).mean()) if comparable.any() else float("nan")
    ct = pd.crosstab(pred.fillna("(none)"), marker)
    ct_rows = [[t] + [int(ct.loc[t, c]) if c in ct.columns else 0 for c in MARKERS] for t in ct.index]
    return [
        "## Labels: the demo model's predictions",
        "",
        f"The sample has no labels, so each cell is labelled with the shipped demo model's prediction: the {len(types)} candidate "
        f"answers are scored by summed answer-token log-probability on the cell's top-{top_k} panel genes (`circuitdb predict`, "
        "no free generation):",
        "",
        "```",
        f"circuitdb predict --model circuitdb/demo_data/model WORK/celltypist.h5ad --write-obs {LABEL_KEY} --out-h5ad WORK/celltypist_labelled.h5ad",
        "```",
        "",
        f"`--write-obs KEY --out-h5ad FILE` writes a copy of the data with the prediction in `obs['{LABEL_KEY}']` (categorical over "
        f"the model's {len(types)} types) and the margin over the runner-up in `obs['{LABEL_KEY}_margin']` (log-probability), atomically.",
        "",
        table(rows, ["predicted type", "cells", "share", "median margin"]),
        "",
        "**Sanity check against marker genes** (not ground truth): each cell's coarse lineage is the marker set with the highest "
        "mean log-normalised expression over *all* genes (`X`): " + "; ".join(f"{k}: {', '.join(v)}" for k, v in MARKERS.items()) + ". "
        f"Where both sides name a lineage (dendritic and CD34+ predictions and platelet-marker cells excluded: "
        f"{int(comparable.sum())} cells), the model's lineage agrees with the markers for **{100 * agree:.1f}%** of cells.",
        "",
        table(ct_rows, ["predicted type \\ marker lineage", *MARKERS]),
        "",
    ]


def circuits_section(circuits_b: Path) -> list[str]:
    from circuitdb.attribution.circuit import Circuit

    rows = []
    for p in sorted(circuits_b.glob("circuit-*.json")):
        c = Circuit.load(p)
        rows.append([c.provenance.cell_type, len(c.provenance.cells), sum(n.kind == "feature" for n in c.nodes),
                     sum(n.kind == "gene" for n in c.nodes), len(c.edges)])
    faith_path = circuits_b / "faithfulness.json"
    frows: list[list[Any]] = []
    if faith_path.is_file():
        faith = json.loads(faith_path.read_text())
        for rb in ("influence", "effect"):
            for size in sorted({r["n"] for r in faith}):
                part = [r for r in faith if r["rank_by"] == rb and r["n"] == size]
                if not part:
                    continue
                ratios = [r["ratio"] for r in part if r["ratio"] is not None]
                frows.append([rb, size, f"{sum(r['beats_random'] for r in part)}/{len(part)}",
                              fmt(float(np.mean([r["circuit_logit_drop"] for r in part]))),
                              fmt(float(np.mean([r["random_logit_drop_mean"] for r in part]))),
                              fmt(float(np.median(ratios)), 2) if ratios else "-"])
        evals = Counter()
        for r in faith:
            evals[(r["cell_type"], r["eval_cells"])] = r["n_cells"]
    per_type_eval = {t: f"{n} ({kind})" for (t, kind), n in evals.items()} if faith_path.is_file() else {}
    rows = [r[:2] + [per_type_eval.get(r[0], "-")] + r[2:] for r in rows]
    return [
        "## Circuits",
        "",
        "Built with the shipped demo model and transcoders, exactly as the pbmc68k_reduced circuits (`docs/faithfulness.md`), "
        f"with the predicted types as labels (`--label-key {LABEL_KEY}`), shipped in `circuitdb/demo_data/circuits_celltypist/`:",
        "",
        "```",
        CIRCUITS_CMD,
        "```",
        "",
        "`feature_stats.json` (dataset-wide feature density and top genes) is not shipped for this dataset: a feature is one "
        "node shared by both datasets, and its stored density/top genes stay those of the model's own training data.",
        "The held-out rule (obs positions 0, 5, 10, ... are evaluated, the others attributed) is applied as for pbmc68k_reduced, "
        "although the model saw none of these cells; types with fewer cells use what they have.",
        "",
        table(rows, ["cell type", "cells attributed", "cells evaluated", "features", "genes", "edges"]),
        "",
        "Faithfulness (the circuit's top-n features ablated vs 20 random sets of active features, on the evaluated cells):",
        "",
        table(frows, ["ranked by", "n", "circuit beats random", "mean circuit logit drop", "mean random logit drop", "median ratio"]),
        "",
    ]


def diff_section(graph: Any, a: str, b: str, top_edges: int, top_genes: int) -> list[str]:
    from circuitdb.queries import dataset_diffs

    diffs = dataset_diffs(graph, a, b, top_genes=top_genes, top_edges=top_edges)
    summary, parts = [], []
    for d in diffs:
        c, f = d.diff.counts(), d.diff.counts("features")
        jac = f["both"] / max(1, sum(f.values()))
        na, nb = d.diff.a.get("n_cells"), d.diff.b.get("n_cells")
        summary.append([d.cell_type, f"{na} / {nb}", c["only_a"], c["only_b"], c["both"], f["only_a"], f["only_b"], f["both"], f"{jac:.2f}"])
        erows = [[r["status"], r["type"], r["source"], r["target"], fmt(r["weight_a"]), fmt(r["weight_b"]), fmt(r["delta"])]
                 for r in d.diff.edges.head(top_edges).to_dict("records")]
        grows = [[r["gene"], fmt(r["influence_a"]), fmt(r["influence_b"]), fmt(r["delta"])] for r in d.genes.to_dict("records")]
        parts += [f"### {d.cell_type}", "",
                  f"Top {len(erows)} edge changes (by |delta|; weights A = {DATASET_A}, B = {DATASET_B}):", "",
                  table(erows, ["status", "type", "source", "target", "weight A", "weight B", "delta"], right={4, 5, 6}), "",
                  f"Genes whose influence on {d.cell_type} changes most (`gene_influence_change`; absent = 0):", "",
                  table(grows, ["gene", "influence A", "influence B", "delta (B - A)"]), ""]
    shared = [d.cell_type for d in diffs]
    return [
        f"## Cross-dataset diffs: {DATASET_A} (A) vs {DATASET_B} (B)",
        "",
        f"Dataset ids: A = `{a}`, B = `{b}`. Both circuit folders exported into one graph (`circuitdb export DIR` twice; "
        "the ids are deterministic, so features, genes, heads and cell types are shared nodes). Per shared cell type:",
        "",
        "```",
        f'circuitdb diff --cell-type "CD14+ Monocyte" --dataset {DATASET_A} --vs-dataset {DATASET_B} --json',
        f'circuitdb query gene_influence_change --param "cell_type=CD14+ Monocyte" --param dataset_a={a} --param dataset_b={b}',
        "```",
        "",
        "(`--dataset`/`--vs-dataset` take a dataset id or its name; the library query takes ids.) "
        f"{len(shared)} cell types have circuits in both datasets. Edges are the circuit's weighted relationships "
        "(gene -> feature, feature -> feature, feature -> cell type, gene -> cell type); features are its feature nodes; "
        "Jaccard = shared features / all features of the two circuits.",
        "",
        table(summary, ["cell type", "cells A / B", "edges only A", "edges only B", "edges both", "features only A",
                        "features only B", "features both", "feature Jaccard"]),
        "",
        *parts,
    ]


def caveats(adata: Any) -> list[str]:
    rep = adata.uns["circuitdb_dataset"]
    pred = adata.obs[LABEL_KEY].astype(object)
    small = sorted(t for t, n in pred.value_counts().items() if n < 20)
    return [
        "## Caveats",
        "",
        "* **Labels are model predictions**, not annotations. A circuit of type T in this dataset is the circuit of the cells "
        "the model *calls* T, so it is biased towards the model's own reading; cells it mislabels (see the marker check) sit "
        "in the wrong circuit. A diff against pbmc68k_reduced (whose labels are the annotations the model was trained on) "
        "mixes biology, batch (another 10x run, other depth) and label noise.",
        f"* **Small types**: {', '.join(small) or 'none'} have fewer than 20 predicted cells, so their circuits average few "
        "attributed cells and their faithfulness rests on a handful of evaluated cells; treat their diffs as anecdotes.",
        f"* **Gene panel**: prompts hold only the model's {rep['n_panel']} genes ({rep['n_raw_genes']} after the C2S gene "
        "filter); the other genes of a cell, most of its library, are invisible to the model and to its circuits.",
        "* **No held-out meaning**: the model was trained on no cell of this dataset; the position split only keeps the "
        "attributed and the evaluated cells apart.",
        "* The pbmc68k_reduced circuits are whatever `--circuits-a` holds when this file is generated (cells per type in the "
        "summary table); rerun the script after they change.",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/circuitdb-second"), help="working folder (data, graph)")
    ap.add_argument("--data", type=Path, default=None, help="labelled celltypist .h5ad (default: made in WORK)")
    ap.add_argument("--circuits-a", type=Path, default=ROOT / "circuitdb/demo_data/circuits")
    ap.add_argument("--circuits-b", type=Path, default=ROOT / "circuitdb/demo_data/circuits_celltypist")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/second_dataset.md")
    ap.add_argument("--top-edges", type=int, default=5)
    ap.add_argument("--top-genes", type=int, default=8)
    args = ap.parse_args(argv)

    import anndata

    from circuitdb.config import Settings
    from circuitdb.graph import arcade
    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.schema import apply_schema
    from circuitdb.graph.writer import export_dir
    from circuitdb.queries import dataset_ids

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data or make_data(args.work)
    adata = anndata.read_h5ad(data)
    graph_dir = args.work / "graph"
    shutil.rmtree(graph_dir, ignore_errors=True)
    settings = Settings(neo4j_uri=None, embedded_dir=graph_dir, embedded_idle_s=600)
    try:
        with open_backend(settings) as graph:
            apply_schema(graph)
            for folder in (args.circuits_a, args.circuits_b):
                export_dir(graph, folder)
            ids = dataset_ids(graph)
            a = next(i for i, n in ids.items() if n == DATASET_A)
            b = next(i for i, n in ids.items() if n == DATASET_B)
            diff_lines = diff_section(graph, a, b, args.top_edges, args.top_genes)
    finally:
        arcade.stop_server(graph_dir)
    lines = [
        "# A second real dataset: the celltypist PBMC sample",
        "",
        "<!-- generated by docs/second_dataset.py; edit that script, not this file -->",
        "",
        "Cross-dataset circuit diffs need two datasets. Besides `pbmc68k_reduced` (the demo model's training data), this is the "
        "raw-count PBMC sample that ships inside the `celltypist` wheel, normalised the cell2sentence way, labelled by the demo "
        "model, traced into circuits with the shipped transcoders and diffed against pbmc68k_reduced cell type by cell type.",
        f"Regenerate with `python docs/second_dataset.py` (WORK = `--work`, default `/tmp/circuitdb-second`).",
        "",
        *data_section(adata),
        *labels_section(adata),
        *circuits_section(args.circuits_b),
        *diff_lines,
        *caveats(adata),
    ]
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
