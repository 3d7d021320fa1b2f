"""circuitdb predict with the shipped demo model: CSV schema, JSON accuracy, bad input."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from circuitdb.cli import cli, main
from circuitdb.demo import model_dir


@pytest.fixture(scope="module")
def small_h5ad(tmp_path_factory):
    import scanpy as sc

    ad = sc.datasets.pbmc68k_reduced()[:30].copy()
    p = tmp_path_factory.mktemp("data") / "small.h5ad"
    ad.write_h5ad(p)
    return p, ad


def test_predict_writes_csv_and_json_with_shipped_model(small_h5ad, tmp_path):
    path, ad = small_h5ad
    out = tmp_path / "preds.csv"
    r = CliRunner().invoke(cli, ["--hide-progress", "predict", "--model", str(model_dir()), str(path),
                                 "--label-key", "bulk_labels", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["cell_id", "true", "predicted", "margin"]
    assert df["cell_id"].tolist() == ad.obs_names.tolist()
    assert df["true"].tolist() == ad.obs["bulk_labels"].astype(str).tolist()
    meta = json.loads((model_dir() / "circuitdb.json").read_text())
    assert set(df["predicted"]) <= set(meta["cell_types"])
    assert (df["margin"].astype(float) >= 0).all()
    held = np.arange(len(df)) % 5 == 0
    assert summary["n_cells"] == 30 and summary["n_heldout"] == 6
    assert summary["heldout_accuracy"] == pytest.approx((df["true"] == df["predicted"])[held].mean())
    assert summary["accuracy"] == pytest.approx((df["true"] == df["predicted"]).mean())
    for ct, rec in summary["per_class_recall"].items():
        m = df["true"] == ct
        assert rec == pytest.approx((df.loc[m, "predicted"] == ct).mean())


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


def test_model_dir_without_weights_exits_2(small_h5ad, tmp_path, capsys):
    bad = tmp_path / "noweights"
    shutil.copytree(model_dir(), bad)
    (bad / "model.safetensors").unlink()
    out = tmp_path / "p.csv"
    code, err = run_main(["predict", "--model", str(bad), str(small_h5ad[0]), "--out", str(out)], capsys)
    assert code == 2 and "no model weights" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_mismatched_tokenizer_exits_2(small_h5ad, tmp_path, capsys):
    from circuitdb.demo.tokenizer import train_bpe

    bad = tmp_path / "othertok"
    shutil.copytree(model_dir(), bad)
    train_bpe(["AAA BBB CCC DDD"] * 10, vocab_size=280).save_pretrained(str(bad))
    code, err = run_main(["predict", "--model", str(bad), str(small_h5ad[0])], capsys)
    assert code == 2 and "tokenizer" in err and "does not match" in err and len(err.splitlines()) == 1


def test_missing_data_and_bad_label_key_exit_2(small_h5ad, tmp_path, capsys):
    code, err = run_main(["predict", "--model", str(model_dir()), str(tmp_path / "nope.h5ad")], capsys)
    assert code == 2 and "no such file" in err
    corrupt = tmp_path / "corrupt.h5ad"
    corrupt.write_bytes(b"not an hdf5 file")
    code, err = run_main(["predict", "--model", str(model_dir()), str(corrupt)], capsys)
    assert code == 2 and "cannot read" in err and len(err.splitlines()) == 1
    code, err = run_main(["predict", "--model", str(model_dir()), str(small_h5ad[0]), "--label-key", "nope"], capsys)
    assert code == 2 and "bulk_labels" in err  # lists the columns that exist


def test_demo_model_path_prints_shipped_dir():
    r = CliRunner().invoke(cli, ["demo-model", "path"])
    assert r.exit_code == 0 and r.stdout.strip() == str(model_dir())


def test_cell_without_expressed_genes_is_kept_unscored_and_counted(tmp_path):
    import anndata
    import scanpy as sc
    import scipy.sparse as sp

    ad = sc.datasets.pbmc68k_reduced()[:6].copy()
    raw = sp.csr_matrix(ad.raw.X).toarray()
    raw[2] = 0.0
    ad.raw = anndata.AnnData(X=sp.csr_matrix(raw), var=ad.raw.var, obs=ad.obs)
    path = tmp_path / "empty_cell.h5ad"
    ad.write_h5ad(path)
    out = tmp_path / "p.csv"
    r = CliRunner().invoke(cli, ["--hide-progress", "predict", "--model", str(model_dir()), str(path),
                                 "--json", "--out", str(out)])  # label key defaults to the model's
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 6 and df.loc[2, "predicted"] == "" and df.loc[2, "margin"] == ""
    assert summary["n_skipped_no_genes"] == 1 and summary["n_scored"] == 5


def test_write_obs_labels_a_copy_of_the_data(tmp_path):
    import anndata
    import scanpy as sc
    import scipy.sparse as sp

    ad = sc.datasets.pbmc68k_reduced()[:8].copy()
    raw = sp.csr_matrix(ad.raw.X).toarray()
    raw[3] = 0.0  # one cell without expressed genes: no prediction
    ad.raw = anndata.AnnData(X=sp.csr_matrix(raw), var=ad.raw.var, obs=ad.obs)
    del ad.obs["bulk_labels"]  # unlabelled, as a new dataset is
    path = tmp_path / "unlabelled.h5ad"
    ad.write_h5ad(path)
    out, labelled = tmp_path / "p.csv", tmp_path / "labelled.h5ad"
    r = CliRunner().invoke(cli, ["--hide-progress", "predict", "--model", str(model_dir()), str(path), "--out", str(out),
                                 "--write-obs", "predicted_type", "--out-h5ad", str(labelled), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    df = pd.read_csv(out, keep_default_na=False)
    lab = anndata.read_h5ad(labelled)
    meta = json.loads((model_dir() / "circuitdb.json").read_text())
    assert lab.obs_names.tolist() == ad.obs_names.tolist() and lab.shape == ad.shape
    col = lab.obs["predicted_type"]
    assert isinstance(col.dtype, pd.CategoricalDtype) and list(col.cat.categories) == meta["cell_types"]
    assert pd.isna(col.iloc[3]) and np.isnan(lab.obs["predicted_type_margin"].iloc[3])
    keep = np.arange(8) != 3
    assert col[keep].astype(str).tolist() == df["predicted"][keep].tolist()
    np.testing.assert_allclose(lab.obs["predicted_type_margin"][keep], df["margin"][keep].astype(float), rtol=1e-6)
    assert lab.uns["predicted_type"]["params"]["top_k"] == meta["top_k"]
    assert sum(summary["predicted_counts"].values()) == 7
    np.testing.assert_array_equal(sp.csr_matrix(lab.raw.X).toarray(), raw)  # the data itself is unchanged


def test_write_obs_bad_options_exit_2_and_write_nothing(small_h5ad, tmp_path, capsys):
    path = str(small_h5ad[0])
    labelled = tmp_path / "l.h5ad"
    base = ["predict", "--model", str(model_dir()), path]
    code, err = run_main(base + ["--write-obs", "predicted_type"], capsys)
    assert code == 2 and "go together" in err and len(err.splitlines()) == 1
    code, err = run_main(base + ["--label-key", "bulk_labels", "--write-obs", "bulk_labels", "--out-h5ad", str(labelled)], capsys)
    assert code == 2 and "is the --label-key column" in err and len(err.splitlines()) == 1
    code, err = run_main(base + ["--write-obs", "p", "--out-h5ad", str(tmp_path / "l.csv")], capsys)
    assert code == 2 and "must end in .h5ad" in err
    assert list(tmp_path.iterdir()) == []


def test_labelled_anndata_refuses_other_cells():
    import scanpy as sc

    from circuitdb.demo.predict import Predictions, labelled_anndata
    from circuitdb.errors import InputError

    ad = sc.datasets.pbmc68k_reduced()[:3].copy()
    table = pd.DataFrame({"cell_id": ["x", "y", "z"], "true": "", "predicted": "CD19+ B", "margin": 1.0})
    preds = Predictions(table=table, cell_types=["CD19+ B"], top_k=40, holdout_every=5, n_skipped=0, scores=np.zeros((3, 1)))
    with pytest.raises(InputError, match="other cells"):
        labelled_anndata(ad, preds, "p")
