"""AnnData -> cell2sentence (C2S) cell sentences.

C2S's rule: keep a cell's expressed genes (value > 0), order them by descending
expression, uppercase the symbols, keep the top ``k`` and join them with spaces.
Ties between equal values are broken by a seeded hash of (seed, cell index, gene
index) (its top ``TIE_BITS`` bits, then the gene index), so the order is
deterministic for a given seed and independent of how the cells are chunked.

Cells are read ``chunk_size`` rows at a time as sparse rows; only the expressed
entries are ever sorted, so memory is bounded by the chunk, not by the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from circuitdb.errors import InputError
from circuitdb.loaders.io import CellStore, as_csr_rows, open_cells

DEFAULT_TOP_K = 200
DEFAULT_ORGANISM = "Homo sapiens"

#: Common names accepted for ``organism``, mapped to the names C2S prompts use.
ORGANISM_ALIASES = {
    "human": "Homo sapiens",
    "homo sapiens": "Homo sapiens",
    "hs": "Homo sapiens",
    "mouse": "Mus musculus",
    "mus musculus": "Mus musculus",
    "mm": "Mus musculus",
}

_ENSEMBL = re.compile(r"^ENS[A-Z]{0,6}G\d{6,}(\.\d+)?$", re.IGNORECASE)


def normalise_organism(name: str) -> str:
    """``"human"``/``"mouse"`` -> ``"Homo sapiens"``/``"Mus musculus"``; other non-empty names pass through."""
    name = " ".join(str(name).split())
    if not name:
        raise InputError("--organism is empty; pass e.g. 'Homo sapiens' or 'Mus musculus'")
    return ORGANISM_ALIASES.get(name.lower(), name)


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
        Cells read at once; memory stays bounded by the chunk's expressed entries.
    organism
        The organism named in prompts (``"human"``/``"mouse"`` are accepted).
    skip_empty
        Skip cells with no expressed gene (counted in the :class:`SentenceSummary`);
        with ``False`` they are yielded with no genes.
    """

    top_k: int = DEFAULT_TOP_K
    layer: str = "raw"
    symbol_key: str | None = None
    label_key: str | None = None
    seed: int = 0
    chunk_size: int = 1024
    organism: str = DEFAULT_ORGANISM
    skip_empty: bool = True

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.chunk_size < 1:
            raise InputError(f"chunk size must be at least 1, got {self.chunk_size}")
        if self.seed < 0:
            raise InputError(f"--seed must be non-negative, got {self.seed}")
        object.__setattr__(self, "organism", normalise_organism(self.organism))


@dataclass(frozen=True)
class CellSentence:
    """One cell as a C2S sentence: ``index`` is its position in obs order."""

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


@dataclass
class SentenceSummary:
    """Counts filled in while sentences are produced.

    Attributes
    ----------
    n_cells
        Cells read.
    n_written
        Cells yielded.
    n_skipped
        Cells with no expressed gene (skipped unless ``skip_empty=False``).
    skipped_ids
        The first few skipped cell ids (at most 10).
    n_genes_total
        Columns of the matrix.
    n_genes_without_symbol
        Genes whose symbol is empty/missing; they never enter a sentence.
    n_unlabelled
        Cells whose label is missing (their ``label`` is ``None``).
    layer, organism
        What was read, for provenance.
    """

    n_cells: int = 0
    n_written: int = 0
    n_skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)
    n_genes_total: int = 0
    n_genes_without_symbol: int = 0
    n_unlabelled: int = 0
    layer: str = ""
    organism: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "cells": self.n_cells, "written": self.n_written, "skipped_no_expressed_genes": self.n_skipped,
            "skipped_ids": list(self.skipped_ids), "genes": self.n_genes_total,
            "genes_without_symbol": self.n_genes_without_symbol, "unlabelled": self.n_unlabelled, "layer": self.layer, "organism": self.organism,
        }


