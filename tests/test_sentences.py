"""Cell sentences: C2S ranking rules, input formats, streaming, and the ``sentences`` CLI's bad inputs."""

from __future__ import annotations

import csv

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from circuitdb.cli import main
from circuitdb.errors import InputError
from circuitdb.loaders.io import open_cells, read_anndata
from circuitdb.loaders.sentences import (
    SentenceOptions,
    TIE_BITS,
    SentenceSummary,
    cell_sentences,
    iter_cell_sentences,
    normalise_organism,
    rank_csr,
    tie_keys,
)


def make_adata(n_cells: int = 60, n_genes: int = 40, seed: int = 0, *, ties: bool = True) -> anndata.AnnData:
    """Sparse counts-like data with many ties, a raw copy, a layer, a symbol column and labels."""
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.8, size=(n_cells, n_genes)).astype(np.float32)
    if not ties:
        dense = dense * (1 + rng.random(dense.shape).astype(np.float32))
    dense[3] = 0.0  # an empty cell
    genes = [f"gene{i}" for i in range(n_genes)]
    obs = pd.DataFrame({"cell_type": rng.choice(["T", "B", "NK"], n_cells), "batch": "b1"},
                       index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame({"symbol": [g.upper() + "S" for g in genes]}, index=genes)
    a = anndata.AnnData(X=sp.csr_matrix(np.log1p(dense)), obs=obs, var=var)
    a.raw = a.copy()
    a.layers["counts"] = sp.csr_matrix(dense)
    a.layers["dense_counts"] = dense
    return a


def reference_rank(row: np.ndarray, cell: int, seed: int, top_k: int) -> list[int]:
    """Naive per-row reference: expressed genes, descending value, ties by tie_keys ascending."""
    nz = [j for j in range(len(row)) if row[j] > 0]
    keys = tie_keys(seed, np.full(len(nz), cell), np.array(nz)) >> np.uint64(64 - TIE_BITS)
    key_of = dict(zip(nz, keys.tolist()))
    return sorted(nz, key=lambda j: (-row[j], key_of[j], j))[:top_k]


# --- ranking -----------------------------------------------------------------

@pytest.mark.parametrize("top_k", [1, 5, 200])
def test_rank_matches_reference_with_ties(top_k):
    a = make_adata()
    dense = a.layers["counts"].toarray()
    sents, summary = cell_sentences(a, SentenceOptions(layer="counts", top_k=top_k, seed=3))
    symbols = np.array([g.upper() for g in a.var_names])
    assert summary.n_cells == 60 and summary.n_skipped == 1 and summary.skipped_ids == ["cell3"]
    assert [s.index for s in sents] == [i for i in range(60) if i != 3]
    for s in sents:
        ref = reference_rank(dense[s.index], s.index, 3, top_k)
        assert list(s.genes) == list(symbols[ref])
        assert s.n_genes == len(ref) == min(top_k, int((dense[s.index] > 0).sum()))
        assert s.sentence == " ".join(symbols[ref])


def test_ties_depend_on_seed_values_do_not():
    a = make_adata()
    s0, _ = cell_sentences(a, SentenceOptions(layer="counts", seed=0))
    s1, _ = cell_sentences(a, SentenceOptions(layer="counts", seed=1))
    s0b, _ = cell_sentences(a, SentenceOptions(layer="counts", seed=0))
    assert s0 == s0b
    assert any(x.genes != y.genes for x, y in zip(s0, s1))  # ties reorder
    vals = dict(zip([g.upper() for g in a.var_names], range(a.n_vars)))
    dense = a.layers["counts"].toarray()
    for x, y in zip(s0, s1):
        assert set(x.genes) == set(y.genes)
        # the value sequence is the same whatever the seed
        assert [dense[x.index, vals[g]] for g in x.genes] == [dense[y.index, vals[g]] for g in y.genes]


def test_distinct_values_ignore_seed():
    a = make_adata(ties=False)
    s0, _ = cell_sentences(a, SentenceOptions(layer="counts", seed=0))
    s9, _ = cell_sentences(a, SentenceOptions(layer="counts", seed=9))
    assert s0 == s9


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunking_does_not_change_sentences(chunk):
    a = make_adata()
    ref, _ = cell_sentences(a, SentenceOptions(layer="counts", top_k=4, chunk_size=1000))
    got, _ = cell_sentences(a, SentenceOptions(layer="counts", top_k=4, chunk_size=chunk))
    assert got == ref


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_rank_other_dtypes_match_reference(dtype):
    rng = np.random.default_rng(1)
    dense = rng.poisson(1.0, size=(30, 25)).astype(np.float64)
    if dtype == np.float64:
        dense = dense + rng.integers(0, 3, dense.shape) * 1e-12 * (dense > 0)  # not exact in float32
    m = sp.csr_matrix(dense.astype(dtype))
    g, c = rank_csr(m.data, m.indices, m.indptr, first_cell=100, top_k=7, seed=2)
    bounds = np.concatenate(([0], np.cumsum(c)))
    for i in range(30):
        assert g[bounds[i]:bounds[i + 1]].tolist() == reference_rank(dense.astype(dtype)[i], 100 + i, 2, 7)


def test_rank_large_blocks_and_unsorted_indices():
    rng = np.random.default_rng(2)
    m = sp.random(9000, 30, density=0.3, format="csr", random_state=3, dtype=np.float32)
    m.data = np.round(m.data * 3).astype(np.float32) + 1  # many ties
    whole = rank_csr(m.data, m.indices, m.indptr, first_cell=0, top_k=5, seed=0)
    parts = [rank_csr(b.data, b.indices, b.indptr, first_cell=s, top_k=5, seed=0)
             for s in range(0, 9000, 1000) for b in [m[s:s + 1000]]]
    assert np.array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    assert np.array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    # the same rows with their entries shuffled give the same ranking
    rows = [m[i] for i in range(50)]
    perm = [rng.permutation(r.nnz) for r in rows]
    data = np.concatenate([r.data[p] for r, p in zip(rows, perm)])
    idx = np.concatenate([r.indices[p] for r, p in zip(rows, perm)])
    ptr = np.concatenate(([0], np.cumsum([r.nnz for r in rows])))
    g, c = rank_csr(data, idx, ptr, first_cell=0, top_k=5, seed=0)
    assert np.array_equal(g, whole[0][: c.sum()]) and np.array_equal(c, whole[1][:50])


def test_rank_csr_gene_mask_and_empty():
    m = sp.csr_matrix(np.array([[0, 2, 1, 2], [0, 0, 0, 0], [-1, 0, 3, 0]], dtype=np.float32))
    g, c = rank_csr(m.data, m.indices, m.indptr, first_cell=0, top_k=10, seed=0,
                    gene_ok=np.array([True, False, True, True]))
    assert c.tolist() == [2, 0, 1]  # gene 1 masked; negative values are not expressed
    assert g.tolist() == [3, 2, 2]


def test_tie_keys_are_pure_functions_of_seed_cell_gene():
    k1 = tie_keys(5, np.array([10, 10, 11]), np.array([1, 2, 1]))
    k2 = tie_keys(5, np.array([11, 10]), np.array([1, 2]))
    assert k1[2] == k2[0] and k1[1] == k2[1]
    assert len(set(k1.tolist())) == 3
    assert not np.array_equal(k1, tie_keys(6, np.array([10, 10, 11]), np.array([1, 2, 1])))


# --- options -------------------------------------------------------------------

def test_layers_and_symbols():
    a = make_adata()
    raw, _ = cell_sentences(a)  # default: .raw, log1p of counts -> same order as counts
    counts, _ = cell_sentences(a, SentenceOptions(layer="counts"))
    dense, _ = cell_sentences(a, SentenceOptions(layer="dense_counts"))
    x, _ = cell_sentences(a, SentenceOptions(layer="X"))
    assert raw == counts == dense == x
    sym, _ = cell_sentences(a, SentenceOptions(layer="counts", symbol_key="symbol"))
    assert [[g[:-1] for g in s.genes] for s in sym] == [list(s.genes) for s in counts]
    assert all(g.endswith("S") and g == g.upper() for g in sym[0].genes)
    lab, _ = cell_sentences(a, SentenceOptions(label_key="cell_type"))
    assert [s.label for s in lab] == [a.obs["cell_type"].iloc[s.index] for s in lab]
    assert raw[0].label is None


def test_float16_dense_layer():
    a = make_adata()
    a.layers["half"] = a.layers["dense_counts"].astype(np.float16)
    assert cell_sentences(a, SentenceOptions(layer="half"))[0] == cell_sentences(a, SentenceOptions(layer="counts"))[0]


def test_lowercase_symbols_are_uppercased():
    a = make_adata()
    a.var_names = [f"Cd{i}a" for i in range(a.n_vars)]
    s, _ = cell_sentences(a, SentenceOptions(layer="counts"))
    assert all(g.startswith("CD") and g.endswith("A") for g in s[0].genes)


def test_missing_labels_stay_missing():
    a = make_adata()
    a.obs["cell_type"] = pd.Categorical(a.obs["cell_type"])
    a.obs.loc["cell5", "cell_type"] = np.nan
    s, summary = cell_sentences(a, SentenceOptions(label_key="cell_type"))
    assert summary.n_unlabelled == 1
    by_id = {c.cell_id: c.label for c in s}
    assert by_id["cell5"] is None and all(isinstance(v, str) for k, v in by_id.items() if k != "cell5")


def test_skip_empty_false_yields_empty_cells():
    a = make_adata()
    summary = SentenceSummary()
    s = list(iter_cell_sentences(a, SentenceOptions(layer="counts", skip_empty=False), summary=summary))
    assert len(s) == 60 and s[3].genes == () and s[3].sentence == ""
    assert summary.n_skipped == 1 and summary.n_written == 60


def test_genes_without_symbol_never_appear():
    a = make_adata()
    a.var["symbol"] = a.var["symbol"].astype(object)
    a.var.iloc[:20, 0] = None
    s, summary = cell_sentences(a, SentenceOptions(layer="counts", symbol_key="symbol"))
    assert summary.n_genes_without_symbol == 20
    keep = set(a.var["symbol"].iloc[20:])
    assert all(set(c.genes) <= keep for c in s)


def test_options_validate():
    with pytest.raises(InputError, match="top-k"):
        SentenceOptions(top_k=0)
    assert SentenceOptions(organism="mouse").organism == "Mus musculus"
    assert normalise_organism("Danio rerio") == "Danio rerio"
    with pytest.raises(InputError):
        normalise_organism("  ")


def test_missing_layer_raw_and_columns():
    a = make_adata()
    with pytest.raises(InputError, match="layers: counts, dense_counts"):
        cell_sentences(a, SentenceOptions(layer="nope"))
    with pytest.raises(InputError, match="obs columns: cell_type, batch"):
        cell_sentences(a, SentenceOptions(label_key="nope"))
    with pytest.raises(InputError, match="var columns: symbol"):
        cell_sentences(a, SentenceOptions(symbol_key="nope"))
    b = make_adata()
    b.raw = None
    with pytest.raises(InputError, match="no .raw"):
        cell_sentences(b)


@pytest.mark.parametrize("prefix", ["ENSG00000", "ENSMUSG00000"])
def test_ensembl_names_need_symbol_key(prefix):
    a = make_adata()
    a.var_names = [f"{prefix}{i:06d}.1" for i in range(a.n_vars)]
    with pytest.raises(InputError, match="--symbol-key") as err:
        cell_sentences(a, SentenceOptions(layer="counts"))
    assert "symbol" in str(err.value) and "\n" not in str(err.value)
    s, _ = cell_sentences(a, SentenceOptions(layer="counts", symbol_key="symbol"))
    assert s[0].genes[0].startswith("GENE")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("layer", ["counts", "dense_counts"])
def test_nan_inf_raise(bad, layer):
    a = make_adata()
    m = a.layers[layer]
    m = m.toarray() if sp.issparse(m) else m.copy()
    m[17, 5] = bad
    a.layers[layer] = sp.csr_matrix(m) if layer == "counts" else m
    with pytest.raises(InputError, match="NaN or inf.*cell17"):
        cell_sentences(a, SentenceOptions(layer=layer, chunk_size=8))


# --- files and streaming ---------------------------------------------------------

def test_h5ad_zarr_and_memory_agree(tmp_path):
    a = make_adata()
    a.write_h5ad(tmp_path / "a.h5ad")
    a.write_zarr(tmp_path / "a.zarr")
    opts = SentenceOptions(label_key="cell_type", top_k=6, chunk_size=9)
    ref, _ = cell_sentences(a, opts)
    for source in (tmp_path / "a.h5ad", str(tmp_path / "a.zarr"), read_anndata(tmp_path / "a.h5ad"),
                   read_anndata(tmp_path / "a.zarr")):
        got, summary = cell_sentences(source, opts)
        assert got == ref and summary.n_skipped == 1
    for layer in ("counts", "dense_counts", "X"):
        lo = SentenceOptions(layer=layer, chunk_size=9)
        assert cell_sentences(tmp_path / "a.h5ad", lo)[0] == cell_sentences(a, lo)[0]
        assert cell_sentences(read_anndata(tmp_path / "a.h5ad"), lo)[0] == cell_sentences(a, lo)[0]


class _Recorder:
    """Wraps a matrix; records every row slice read and refuses whole-matrix access."""

    def __init__(self, m):
        self.m, self.shape, self.reads = m, m.shape, []

    def __getitem__(self, key):
        assert isinstance(key, slice), "the matrix must be read by row slices"
        self.reads.append(key.stop - key.start)
        return self.m[key]


def test_streams_in_chunks(tmp_path):
    a = make_adata(n_cells=500)
    a.write_h5ad(tmp_path / "big.h5ad")
    store = open_cells(tmp_path / "big.h5ad")
    get = store._get
    rec: dict[str, _Recorder] = {}

    def recording_get(layer):
        rec[layer] = _Recorder(get(layer))
        return rec[layer]

    store._get = recording_get
    progress = []
    s = list(iter_cell_sentences(store, SentenceOptions(chunk_size=64), on_progress=lambda d, n: progress.append((d, n))))
    store.close()
    assert len(s) == 499
    assert max(rec["raw"].reads) <= 64 and sum(rec["raw"].reads) == 500
    assert progress[-1] == (500, 500) and len(progress) == 8
    st2 = open_cells(tmp_path / "big.h5ad")
    assert not sp.issparse(st2.matrix("raw")[0])  # an on-disk dataset, not an in-memory matrix
    st2.close()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_cells(tmp_path / "nope.h5ad")
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputError, match="cannot read"):
        open_cells(bad)
    with pytest.raises(InputError, match="cannot read"):
        read_anndata(bad)
    other = tmp_path / "x.csv"
    other.write_text("a,b\n")
    with pytest.raises(InputError, match="not an AnnData file"):
        open_cells(other)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError):
        open_cells(tmp_path / "empty.zarr")


