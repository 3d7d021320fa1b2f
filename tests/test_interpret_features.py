import numpy as np
import pandas as pd

from circuitdb.interpret.enrichment import GeneSetLibrary
from circuitdb.interpret.features import FeatureStats, interpret_features, shuffled_control, top_genes


def _synthetic(n_features=200, n_planted=40, n_genes=600, n_cells=300, seed=0):
    """Features 0..n_planted-1 fire on the genes of a known set; the rest fire on random genes."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(n_genes)]
    sets = {f"S{j}": frozenset(rng.choice(genes, 25, replace=False).tolist()) for j in range(50)}
    count = rng.integers(5, 200, n_genes)
    mass = np.zeros((n_features, n_genes))
    planted = {}
    for f in range(n_features):
        noise = rng.random(n_genes) < 0.05
        mean = np.where(noise, rng.random(n_genes), 0.0)
        if f < n_planted:
            term = f"S{f % 50}"
            idx = [genes.index(g) for g in sorted(sets[term])]
            mean[idx] = 2.0 + rng.random(len(idx))
            planted[f"f{f}"] = term
        mass[f] = mean * count
    labels = rng.choice(["A", "B"], n_cells)
    cell_values = rng.random((n_cells, n_features)) * (rng.random((n_cells, n_features)) < 0.3)
    cell_values[labels == "A", 0] += 3.0  # feature 0 is specific to A
    stats = FeatureStats(
        features=pd.DataFrame({"feature_id": [f"f{f}" for f in range(n_features)], "layer": 0, "index": range(n_features)}),
        genes=genes, mass=mass, gene_count=count, cell_values=cell_values,
        cell_ids=np.array([f"c{i}" for i in range(n_cells)]), labels=labels,
    )
    return stats, GeneSetLibrary("gmt", sets), planted


def test_planted_features_found_and_control_near_fdr():
    stats, lib, planted = _synthetic()
    res = interpret_features(stats, [lib])
    t = res.table.set_index("feature_id")
    found = [f for f, term in planted.items() if t.loc[f, "best_term"] == f"gmt:{term}"]
    assert len(found) == len(planted)
    # random features: false discoveries stay at or below 5%
    random_hits = t.loc[[f"f{i}" for i in range(40, 200)], "gene_level_interpretable"].mean()
    assert random_hits <= 0.05
    assert res.interpretable_fraction >= 0.2 - 1e-9
    assert res.control_fraction is not None and res.control_fraction <= 0.05
    assert t.loc["f0", "best_label"] == "A" and t.loc["f0", "cell_type_specific"]
    assert t.loc["f0", "label"].startswith("gmt:")


def test_top_genes_ranked_by_mean_activation_and_min_count():
    stats, _, _ = _synthetic(n_features=2, n_planted=0)
    stats.mass[0] = 0
    stats.mass[0, 3] = 10 * stats.gene_count[3]
    stats.mass[0, 7] = 5 * stats.gene_count[7]
    stats.gene_count[9] = 1
    stats.mass[0, 9] = 100.0
    assert top_genes(stats, n=5, min_count=5)["f0"] == ["G3", "G7"]


def test_shuffled_control_keeps_mass_distribution():
    stats, _, _ = _synthetic(n_features=3, n_planted=3)
    ctl = shuffled_control(stats, seed=1)
    means = stats.mass / stats.gene_count
    ctl_means = ctl.mass / ctl.gene_count
    assert np.allclose(np.sort(means, axis=1), np.sort(ctl_means, axis=1))
    assert not np.allclose(means, ctl_means)