# --- tie-break keys -----------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def tie_keys(seed: int, cells: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """Seeded pseudo-random uint64 key for each (cell index, gene index) pair.

    A pure function of ``(seed, cell, gene)``: the same pair gets the same key
    whatever chunk it is read in. Vectorised; no per-row generator.
    """
    with np.errstate(over="ignore"):
        s = _mix(np.asarray([seed], dtype=np.uint64) * _GOLDEN + _GOLDEN)
        h = _mix(s ^ (np.asarray(cells, dtype=np.uint64) * _GOLDEN))
        return _mix(h ^ (np.asarray(genes, dtype=np.uint64) + _GOLDEN))


#: Bits of the tie key used: equal values are ordered by ``tie_keys >> (64 - TIE_BITS)``, then by gene index.
TIE_BITS = 20
_ROW_BITS = 64 - 32 - TIE_BITS  # rows of one sort block: 4096
_BLOCK = 1 << _ROW_BITS


def tie_order_key(seed: int, cells: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """The ``TIE_BITS``-bit key that orders equal values of a cell (ascending; gene index breaks its own ties)."""
    return tie_keys(seed, cells, genes) >> np.uint64(64 - TIE_BITS)


def rank_csr(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    *,
    first_cell: int,
    top_k: int,
    seed: int,
    gene_ok: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank the expressed genes of CSR rows: descending value, ties by :func:`tie_order_key`, top ``k``.

    The order of a row's genes is: value descending, then
    :func:`tie_order_key` ascending, then gene index ascending. It depends only
    on the seed, the cell's index and its values, never on the chunk.

    Parameters
    ----------
    data, indices, indptr
        The CSR arrays of a block of cells (duplicates already summed).
    first_cell
        Index (obs position) of the block's first row; the tie keys depend on it.
    top_k
        Genes kept per row.
    seed
        Tie-break seed.
    gene_ok
        Optional boolean mask over columns; ``False`` columns are never kept.

    Returns
    -------
    (genes, counts)
        ``genes`` holds the kept column indices, row after row, each row in
        rank order; ``counts[i]`` is how many belong to row ``i``.
    """
    n_rows = len(indptr) - 1
    if n_rows > _BLOCK:  # keep the row number within its bits of the packed key
        parts = []
        for a in range(0, n_rows, _BLOCK):
            b = min(n_rows, a + _BLOCK)
            lo, hi = int(indptr[a]), int(indptr[b])
            parts.append(rank_csr(data[lo:hi], indices[lo:hi], indptr[a:b + 1] - lo, first_cell=first_cell + a,
                                  top_k=top_k, seed=seed, gene_ok=gene_ok))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
    keep = data > 0
    if gene_ok is not None:
        keep &= gene_ok[indices]
    d, g, r = data[keep], indices[keep].astype(np.int64, copy=False), row[keep]
    if d.size == 0:
        return np.empty(0, dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
    # sort by gene first, so that equal packed keys fall back to gene order in the stable sort below
    if d.size > 1 and np.any((np.diff(g) <= 0) & (np.diff(r) == 0)):
        pre = np.lexsort((g, r))
        d, g, r = d[pre], g[pre], r[pre]
    tie = tie_order_key(seed, r + first_cell, g)
    d32 = d.astype(np.float32)
    if d.dtype == np.float32 or np.array_equal(d32, d):
        # one packed uint64 key: row (12 bits) | descending float32 bits (32) | tie key (20); positive floats
        # order like their bit patterns, so one stable argsort does the whole ranking
        desc = (~d32.view(np.uint32)).astype(np.uint64)
        key = (r.astype(np.uint64) << np.uint64(64 - _ROW_BITS)) | (desc << np.uint64(TIE_BITS)) | tie
        order = np.argsort(key, kind="stable")
    else:  # values float32 can't hold exactly: same order, slower sort
        order = np.lexsort((g, tie, -d.astype(np.float64), r))
    r_s = r[order]
    per_row = np.bincount(r_s, minlength=n_rows)
    starts = np.concatenate(([0], np.cumsum(per_row)[:-1]))
    rank = np.arange(r_s.size) - starts[r_s]
    sel = rank < top_k
    return g[order[sel]], np.minimum(per_row, top_k)


def _symbols(var: Any, opts: SentenceOptions, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Uppercased symbols per column, and a mask of columns that have one."""
    if opts.symbol_key is not None:
        if opts.symbol_key not in var.columns:
            raise InputError(
                f"no var column {opts.symbol_key!r} for --symbol-key; var columns: {', '.join(map(str, var.columns)) or 'none'}"
            )
        raw_names = var[opts.symbol_key]
    else:
        raw_names = var.index
        sample = [str(s) for s in raw_names[:2000]]
        n_ens = sum(1 for s in sample if _ENSEMBL.match(s))
        if sample and n_ens > len(sample) / 2:
            cols = ", ".join(map(str, var.columns)) or "none"
            raise InputError(
                f"the gene names of {source} look like Ensembl ids (e.g. {sample[0]}), but C2S sentences need symbols; "
                f"pass --symbol-key with the var column holding gene symbols (var columns: {cols})"
            )
    values = list(raw_names)
    ok = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v).strip() != "" for v in values])
    symbols = np.array([str(v).strip().upper() if k else "" for v, k in zip(values, ok)], dtype=object)
    return symbols, ok


def _first_bad_row(m: Any) -> int:
    bad = ~np.isfinite(m.data)
    pos = int(np.flatnonzero(bad)[0])
    return int(np.searchsorted(m.indptr, pos, side="right") - 1)


def iter_cell_sentences(
    data: Any,
    opts: SentenceOptions | None = None,
    *,
    summary: SentenceSummary | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[CellSentence]:
    """Yield one :class:`CellSentence` per cell with expressed genes, in obs order.

    Parameters
    ----------
    data
        An ``.h5ad``/``.zarr`` path (streamed from disk), an AnnData (in memory
        or backed), or a :class:`~circuitdb.loaders.io.CellStore`.
    opts
        What to read; defaults to :class:`SentenceOptions`.
    summary
        Filled in as cells are read (cells read, written, skipped ...).
    on_progress
        Called after each chunk with ``(cells_done, n_cells)``.

    Raises
    ------
    InputError
        Missing layer/columns, Ensembl-looking names without ``symbol_key``, NaN or inf values.
    """
    opts = opts or SentenceOptions()
    summary = summary if summary is not None else SentenceSummary()
    store = data if isinstance(data, CellStore) else open_cells(data)
    try:
        yield from _iter(store, opts, summary, on_progress)
    finally:
        if store is not data:
            store.close()


def _iter(
    store: CellStore,
    opts: SentenceOptions,
    summary: SentenceSummary,
    on_progress: Callable[[int, int], None] | None,
) -> Iterator[CellSentence]:
    labels = None
    if opts.label_key is not None:
        if opts.label_key not in store.obs.columns:
            raise InputError(
                f"no obs column {opts.label_key!r} for --label-key; obs columns: {', '.join(map(str, store.obs.columns)) or 'none'}"
            )
        col = store.obs[opts.label_key]
        labels = col.astype(str).to_numpy(dtype=object)
        missing = col.isna().to_numpy()
        labels[missing] = None  # a missing label stays missing, not the string "nan"
        summary.n_unlabelled = int(missing.sum())
    matrix, var = store.matrix(opts.layer)
    symbols, ok = _symbols(var, opts, store.source)
    if matrix.shape[1] != len(symbols):
        raise InputError(f"the {opts.layer} matrix has {matrix.shape[1]} columns but its var has {len(symbols)} rows; the data is inconsistent")
    gene_ok = None if ok.all() else ok
    summary.n_genes_total = len(symbols)
    summary.n_genes_without_symbol = int((~ok).sum())
    summary.layer, summary.organism = opts.layer, opts.organism
    cell_ids = store.obs.index.astype(str).to_numpy()
    n = store.n_obs
    for start in range(0, n, opts.chunk_size):
        stop = min(n, start + opts.chunk_size)
        m = as_csr_rows(matrix[start:stop])
        if m.data.size and not np.isfinite(m.data).all():
            bad = start + _first_bad_row(m)
            raise InputError(
                f"the {opts.layer} matrix has NaN or inf values (first in cell {cell_ids[bad]!r}, row {bad}); "
                "remove or impute them before building sentences"
            )
        genes, counts = rank_csr(m.data, m.indices, m.indptr, first_cell=start, top_k=opts.top_k, seed=opts.seed, gene_ok=gene_ok)
        names = symbols[genes]
        bounds = np.concatenate(([0], np.cumsum(counts)))
        for i in range(stop - start):
            r = start + i
            summary.n_cells += 1
            if counts[i] == 0:
                summary.n_skipped += 1
                if len(summary.skipped_ids) < 10:
                    summary.skipped_ids.append(str(cell_ids[r]))
                if opts.skip_empty:
                    continue
            summary.n_written += 1
            yield CellSentence(
                cell_id=str(cell_ids[r]),
                index=r,
                label=None if labels is None else labels[r],
                genes=tuple(names[bounds[i]:bounds[i + 1]]),
            )
        if on_progress is not None:
            on_progress(stop, n)


def cell_sentences(data: Any, opts: SentenceOptions | None = None) -> tuple[list[CellSentence], SentenceSummary]:
    """All sentences of ``data`` as a list, with the :class:`SentenceSummary`."""
    summary = SentenceSummary()
    out = list(iter_cell_sentences(data, opts, summary=summary))
    return out, summary
