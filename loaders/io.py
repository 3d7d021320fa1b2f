"""Open AnnData files (``.h5ad``, ``.zarr``) with one-line errors, and read them a slice of cells at a time.

Two entry points:

* :func:`read_anndata` returns an :class:`anndata.AnnData` (``.h5ad`` opened in
  backed mode, so ``X`` stays on disk; ``.zarr`` read into memory).
* :func:`open_cells` returns a :class:`CellStore`: ``obs``/``var`` in memory and
  every matrix (``X``, ``raw/X``, any layer) left on disk, sliced by rows. This is
  what the sentence builder streams from, so 1M cells never need 1M dense rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from circuitdb.errors import InputError

SUFFIXES = (".h5ad", ".zarr")


class RowSliceable(Protocol):
    """Anything that returns rows ``[start:stop]`` as a scipy sparse matrix or a dense array."""

    shape: tuple[int, ...]

    def __getitem__(self, key: Any) -> Any: ...


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file: {p}; check the path (an .h5ad file or a .zarr directory)")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{p} is not an AnnData file (suffix {p.suffix or 'none'!r}); pass an .h5ad file or a .zarr directory")
    if suffix == ".h5ad" and p.is_dir():
        raise InputError(f"{p} is a directory, not an .h5ad file; pass the .h5ad file itself")
    return p


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def _open_store(p: Path) -> Any:
    """The root group of an .h5ad (h5py) or .zarr (zarr) store, checked to look like an AnnData."""
    try:
        if p.suffix.lower() == ".h5ad":
            import h5py

            root = h5py.File(p, "r")
        else:
            import zarr

            root = zarr.open_group(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is a bad file
        kind = "HDF5 (.h5ad)" if p.suffix.lower() == ".h5ad" else "zarr"
        raise InputError(f"cannot read {p} as {kind}: {_short(exc)}; is the file complete and not corrupt?") from None
    if "obs" not in root or "var" not in root:
        raise InputError(f"{p} is not an AnnData store (no obs/var); write it with anndata (adata.write_h5ad / write_zarr)")
    return root


def read_anndata(path: str | os.PathLike[str], *, backed: bool = True) -> Any:
    """Read an AnnData from ``.h5ad`` (backed, read-only, unless ``backed=False``) or ``.zarr``.

    Parameters
    ----------
    path
        An ``.h5ad`` file or a ``.zarr`` directory.
    backed
        Open ``.h5ad`` files in backed mode (``X`` stays on disk).

    Returns
    -------
    anndata.AnnData

    Raises
    ------
    InputError
        The path is missing, has an unknown suffix, or is not a readable AnnData.
    """
    import anndata

    p = _check_path(path)
    root = _open_store(p)  # validates before anndata's own, noisier errors
    if hasattr(root, "close"):
        root.close()
    try:
        if p.suffix.lower() == ".h5ad":
            return anndata.read_h5ad(p, backed="r" if backed else None)
        return anndata.read_zarr(p)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {p} as AnnData: {_short(exc)}; is the file complete and not corrupt?") from None


def _read_frame(group: Any, where: str, p: Path) -> pd.DataFrame:
    from anndata.io import read_elem

    try:
        return read_elem(group)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {where} of {p}: {_short(exc)}; is the file complete and not corrupt?") from None


def _matrix_elem(elem: Any) -> RowSliceable:
    """Wrap an on-disk matrix element so that ``m[a:b]`` reads only those rows."""
    from anndata.io import sparse_dataset

    attrs = dict(elem.attrs)
    enc = attrs.get("encoding-type", "")
    if enc in ("csr_matrix", "csc_matrix"):
        return sparse_dataset(elem)
    if hasattr(elem, "shape") and len(elem.shape) == 2:
        return elem
    raise InputError(f"matrix encoding {enc!r} is not supported; store X/layers as dense or csr/csc sparse")


@dataclass
class CellStore:
    """An AnnData's annotations in memory, its matrices on disk (or in memory for an AnnData object).

    Attributes
    ----------
    obs, var
        Cell and gene annotations. ``raw_var`` is ``raw.var`` when the data has ``.raw``.
    layers
        Names of the named layers.
    source
        Where it came from, for messages.
    """

    obs: pd.DataFrame
    var: pd.DataFrame
    raw_var: pd.DataFrame | None
    layers: tuple[str, ...]
    source: str
    _get: Any = field(repr=False)
    _close: Any = field(default=None, repr=False)

    @property
    def n_obs(self) -> int:
        return len(self.obs)

    def matrix(self, layer: str) -> tuple[RowSliceable, pd.DataFrame]:
        """The matrix of ``layer`` (``"raw"``, ``"X"`` or a layer name) and the ``var`` that indexes its columns."""
        if layer == "raw":
            if self.raw_var is None:
                raise InputError(f"{self.source} has no .raw; pass --layer X or a layer name ({', '.join(self.layers) or 'no layers'})")
            return self._get("raw"), self.raw_var
        if layer == "X":
            return self._get("X"), self.var
        if layer not in self.layers:
            raise InputError(f"no layer {layer!r} in {self.source}; layers: {', '.join(self.layers) or 'none'} (or use raw / X)")
        return self._get(layer), self.var

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "CellStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cells(data: Any) -> CellStore:
    """A :class:`CellStore` over a path (``.h5ad``/``.zarr``, streamed) or an in-memory/backed AnnData.

    Parameters
    ----------
    data
        A path, or an :class:`anndata.AnnData` (in memory or backed).

    Raises
    ------
    InputError
        Missing, corrupt or non-AnnData files.
    """
    if isinstance(data, (str, os.PathLike)):
        return _open_path(Path(data))
    return _from_anndata(data)


def _from_anndata(adata: Any) -> CellStore:
    if not hasattr(adata, "obs") or not hasattr(adata, "var"):
        raise InputError(f"expected an AnnData or a path, got {type(adata).__name__}; pass an anndata.AnnData or an .h5ad/.zarr path")
    backed_path = Path(adata.filename) if getattr(adata, "isbacked", False) else None

    def get(layer: str) -> RowSliceable:
        if layer == "raw":
            return adata.raw.X
        if layer == "X":
            if adata.X is None:
                raise InputError("the AnnData has no X; pass --layer raw or a layer name")
            return adata.X
        if backed_path is not None:
            # backed AnnData loads layers into memory on access; slice them from disk instead
            return _open_path(backed_path)._get(layer)
        return adata.layers[layer]

    return CellStore(
        obs=adata.obs, var=adata.var, raw_var=None if adata.raw is None else adata.raw.var,
        layers=tuple(adata.layers.keys()), source="the AnnData", _get=get,
    )


def _open_path(p: Path) -> CellStore:
    p = _check_path(p)
    root = _open_store(p)
    obs = _read_frame(root["obs"], "obs", p)
    var = _read_frame(root["var"], "var", p)
    raw_var = _read_frame(root["raw"]["var"], "raw/var", p) if "raw" in root and "var" in root["raw"] else None
    layers = tuple(root["layers"].keys()) if "layers" in root else ()

    def get(layer: str) -> RowSliceable:
        key = {"raw": "raw/X", "X": "X"}.get(layer, f"layers/{layer}")
        if key not in root:
            raise InputError(f"{p} has no {key}; pass another --layer")
        m = _matrix_elem(root[key])
        if m.shape[0] != len(obs):
            raise InputError(f"{key} of {p} has {m.shape[0]} rows but obs has {len(obs)}; the file is inconsistent")
        return m

    close = root.close if hasattr(root, "close") else None
    return CellStore(obs=obs, var=var, raw_var=raw_var, layers=layers, source=str(p), _get=get, _close=close)


def as_csr_rows(block: Any) -> Any:
    """A row block (sparse or dense) as a canonical float CSR matrix (NaN/inf kept, so they can be detected)."""
    import scipy.sparse as sp

    if sp.issparse(block):
        m = block.tocsr() if block.format != "csr" else block
    else:
        arr = np.asarray(block)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.dtype == np.float16:  # scipy.sparse has no float16
            arr = arr.astype(np.float32)
        m = sp.csr_matrix(arr)
    if m.dtype.kind not in "fiub":
        raise InputError(f"the expression matrix has dtype {m.dtype}; it must be numeric")
    m.sum_duplicates()
    return m


def write_atomic(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Nothing is left half-written: on any error the temporary file is removed and
    ``path`` is untouched. The file gets the usual permissions (``0o666`` minus the umask),
    not ``mkstemp``'s ``0o600``.

    Parameters
    ----------
    path
        The file to (re)place; its folder must exist.
    write
        Writes the content to the path it is given (keeps the suffix of ``path``).
    """
    import tempfile

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"the folder of {path} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
