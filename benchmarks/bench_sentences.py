"""Benchmark: cell sentences per second, and peak memory, for the ``circuitdb sentences`` path.

Claim: building C2S sentences streams a large sparse AnnData from a backed
``.h5ad`` fast and in bounded memory.

Data: a synthetic sparse AnnData (default 100k cells x 2000 genes, 5% density,
log1p of counts, so many values tie) written to a temporary ``.h5ad``.

Measured, each in a fresh subprocess (so peak RSS is its own):

* ``ours``: :func:`circuitdb.loaders.sentence_table.write_sentence_table` (what
  ``circuitdb sentences`` runs) from the backed file to a parquet table, all cells.
* ``naive``: read the whole matrix into memory, densify it, and for each row
  ``argsort`` the expressed values (ties by a per-row seeded generator, as the
  first version of this module did), on a subset of cells; time and the dense
  matrix's memory are extrapolated per cell to the full data.

Prints cells/s for both, the speed ratio, and peak memory (RSS above the
interpreter's baseline after imports, from ``VmHWM``).

Usage::

    python benchmarks/bench_sentences.py [--cells 100000] [--genes 2000] [--density 0.05] [--subset 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it does not carry the parent's peak across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(path: Path, n_cells: int, n_genes: int, density: float, seed: int = 0) -> None:
    import anndata
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    per_row = rng.binomial(n_genes, density, size=n_cells)
    indptr = np.concatenate(([0], np.cumsum(per_row))).astype(np.int64)
    indices = np.empty(indptr[-1], dtype=np.int32)
    # genes per cell without replacement, vectorised via random keys per block of rows
    block = 5000
    for s in range(0, n_cells, block):
        e = min(n_cells, s + block)
        keys = rng.random((e - s, n_genes))
        order = np.argsort(keys, axis=1)
        for i in range(e - s):
            k = per_row[s + i]
            indices[indptr[s + i]: indptr[s + i] + k] = np.sort(order[i, :k])
    data = np.log1p(rng.geometric(0.4, size=indptr[-1])).astype(np.float32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B", "NK", "Mono"], n_cells))},
                       index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"GENE{i}" for i in range(n_genes)])
    anndata.AnnData(X=X, obs=obs, var=var).write_h5ad(path)


def _imports() -> None:
    """Import what both sides use before the baseline RSS and the clock start (imports are not the claim)."""
    import anndata  # noqa: F401
    import anndata.io  # noqa: F401
    import h5py  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scipy.sparse  # noqa: F401


def run_ours(path: str, top_k: int) -> dict:
    _imports()

    from circuitdb.loaders.sentence_table import write_sentence_table
    from circuitdb.loaders.sentences import SentenceOptions

    base = _rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = write_sentence_table(path, Path(tmp) / "s.parquet",
                                       SentenceOptions(layer="X", label_key="cell_type", top_k=top_k, chunk_size=4096))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"cells": summary.n_cells, "seconds": dt, "cpu_seconds": dc, "peak_mib": _peak_mib() - base}


def run_naive(path: str, top_k: int, subset: int) -> dict:
    import anndata
    import numpy as np

    _imports()

    base = _rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    a = anndata.read_h5ad(path)  # everything into memory
    X = a.X[:subset].toarray().astype(np.float64)  # densify
    symbols = np.array([s.upper() for s in a.var_names], dtype=object)
    labels = a.obs["cell_type"].astype(str).to_numpy()
    rows = []
    for i, row in enumerate(X):
        keys = np.random.default_rng([0, i]).random(X.shape[1])
        nz = np.flatnonzero(row > 0)
        order = np.lexsort((keys[nz], -row[nz]))
        genes = symbols[nz[order[:top_k]]]
        rows.append((a.obs_names[i], labels[i], " ".join(genes), len(genes)))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"cells": len(rows), "seconds": dt, "cpu_seconds": dc, "peak_mib": _peak_mib() - base,
            "dense_mib_full": a.n_obs * a.n_vars * 8 / 2**20, "n_obs": a.n_obs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--subset", type=int, default=10_000, help="cells the naive baseline processes")
    ap.add_argument("--top-k", type=int, default=200)
    ap.add_argument("--_mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_path", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._mode == "ours":
        print(json.dumps(run_ours(args._path, args.top_k)))
        return
    if args._mode == "naive":
        print(json.dumps(run_naive(args._path, args.top_k, args.subset)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.h5ad"
        t0 = time.perf_counter()
        make_data(path, args.cells, args.genes, args.density)
        print(f"data: {args.cells} cells x {args.genes} genes, density {args.density}, "
              f"{path.stat().st_size / 2**20:.0f} MiB on disk (made in {time.perf_counter() - t0:.0f} s)")

        def sub(mode: str) -> dict:
            cmd = [sys.executable, __file__, "--_mode", mode, "--_path", str(path), "--top-k", str(args.top_k),
                   "--subset", str(args.subset)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            return json.loads(out.strip().splitlines()[-1])

        ours = sub("ours")
        naive = sub("naive")
    ours_rate, naive_rate = ours["cells"] / ours["seconds"], naive["cells"] / naive["seconds"]
    ours_cpu, naive_cpu = ours["cells"] / ours["cpu_seconds"], naive["cells"] / naive["cpu_seconds"]
    print(f"ours  (backed .h5ad -> parquet, all {ours['cells']} cells): {ours['seconds']:.1f} s wall "
          f"({ours['cpu_seconds']:.1f} s CPU), {ours_rate:,.0f} cells/s wall, {ours_cpu:,.0f} cells/s CPU, "
          f"peak +{ours['peak_mib']:.0f} MiB RSS")
    print(f"naive (whole file in memory, dense rows, per-row seeded argsort; {naive['cells']} cells): "
          f"{naive['seconds']:.1f} s wall ({naive['cpu_seconds']:.1f} s CPU), {naive_rate:,.0f} cells/s wall, "
          f"{naive_cpu:,.0f} cells/s CPU, peak +{naive['peak_mib']:.0f} MiB RSS for the subset; the full data "
          f"would take ~{args.cells / naive_cpu:.0f} s CPU and a {naive['dense_mib_full']:.0f} MiB dense matrix")
    print(f"speed ratio ours/naive: {ours_cpu / naive_cpu:.1f}x (CPU time), {ours_rate / naive_rate:.1f}x (wall)")
    print(f"memory ratio naive full dense matrix / ours peak: {naive['dense_mib_full'] / max(ours['peak_mib'], 1):.1f}x")

if __name__ == "__main__":
    main()
