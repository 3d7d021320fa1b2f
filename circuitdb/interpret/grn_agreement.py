"""GRN agreement of a circuit: do genes that share features regulate each other?

For a circuit, the *linked gene pairs* are the unordered pairs of genes with an
edge into the same feature. Agreement is the fraction of those pairs that are
TF -> target pairs of the GRN (either direction). The null keeps the circuit's
pair structure but replaces each circuit gene by a random gene from the same
expression bin (mean expression quantile over the dataset), drawn without
replacement per permutation. We report the observed fraction, the null mean,
their ratio and a one-sided permutation p-value ``(1 + #{null >= obs}) / (1 + n)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class Agreement:
    n_genes: int
    n_pairs: int
    n_grn_pairs: int
    fraction: float
    null_mean: float
    ratio: float | None
    p_value: float
    n_permutations: int


def linked_gene_pairs(gene_feature_edges: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Unordered gene pairs sharing a feature, from (gene, feature) edges."""
    by_feature: dict[str, set[str]] = {}
    for gene, feat in gene_feature_edges:
        by_feature.setdefault(feat, set()).add(str(gene).upper())
    pairs: set[tuple[str, str]] = set()
    for genes in by_feature.values():
        for a, b in combinations(sorted(genes), 2):
            pairs.add((a, b))
    return pairs


def _frac(pairs: np.ndarray, grn: set[tuple[str, str]]) -> float:
    if len(pairs) == 0:
        return 0.0
    hits = sum(1 for a, b in pairs if (a, b) in grn or (b, a) in grn)
    return hits / len(pairs)


def grn_agreement(
    pairs: set[tuple[str, str]],
    grn_edges: Iterable[tuple[str, str]],
    expression: Mapping[str, float],
    *,
    n_bins: int = 10,
    n_permutations: int = 1000,
    seed: int = 0,
) -> Agreement:
    """Agreement of ``pairs`` with the GRN against an expression-matched null.

    Parameters
    ----------
    pairs
        Linked gene pairs of the circuit (see :func:`linked_gene_pairs`).
    grn_edges
        (TF, target) pairs, symbols upper-case.
    expression
        Mean expression of every universe gene (upper-case symbol -> value); the
        null draws replacement genes from this universe, matched by quantile bin.
    """
    grn = {(str(a).upper(), str(b).upper()) for a, b in grn_edges}
    universe = np.array(sorted(expression), dtype=object)
    values = np.array([expression[g] for g in universe], dtype=float)
    ranks = values.argsort(kind="stable").argsort(kind="stable")
    bins = (ranks * n_bins // max(len(universe), 1)).astype(int)
    bin_of = dict(zip(universe, bins))
    members = {b: universe[bins == b] for b in range(n_bins)}
    pair_arr = np.array(sorted(pairs), dtype=object).reshape(-1, 2)
    genes = sorted({g for p in pairs for g in p})
    obs = _frac(pair_arr, grn)
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    known = [g for g in genes if g in bin_of]
    for i in range(n_permutations):
        mapping: dict[str, str] = {}
        for b in range(n_bins):
            src = [g for g in known if bin_of[g] == b]
            if src:
                pool = members[b]
                pick = rng.choice(pool, size=len(src), replace=len(src) > len(pool))
                mapping.update(zip(src, pick))
        perm = np.array([(mapping.get(a, a), mapping.get(b, b)) for a, b in pair_arr], dtype=object).reshape(-1, 2)
        null[i] = _frac(perm, grn)
    null_mean = float(null.mean()) if n_permutations else 0.0
    p = (1 + int((null >= obs).sum())) / (1 + n_permutations)
    return Agreement(
        n_genes=len(genes), n_pairs=len(pair_arr), n_grn_pairs=int(round(obs * len(pair_arr))), fraction=obs,
        null_mean=null_mean, ratio=(obs / null_mean) if null_mean > 0 else None, p_value=p, n_permutations=n_permutations,
    )
