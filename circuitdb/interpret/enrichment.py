"""Gene-set enrichment of features' top genes, with Benjamini-Hochberg FDR.

Tests are one-sided hypergeometric (scipy) of a feature's top genes against
each gene set, with the *universe* = the genes the model saw (those occurring
in any prompt), gene sets restricted to the universe. q-values are
Benjamini-Hochberg (statsmodels) across **all** tests of a run (every feature
x every set of every library), so the FDR holds for the whole table.

A feature is **gene-level interpretable** when at least one set reaches
``q < 0.05`` with ``odds >= 3`` and ``overlap >= 3`` (see :class:`Criteria`):
a significant *and* large over-representation, carried by several genes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from circuitdb.errors import InputError


@dataclass(frozen=True)
class GeneSetLibrary:
    """Named gene sets (upper-case symbols) from one source: markers, regulons, a GMT file."""

    name: str
    sets: Mapping[str, frozenset[str]]

    def restricted(self, universe: set[str], min_size: int = 3) -> "GeneSetLibrary":
        kept = {k: frozenset(v & universe) for k, v in self.sets.items()}
        return GeneSetLibrary(self.name, {k: v for k, v in kept.items() if len(v) >= min_size})


@dataclass(frozen=True)
class Criteria:
    """What makes a feature gene-level interpretable (documented effect-size thresholds)."""

    q: float = 0.05
    min_odds: float = 3.0
    min_overlap: int = 3


def read_gmt(path: str | Path) -> GeneSetLibrary:
    """Read a GMT file (``name<TAB>description<TAB>gene1<TAB>gene2...``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GMT file {path} not found; give a gene-set file in GMT format")
    sets: dict[str, frozenset[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read GMT file {path}: {exc}; give a UTF-8 text GMT file") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t")]
        genes = [g.upper() for g in parts[2:] if g]
        if len(parts) < 3 or not parts[0] or not genes:
            raise InputError(f"{path.name} line {lineno} is not GMT: expected 'name<TAB>description<TAB>gene...' with at least one gene")
        sets[parts[0]] = frozenset(genes)
    if not sets:
        raise InputError(f"GMT file {path.name} is empty; give at least one 'name<TAB>description<TAB>genes...' line")
    return GeneSetLibrary(path.stem, sets)


def marker_sets(adata, label_key: str, *, n_genes: int = 50, layer: str = "raw", min_logfc: float = 0.5,  # type: ignore[no-untyped-def]
                min_cells: int = 3) -> GeneSetLibrary:
    """Marker genes per label from the dataset itself (scanpy ``rank_genes_groups``, Wilcoxon).

    Keeps, per label, up to ``n_genes`` genes with adjusted p < 0.05 and log fold-change >= ``min_logfc``.
    Labels with fewer than ``min_cells`` cells get no marker set (no test is possible); cells
    without a label are left out.
    """
    import scanpy as sc

    if label_key not in adata.obs.columns:
        raise InputError(f"no obs column {label_key!r}; columns: {', '.join(map(str, adata.obs.columns))}")
    ad = adata.raw.to_adata() if layer == "raw" and adata.raw is not None else adata.to_memory() if adata.isbacked else adata.copy()
    labels = adata.obs[label_key]
    ad.obs[label_key] = labels.astype(str).where(labels.notna(), None).astype("category").values
    counts = ad.obs[label_key].value_counts()
    groups = sorted(str(g) for g, n in counts.items() if n >= min_cells)
    if len(groups) < 2:
        raise InputError(f"obs column {label_key!r} has fewer than 2 labels with >= {min_cells} cells; marker sets need at least two")
    sc.tl.rank_genes_groups(ad, label_key, groups=groups, reference="rest", method="wilcoxon",
                            n_genes=min(ad.n_vars, max(n_genes * 4, 200)), use_raw=False)
    sets: dict[str, frozenset[str]] = {}
    for label in groups:
        df = sc.get.rank_genes_groups_df(ad, group=label)
        df = df[(df["pvals_adj"] < 0.05) & (df["logfoldchanges"] >= min_logfc)].head(n_genes)
        sets[str(label)] = frozenset(str(g).upper() for g in df["names"])
    return GeneSetLibrary("markers", sets)


def regulon_sets(regulons: Mapping[str, Iterable[str]], *, min_size: int = 5, name: str = "regulons") -> GeneSetLibrary:
    """TF regulons (TF -> targets) as a gene-set library, TFs with >= ``min_size`` targets."""
    sets = {tf: frozenset(str(t).upper() for t in targets) for tf, targets in regulons.items()}
    return GeneSetLibrary(name, {k: v for k, v in sets.items() if len(v) >= min_size})


def hypergeom(overlap: np.ndarray, query: np.ndarray, set_size: np.ndarray, universe: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided hypergeometric p-values P(X >= overlap) and Haldane-corrected odds ratios."""
    overlap = np.asarray(overlap, dtype=float)
    p = stats.hypergeom.sf(overlap - 1, universe, set_size, query)
    a = overlap
    b = query - overlap
    c = set_size - overlap
    d = universe - query - set_size + overlap
    odds = ((a + 0.5) * (d + 0.5)) / ((b + 0.5) * (c + 0.5))
    return np.clip(p, 0.0, 1.0), odds


def enrich(
    top_genes: Mapping[str, Iterable[str]],
    libraries: Iterable[GeneSetLibrary],
    universe: Iterable[str],
    *,
    min_set_size: int = 3,
) -> pd.DataFrame:
    """Test every feature's top genes against every set; BH across all tests.

    Parameters
    ----------
    top_genes
        feature id -> its top genes (symbols).
    libraries
        Gene-set libraries (markers, regulons, GMT files).
    universe
        The genes the model saw; query genes and sets are restricted to it.

    Returns
    -------
    DataFrame
        One row per (feature, library, term) with ``overlap, query_size, set_size,
        universe, odds, p, q`` and ``genes`` (the overlapping genes, ';'-joined).
    """
    from scipy import sparse

    uni = sorted({str(g).upper() for g in universe})
    if not uni:
        raise InputError("empty gene universe; the model saw no genes")
    col = {g: i for i, g in enumerate(uni)}
    libs = [lib.restricted(set(uni), min_set_size) for lib in libraries]
    # query indicator (features x genes) and set indicator (genes x sets): overlaps are one sparse product
    feats, qrows, qcols = [], [], []
    for feat, genes in top_genes.items():
        idx = sorted({col[g] for g in (str(x).upper() for x in genes) if g in col})
        if not idx:
            continue
        qrows.extend([len(feats)] * len(idx))
        qcols.extend(idx)
        feats.append(feat)
    terms = [(lib.name, term, members) for lib in libs for term, members in lib.sets.items()]
    cols = ["feature", "library", "term", "overlap", "query_size", "set_size", "genes", "universe", "odds", "p", "q"]
    if not feats or not terms:
        return pd.DataFrame({c: [] for c in cols})
    q = sparse.csr_matrix((np.ones(len(qrows), dtype=np.int32), (qrows, qcols)), shape=(len(feats), len(uni)))
    srows = [col[g] for _, _, m in terms for g in sorted(m)]
    scols = [j for j, (_, _, m) in enumerate(terms) for _ in m]
    st = sparse.csc_matrix((np.ones(len(srows), dtype=np.int32), (srows, scols)), shape=(len(uni), len(terms)))
    overlap = (q @ st).toarray()  # (F, S)
    nf, ns = overlap.shape
    query_size = np.asarray(q.sum(axis=1)).ravel()
    set_size = np.asarray(st.sum(axis=0)).ravel()
    ov = overlap.ravel()
    qs = np.repeat(query_size, ns)
    ss = np.tile(set_size, nf)
    p, odds = hypergeom(ov, qs, ss, len(uni))
    df = pd.DataFrame({
        "feature": np.repeat(np.asarray(feats, dtype=object), ns),
        "library": np.tile(np.asarray([t[0] for t in terms], dtype=object), nf),
        "term": np.tile(np.asarray([t[1] for t in terms], dtype=object), nf),
        "overlap": ov.astype(np.int64), "query_size": qs.astype(np.int64), "set_size": ss.astype(np.int64),
    })
    # overlapping genes, only where there is an overlap (the rest stay "")
    genes_col = np.full(len(df), "", dtype=object)
    hit_f, hit_s = np.nonzero(overlap)
    if len(hit_f):
        qsets = [set(q.indices[q.indptr[i]:q.indptr[i + 1]].tolist()) for i in range(nf)]
        tsets = [{col[x] for x in m} for _, _, m in terms]
        for f, j in zip(hit_f.tolist(), hit_s.tolist()):
            genes_col[f * ns + j] = ";".join(sorted(uni[g] for g in qsets[f] & tsets[j]))
    df["genes"] = genes_col
    df["universe"] = len(uni)
    df["odds"] = odds
    df["p"] = p
    df["q"] = multipletests(p, method="fdr_bh")[1]
    return df[cols]


def interpretable(enrichment: pd.DataFrame, criteria: Criteria = Criteria()) -> pd.DataFrame:
    """The significant rows by ``criteria`` (q, odds and overlap thresholds)."""
    if enrichment.empty:
        return enrichment
    m = (enrichment["q"] < criteria.q) & (enrichment["odds"] >= criteria.min_odds) & (enrichment["overlap"] >= criteria.min_overlap)
    return enrichment[m].sort_values(["feature", "q", "odds"], ascending=[True, True, False])


def auroc_per_label(values: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """AUROC of each column of ``values`` (cells x features) for each label, one-vs-rest.

    Uses the rank-sum identity AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg),
    ties counted half. Returns a features x labels frame.
    """
    values = np.asarray(values, dtype=float)
    labels = np.asarray(labels).astype(str)
    ranks = stats.rankdata(values, axis=0)
    out = {}
    n = len(labels)
    for lab in sorted(set(labels)):
        pos = labels == lab
        n_pos = int(pos.sum())
        n_neg = n - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        r = ranks[pos].sum(axis=0)
        out[lab] = (r - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return pd.DataFrame(out)
