"""AnnData -> cell2sentence (C2S) cell sentences.

C2S's rule: keep a cell's expressed genes (value > 0), order them by descending
expression, uppercase the symbols, keep the top ``k`` and join them with spaces.
Ties are broken by a seeded random key per (cell, gene), so the order is
deterministic for a given seed and independent of chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np

from circuitdb.errors import InputError

DEFAULT_TOP_K = 200


@dataclass(frozen=True)
class SentenceOptions:
    """How to read an AnnData into sentences.

    Parameters
    ----------
    top_k
        Keep at most this many genes per cell.
    layer
        ``"raw"`` (``adata.raw.X``), ``"X"`` (``adata.X``) or a key of ``adata.layers``.
    symbol_key
        A ``var`` column with gene symbols (for Ensembl-indexed data); ``None`` uses ``var_names``.
    label_key
        An ``obs`` column with cell-type labels, or ``None``.
    seed
        Seed of the tie-breaking keys.
    chunk_size
        Cells densified at once; memory stays bounded by ``chunk_size x n_genes``.
    """

    top_k: int = DEFAULT_TOP_K
    layer: str = "raw"
    symbol_key: str | None = None
    label_key: str | None = None
    seed: int = 0
    chunk_size: int = 1024

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.chunk_size < 1:
            raise InputError(f"chunk size must be at least 1, got {self.chunk_size}")


@dataclass(frozen=True)
class CellSentence:
    """One cell as a C2S sentence."""

    cell_id: str
    index: int
    label: str | None
    genes: tuple[str, ...]

    @property
    def sentence(self) -> str:
        return " ".join(self.genes)

    @property
    def n_genes(self) -> int:
        return len(self.genes)


def _tie_keys(seed: int, rows: np.ndarray, n_genes: int) -> np.ndarray:
    """Per-(cell, gene) tie-break keys that depend only on seed and the cell's index."""
    out = np.empty((len(rows), n_genes), dtype=np.float64)
    for i, r in enumerate(rows):
        out[i] = np.random.default_rng([seed, int(r)]).random(n_genes)
    return out


def rank_genes(values: np.ndarray, top_k: int, tie_keys: np.ndarray) -> list[np.ndarray]:
    """For each row of ``values``, indices of expressed genes by descending value, top ``k``.

    Pure numpy; ties between equal values are ordered by ``tie_keys`` ascending.
    """
    out: list[np.ndarray] = []
    for row, keys in zip(values, tie_keys):
        nz = np.flatnonzero(row > 0)
        if nz.size == 0:
            out.append(nz)
            continue
        order = np.lexsort((keys[nz], -row[nz]))
        out.append(nz[order[:top_k]])
    return out


Source = Literal["raw", "X"]


def _matrix_and_symbols(adata, opts: SentenceOptions):  # type: ignore[no-untyped-def]
    if opts.layer == "raw":
        if adata.raw is None:
            raise InputError("the AnnData has no .raw; pass --layer X or a layer name")
        matrix, var = adata.raw.X, adata.raw.var
        names = adata.raw.var_names
    elif opts.layer == "X":
        matrix, var, names = adata.X, adata.var, adata.var_names
    else:
        if opts.layer not in adata.layers:
            raise InputError(f"no layer {opts.layer!r}; layers: {', '.join(adata.layers) or 'none'} (or use raw / X)")
        matrix, var, names = adata.layers[opts.layer], adata.var, adata.var_names
    if opts.symbol_key is not None:
        if opts.symbol_key not in var.columns:
            raise InputError(f"no var column {opts.symbol_key!r}; columns: {', '.join(map(str, var.columns)) or 'none'}")
        names = var[opts.symbol_key]
    symbols = np.array([str(s).upper() for s in names], dtype=object)
    return matrix, symbols


def iter_cell_sentences(adata, opts: SentenceOptions | None = None) -> Iterator[CellSentence]:  # type: ignore[no-untyped-def]
    """Yield one :class:`CellSentence` per cell, in obs order, densifying ``chunk_size`` cells at a time."""
    opts = opts or SentenceOptions()
    matrix, symbols = _matrix_and_symbols(adata, opts)
    labels = None
    if opts.label_key is not None:
        if opts.label_key not in adata.obs.columns:
            raise InputError(f"no obs column {opts.label_key!r}; columns: {', '.join(map(str, adata.obs.columns))}")
        labels = adata.obs[opts.label_key].astype(str).to_numpy()
    cell_ids = adata.obs_names.to_numpy()
    n = adata.n_obs
    for start in range(0, n, opts.chunk_size):
        stop = min(n, start + opts.chunk_size)
        block = matrix[start:stop]
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        block = np.asarray(block, dtype=np.float64)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise InputError(f"the matrix has NaN or inf (first in cell {cell_ids[bad]!r}); clean or impute it first")
        rows = np.arange(start, stop)
        ranked = rank_genes(block, opts.top_k, _tie_keys(opts.seed, rows, block.shape[1]))
        for i, idx in enumerate(ranked):
            r = start + i
            yield CellSentence(
                cell_id=str(cell_ids[r]),
                index=r,
                label=None if labels is None else str(labels[r]),
                genes=tuple(symbols[idx]),
            )
