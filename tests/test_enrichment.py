import numpy as np
import pytest

from circuitdb.errors import InputError
from circuitdb.interpret.enrichment import (
    Criteria,
    GeneSetLibrary,
    auroc_per_label,
    enrich,
    hypergeom,
    interpretable,
    read_gmt,
    regulon_sets,
)

UNIVERSE = [f"G{i}" for i in range(1000)]


def _library(rng, n_sets=40, size=30):
    return GeneSetLibrary(
        "lib", {f"S{j}": frozenset(rng.choice(UNIVERSE, size, replace=False).tolist()) for j in range(n_sets)}
    )


def test_hypergeom_matches_scipy_fisher():
    from scipy.stats import fisher_exact

    p, odds = hypergeom(np.array([5]), np.array([20]), np.array([30]), 1000)
    table = [[5, 15], [25, 1000 - 20 - 30 + 5]]
    assert p[0] == pytest.approx(fisher_exact(table, alternative="greater")[1], rel=1e-9)
    assert odds[0] > 5


def test_planted_features_are_found():
    rng = np.random.default_rng(0)
    lib = _library(rng)
    top = {}
    planted = {}
    for f in range(20):
        term = f"S{f}"
        genes = sorted(lib.sets[term])[:8] + rng.choice(UNIVERSE, 12, replace=False).tolist()
        top[f"f{f}"] = genes
        planted[f"f{f}"] = term
    hits = interpretable(enrich(top, [lib], UNIVERSE))
    found = {row.feature: row.term for row in hits.itertuples() if planted[row.feature] == row.term}
    assert found == planted


def test_random_features_keep_fdr_at_5_percent():
    rng = np.random.default_rng(1)
    lib = _library(rng, n_sets=60)
    top = {f"f{f}": rng.choice(UNIVERSE, 20, replace=False).tolist() for f in range(200)}
    res = enrich(top, [lib], UNIVERSE)
    assert len(res) == 200 * 60
    frac = interpretable(res, Criteria(min_odds=1.0, min_overlap=1))["feature"].nunique() / 200
    assert frac <= 0.05


def test_query_restricted_to_universe():
    lib = GeneSetLibrary("l", {"A": frozenset({"X1", "X2", "X3", "OUT"})})
    res = enrich({"f": ["x1", "x2", "x3", "OUT", "ZZZ"]}, [lib], ["X1", "X2", "X3", "Y1", "Y2", "Y3", "Y4"])
    row = res.iloc[0]
    assert (row.overlap, row.query_size, row.set_size, row.universe) == (3, 3, 3, 7)


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    labels = rng.choice(["a", "b", "c"], 300)
    vals = rng.normal(size=(300, 4))
    vals[labels == "a", 0] += 2
    vals[:, 3] = np.where(rng.random(300) < 0.7, 0, vals[:, 3])  # ties at zero, as sparse activations
    df = auroc_per_label(vals, labels)
    for lab in "abc":
        for j in range(4):
            assert df.loc[j, lab] == pytest.approx(roc_auc_score(labels == lab, vals[:, j]))
    assert df.loc[0, "a"] > 0.85


def test_gmt_reading_and_errors(tmp_path):
    good = tmp_path / "sets.gmt"
    good.write_text("TCELL\tdesc\tcd3e\tCD3D\n\nBCELL\t\tMS4A1\n")
    lib = read_gmt(good)
    assert lib.name == "sets" and lib.sets == {"TCELL": frozenset({"CD3E", "CD3D"}), "BCELL": frozenset({"MS4A1"})}
    empty = tmp_path / "empty.gmt"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty"):
        read_gmt(empty)
    bad = tmp_path / "bad.gmt"
    bad.write_text("only-a-name\n")
    with pytest.raises(InputError, match="line 1 is not GMT"):
        read_gmt(bad)


def test_regulon_sets_min_size():
    lib = regulon_sets({"SPI1": ["a", "b", "c", "d", "e"], "PAX5": ["x"]})
    assert set(lib.sets) == {"SPI1"} and "A" in lib.sets["SPI1"]


def test_vectorised_enrich_equals_a_per_test_scipy_loop():
    from scipy import stats as st
    from statsmodels.stats.multitest import multipletests

    from circuitdb.interpret.enrichment import GeneSetLibrary, enrich

    rng = np.random.default_rng(5)
    universe = [f"G{i}" for i in range(300)]
    lib = GeneSetLibrary("lib", {f"S{j}": frozenset(rng.choice(universe, size=int(rng.integers(3, 40)), replace=False)) for j in range(12)})
    tops = {f"f{i}": list(rng.choice(universe, size=20, replace=False)) + ["NOT_IN_UNIVERSE"] for i in range(30)}
    df = enrich(tops, [lib], universe)
    rows = []
    for f, genes in tops.items():
        qset = set(genes) & set(universe)
        for term, members in lib.sets.items():
            ov = qset & members
            rows.append((f, term, len(ov), st.hypergeom.sf(len(ov) - 1, len(universe), len(members), len(qset)), ";".join(sorted(ov))))
    assert list(zip(df["feature"], df["term"], df["overlap"], df["genes"])) == [(r[0], r[1], r[2], r[4]) for r in rows]
    p = np.array([r[3] for r in rows])
    np.testing.assert_allclose(df["p"], p, rtol=1e-10)
    np.testing.assert_allclose(df["q"], multipletests(p, method="fdr_bh")[1], rtol=1e-10)
