"""Automated feature interpretation: where each feature fires, and what its genes are.

Input is :class:`FeatureStats` (plain arrays, built from a model + transcoders
by :func:`circuitdb.interpret.collect.collect_feature_stats`, or by hand in tests).
Output is :class:`Interpretation`: a per-feature table, the enrichment table
and the summary numbers (the paper's "gene-level interpretable" fraction, and
the same fraction for a shuffled-activation control, which should sit near the FDR).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np
import pandas as pd

from circuitdb.interpret.enrichment import Criteria, GeneSetLibrary, auroc_per_label, enrich, interpretable


@dataclass
class FeatureStats:
    """Activation statistics of a set of features over a dataset.

    Attributes
    ----------
    features
        One row per feature: ``feature_id``, ``layer``, ``index``.
    genes
        The gene universe: every gene that occurred in some prompt (upper-case).
    mass
        ``(n_features, n_genes)``: activation summed over every occurrence of the
        gene (a gene's activation is the max over its token span).
    gene_count
        ``(n_genes,)``: number of prompts the gene occurred in.
    cell_values
        ``(n_cells, n_features)``: max activation over the gene positions of each cell.
    cell_ids, labels
        ``(n_cells,)`` cell ids and labels.
    """

    features: pd.DataFrame
    genes: list[str]
    mass: np.ndarray
    gene_count: np.ndarray
    cell_values: np.ndarray
    cell_ids: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        f, g = len(self.features), len(self.genes)
        if self.mass.shape != (f, g):
            raise ValueError(f"mass must be ({f}, {g}), got {self.mass.shape}")
        if self.cell_values.shape != (len(self.cell_ids), f):
            raise ValueError("cell_values must be (n_cells, n_features)")

    def subset(self, rows: np.ndarray) -> "FeatureStats":
        return replace(self, features=self.features.iloc[rows].reset_index(drop=True), mass=self.mass[rows], cell_values=self.cell_values[:, rows])


@dataclass
class Interpretation:
    """Results of :func:`interpret_features`."""

    table: pd.DataFrame
    enrichment: pd.DataFrame
    criteria: Criteria
    n_features: int
    interpretable_fraction: float
    control_fraction: float | None = None
    params: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "n_features": self.n_features,
            "interpretable_fraction": self.interpretable_fraction,
            "control_fraction": self.control_fraction,
            "criteria": {"q": self.criteria.q, "min_odds": self.criteria.min_odds, "min_overlap": self.criteria.min_overlap},
            **self.params,
        }


def top_genes(stats: FeatureStats, *, n: int = 20, min_count: int = 5) -> dict[str, list[str]]:
    """Each feature's top genes by mean activation per occurrence (mass / count).

    Genes seen in fewer than ``min_count`` prompts are ignored (their means are noise);
    only genes with positive mass count.
    """
    count = np.asarray(stats.gene_count, dtype=float)
    ok = count >= min_count
    score = np.where(ok[None, :], stats.mass / np.maximum(count, 1.0)[None, :], 0.0)
    out: dict[str, list[str]] = {}
    genes = np.asarray(stats.genes, dtype=object)
    for i, fid in enumerate(stats.features["feature_id"]):
        row = score[i]
        k = min(n, int((row > 0).sum()))
        if k == 0:
            out[fid] = []
            continue
        idx = np.argpartition(-row, k - 1)[:k]
        idx = idx[np.lexsort((idx, -row[idx]))]
        out[fid] = genes[idx].tolist()
    return out


def shuffled_control(stats: FeatureStats, seed: int = 0) -> FeatureStats:
    """Control: each feature's gene masses permuted among the genes (activations shuffled).

    Firing density and magnitude are kept; the link to gene identity is broken, so
    enrichment found here is false discovery.
    """
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(stats.gene_count > 0)
    mass = stats.mass.copy()
    count = stats.gene_count.astype(float)
    for i in range(mass.shape[0]):
        # shuffle the per-occurrence means, then rescale by each gene's own count
        means = mass[i, eligible] / np.maximum(count[eligible], 1.0)
        mass[i, eligible] = rng.permutation(means) * count[eligible]
    return replace(stats, mass=mass)


def _auto_label(best: pd.Series | None, spec_label: str | None, spec_auc: float | None) -> str:
    if best is not None:
        kind = {"markers": "marker", "regulons": "regulon"}.get(best["library"], best["library"])
        return f"{kind}:{best['term']} ({int(best['overlap'])} genes, q={best['q']:.1e})"
    if spec_label is not None and spec_auc is not None:
        return f"fires in {spec_label} (AUROC {spec_auc:.2f})"
    return "uninterpreted"


def interpret_features(
    stats: FeatureStats,
    libraries: Iterable[GeneSetLibrary],
    *,
    criteria: Criteria = Criteria(),
    n_top_genes: int = 20,
    min_count: int = 5,
    n_top_cells: int = 10,
    specificity_auroc: float = 0.8,
    control_seed: int | None = 0,
) -> Interpretation:
    """Interpret every feature of ``stats``.

    Per feature: top genes, density, top cells and their label distribution,
    AUROC per label (cell-type specificity), enrichment of the top genes (BH over
    all tests), gene-level interpretability and a short automatic label. With
    ``control_seed`` set, the same pipeline runs on :func:`shuffled_control` and
    its interpretable fraction is reported as ``control_fraction``.
    """
    libraries = list(libraries)
    tops = top_genes(stats, n=n_top_genes, min_count=min_count)
    enr = enrich(tops, libraries, stats.genes)
    hits = interpretable(enr, criteria)
    best = hits.groupby("feature", sort=False).head(1).set_index("feature") if not hits.empty else pd.DataFrame()
    auc = auroc_per_label(stats.cell_values, stats.labels)
    active = stats.cell_values > 0
    rows = []
    labels = np.asarray(stats.labels).astype(str)
    for i, feat in enumerate(stats.features.itertuples(index=False)):
        fid = feat.feature_id
        vals = stats.cell_values[:, i]
        order = np.argsort(-vals, kind="stable")[:n_top_cells]
        order = order[vals[order] > 0]
        dist = pd.Series(labels[order]).value_counts(normalize=True).round(3).to_dict() if len(order) else {}
        spec_label, spec_auc = None, None
        if not auc.empty:
            j = int(np.argmax(auc.iloc[i].to_numpy()))
            spec_label, spec_auc = str(auc.columns[j]), float(auc.iloc[i, j])
        b = best.loc[fid] if fid in best.index else None
        rows.append(
            {
                "feature_id": fid, "layer": int(feat.layer), "index": int(feat.index),
                "density": float(active[:, i].mean()) if active.shape[0] else 0.0,
                "top_genes": tops.get(fid, []),
                "top_cells": [str(c) for c in np.asarray(stats.cell_ids)[order]],
                "top_cell_labels": dist,
                "best_label": spec_label, "best_auroc": spec_auc,
                "cell_type_specific": bool(spec_auc is not None and spec_auc >= specificity_auroc),
                "gene_level_interpretable": b is not None,
                "best_term": None if b is None else f"{b['library']}:{b['term']}",
                "best_q": None if b is None else float(b["q"]),
                "label": _auto_label(b, spec_label if spec_auc is not None and spec_auc >= specificity_auroc else None, spec_auc),
            }
        )
    table = pd.DataFrame(rows)
    n = len(table)
    frac = float(table["gene_level_interpretable"].mean()) if n else 0.0
    control = None
    if control_seed is not None and n:
        ctl = shuffled_control(stats, control_seed)
        ctl_hits = interpretable(enrich(top_genes(ctl, n=n_top_genes, min_count=min_count), libraries, stats.genes), criteria)
        control = ctl_hits["feature"].nunique() / n
    return Interpretation(
        table=table, enrichment=enr, criteria=criteria, n_features=n, interpretable_fraction=frac, control_fraction=control,
        params={"n_top_genes": n_top_genes, "min_count": min_count, "libraries": [lib.name for lib in libraries]},
    )