def test_truncated_h5ad(tmp_path):
    a = make_adata()
    a.write_h5ad(tmp_path / "a.h5ad")
    data = (tmp_path / "a.h5ad").read_bytes()
    (tmp_path / "t.h5ad").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt"):
        cell_sentences(tmp_path / "t.h5ad")


# --- CLI -----------------------------------------------------------------------------

def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--hide-progress", *args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_cli_writes_table(tmp_path, capsys, suffix):
    a = make_adata()
    a.write_h5ad(tmp_path / "a.h5ad")
    out = tmp_path / f"s{suffix}"
    code, stdout, err = run_cli(["sentences", str(tmp_path / "a.h5ad"), "--label-key", "cell_type", "--top-k", "5",
                                 "--out", str(out), "--json"], capsys)
    assert code == 0, err
    assert '"skipped_no_expressed_genes": 1' in stdout and "cell3" in err
    if suffix == ".parquet":
        df = pq.read_table(out).to_pandas()
        assert pq.read_schema(out).metadata[b"circuitdb.top_k"] == b"5"
    else:
        df = pd.read_csv(out, sep="," if suffix == ".csv" else "\t")
    assert list(df.columns) == ["cell_id", "label", "sentence", "n_genes"]
    ref, _ = cell_sentences(a, SentenceOptions(label_key="cell_type", top_k=5))
    assert df["cell_id"].tolist() == [s.cell_id for s in ref]
    assert df["sentence"].tolist() == [s.sentence for s in ref]
    assert df["label"].tolist() == [s.label for s in ref]
    assert df["n_genes"].tolist() == [s.n_genes for s in ref]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.h5ad", out.name])


