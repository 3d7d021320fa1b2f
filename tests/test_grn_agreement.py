import numpy as np

from circuitdb.interpret.grn_agreement import grn_agreement, linked_gene_pairs


def test_linked_pairs_from_shared_features():
    edges = [("a", "f1"), ("b", "f1"), ("c", "f1"), ("c", "f2"), ("d", "f2"), ("e", "f3")]
    assert linked_gene_pairs(edges) == {("A", "B"), ("A", "C"), ("B", "C"), ("C", "D")}


def _universe(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return {f"G{i}": float(v) for i, v in enumerate(rng.gamma(2.0, 1.0, n))}


def test_planted_regulation_is_significant():
    expr = _universe()
    rng = np.random.default_rng(3)
    genes = list(expr)
    grn = {(genes[rng.integers(400)], genes[rng.integers(400)]) for _ in range(600)}
    # the circuit links exactly GRN pairs (plus a few others)
    circuit_pairs = {tuple(sorted(p)) for p in list(grn)[:30]} | {("G1", "G2"), ("G3", "G4")}
    res = grn_agreement(circuit_pairs, grn, expr, n_permutations=200, seed=0)
    assert res.fraction > 0.9
    assert res.ratio is not None and res.ratio > 10
    assert res.p_value <= 1 / 201 + 1e-12


def test_random_pairs_are_not_significant():
    expr = _universe(seed=1)
    rng = np.random.default_rng(4)
    genes = list(expr)
    grn = {(genes[rng.integers(400)], genes[rng.integers(400)]) for _ in range(2000)}
    pvals = []
    for s in range(20):
        r = np.random.default_rng(100 + s)
        pairs = {tuple(sorted((genes[r.integers(400)], genes[r.integers(400)]))) for _ in range(40)}
        pvals.append(grn_agreement(pairs, grn, expr, n_permutations=100, seed=s).p_value)
    assert np.mean(np.array(pvals) < 0.05) <= 0.15
