"""``circuitdb grn import|link`` end to end (subprocess, embedded backend) and its bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pytest
from backend_helpers import cli_env, isolated_env


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circuitdb", "--hide-progress", *args], capture_output=True, text=True,
                          env=env, timeout=180)


def _env_for(settings: Any) -> dict[str, str]:
    """A subprocess environment using the session's embedded server."""
    return cli_env(settings, OMP_NUM_THREADS="1")


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path, OMP_NUM_THREADS="1")


def _h5ad(path: Path, genes: list[str]) -> Path:
    rng = np.random.default_rng(0)
    ad = anndata.AnnData(X=rng.random((6, len(genes))).astype(np.float32), var=pd.DataFrame(index=genes))
    ad.write_h5ad(path)
    return path


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    return lines[0]


def test_unknown_columns_exit_2_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"regulator": ["SPI1"], "gene": ["CD14"]}).to_csv(bad, index=False)
    env = _isolated_env(tmp_path)
    msg = _one_line_error(_run(["grn", "import", str(bad), "--name", "x"], env))
    assert "found [regulator, gene]" in msg and "expected" in msg and "source, target" in msg
    assert not (tmp_path / "db").exists()  # no backend was even started


def test_no_gene_matches_exit_2_gives_rate_and_examples(tmp_path: Path) -> None:
    grn = tmp_path / "mouse.csv"
    pd.DataFrame({"source": ["Spi1x"], "target": ["Cd14x"], "weight": [1.0]}).to_csv(grn, index=False)
    data = _h5ad(tmp_path / "d.h5ad", ["CD3E", "MS4A1"])
    msg = _one_line_error(_run(["grn", "import", str(grn), "--name", "x", "--data", str(data)], _isolated_env(tmp_path)))
    assert "match rate 0.0" in msg and "'CD14X'" in msg and "'CD3E'" in msg
    assert not (tmp_path / "db").exists()


def test_missing_file_and_bad_format(tmp_path: Path) -> None:
    env = _isolated_env(tmp_path)
    assert "not found" in _one_line_error(_run(["grn", "import", str(tmp_path / "nope.csv"), "--name", "x"], env))
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    assert "cannot read GRN table" in _one_line_error(_run(["grn", "import", str(junk), "--name", "x"], env))


@pytest.mark.embedded
def test_import_twice_same_counts_and_link(tmp_path: Path, embedded_settings: Any) -> None:
    from circuitdb.graph.backend import open_backend

    env = _env_for(embedded_settings)
    with open_backend(embedded_settings) as g:
        g.run("admin/delete_all")
    grn = tmp_path / "collectri.tsv"
    pd.DataFrame({"source": ["spi1", "SPI1", "PAX5", "FOXP3"], "target": ["CD14", "LYZ", "MS4A1", "IL2RA"],
                  "mor": [1, 1, -1, 1]}).to_csv(grn, sep="\t", index=False)
    data = _h5ad(tmp_path / "d.h5ad", ["CD14", "LYZ", "MS4A1", "SPI1", "CD3E"])
    first = _run(["grn", "import", str(grn), "--name", "collectri", "--data", str(data), "--json"], env)
    assert first.returncode == 0, first.stderr
    s1 = json.loads(first.stdout)
    assert s1["n_edges"] == 4 and s1["n_tfs"] == 3 and s1["match_rate"] == pytest.approx(4 / 7)
    assert s1["rows"] == {"grn": 1, "gene": 7, "regulates": 4}
    counts1 = _run(["query", "graph_counts", "--json"], env)
    second = _run(["grn", "import", str(grn), "--name", "collectri", "--data", str(data), "--json"], env)
    assert second.returncode == 0 and json.loads(second.stdout)["skipped_unchanged"] is True
    counts2 = _run(["query", "graph_counts", "--json"], env)
    assert counts1.returncode == 0 and counts1.stdout == counts2.stdout
    assert {"kind": "relationship", "name": "REGULATES", "n": 4} in json.loads(counts1.stdout)
    text = _run(["grn", "import", str(grn), "--name", "collectri", "--data", str(data)], env)
    assert text.returncode == 0 and "4 of 7 GRN genes (57.1%)" in " ".join(text.stderr.split())
    link = _run(["grn", "link", "--cell-type", "nowhere", "--json"], env)
    assert link.returncode == 2 and "no circuit for cell type 'nowhere'" in link.stderr


@pytest.mark.embedded
def test_link_cli_on_exported_circuits(tmp_path: Path, embedded_settings: Any) -> None:
    from known_graph import known_circuits
    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.schema import apply_schema
    from circuitdb.graph.writer import export_circuits

    with open_backend(embedded_settings) as g:
        g.run("admin/delete_all")
        apply_schema(g)
        export_circuits(g, known_circuits(g1="G1", g2="G2", g3="G3"))
    env = _env_for(embedded_settings)
    grn = tmp_path / "toy.csv"
    pd.DataFrame({"source": ["g1", "G3"], "target": ["g2", "G1"], "mor": [1, -1]}).to_csv(grn, index=False)
    assert _run(["grn", "import", str(grn), "--name", "toy"], env).returncode == 0
    data = _h5ad(tmp_path / "d.h5ad", ["G1", "G2", "G3", "X1", "X2"])
    proc = _run(["grn", "link", "--cell-type", "A", "--dataset", "D1", "--data", str(data), "--json"], env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [(p["tf"], p["target"], p["sign"]) for p in out["pairs"]] == [("G1", "G2", 1)]
    assert [p["nodes"][0] for p in out["paths"]] == ["G2"] and out["agreement"] is None
    assert "no gene pair" in out["note"]
    text = _run(["grn", "link", "--cell-type", "B", "--grn", "toy", "--data", str(data)], env)
    assert text.returncode == 0 and "1 TF -> target pair(s)" in " ".join(text.stderr.split())