def _bad_inputs(tmp_path):
    a = make_adata()
    a.write_h5ad(tmp_path / "good.h5ad")
    (tmp_path / "corrupt.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    e = make_adata()
    e.var_names = [f"ENSG{i:011d}" for i in range(e.n_vars)]
    e.raw = e.copy()
    e.write_h5ad(tmp_path / "ensembl.h5ad")
    n = make_adata(n_cells=50)
    x = n.raw.X.toarray()
    x[45, 2] = np.nan
    n.raw = anndata.AnnData(sp.csr_matrix(x), obs=n.obs, var=n.raw.var)
    n.write_h5ad(tmp_path / "nan.h5ad")
    return {
        "missing": (["sentences", str(tmp_path / "missing.h5ad"), "--label-key", "cell_type"], "no such file"),
        "corrupt": (["sentences", str(tmp_path / "corrupt.h5ad"), "--label-key", "cell_type"], "cannot read"),
        "label": (["sentences", str(tmp_path / "good.h5ad"), "--label-key", "celltype"], "obs columns: cell_type, batch"),
        "ensembl": (["sentences", str(tmp_path / "ensembl.h5ad"), "--label-key", "cell_type"], "--symbol-key"),
        "nan": (["sentences", str(tmp_path / "nan.h5ad"), "--label-key", "cell_type", "--chunk-size", "8"], "NaN or inf"),
        "layer": (["sentences", str(tmp_path / "good.h5ad"), "--label-key", "cell_type", "--layer", "spliced"], "layers: counts"),
        "topk": (["sentences", str(tmp_path / "good.h5ad"), "--label-key", "cell_type", "--top-k", "0"], "top-k"),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "label", "ensembl", "nan", "layer", "topk"])
def test_cli_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    args, needle = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out.csv"
    code, stdout, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp file


def test_cli_bad_out_suffix(tmp_path, capsys):
    make_adata().write_h5ad(tmp_path / "a.h5ad")
    code, _, err = run_cli(["sentences", str(tmp_path / "a.h5ad"), "--label-key", "cell_type",
                            "--out", str(tmp_path / "s.xlsx")], capsys)
    assert code == 2 and ".csv, .tsv or .parquet" in err


def test_cli_failure_keeps_previous_output(tmp_path, capsys):
    args, _ = _bad_inputs(tmp_path)["nan"]
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    code, _, _ = run_cli([*args, "--out", str(out)], capsys)
    assert code == 2 and out.read_text() == "old\n"


def test_csv_quotes_labels_with_commas(tmp_path, capsys):
    a = make_adata()
    a.obs["cell_type"] = "CD4+/CD45RA+, naive"
    a.write_h5ad(tmp_path / "a.h5ad")
    out = tmp_path / "s.csv"
    code, _, err = run_cli(["sentences", str(tmp_path / "a.h5ad"), "--label-key", "cell_type", "--out", str(out)], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["label"] == "CD4+/CD45RA+, naive"
