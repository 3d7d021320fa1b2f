"""The shipped circuits of the second dataset (celltypist PBMC sample): provenance matches the demo model and transcoders."""

import json
from importlib import resources

from circuitdb.attribution.circuit import Circuit
from circuitdb.demo import model_dir


def _folder(name):
    return resources.files("circuitdb.demo_data").joinpath(name)


def test_celltypist_circuits_share_model_and_transcoders_with_pbmc_ones():
    ct = _folder("circuits_celltypist")
    files = sorted(p for p in ct.iterdir() if p.name.startswith("circuit-"))
    assert files, "circuitdb/demo_data/circuits_celltypist is empty"
    pbmc = Circuit.load(next(p for p in _folder("circuits").iterdir() if p.name.startswith("circuit-"))).provenance
    meta = json.loads((model_dir() / "circuitdb.json").read_text())
    types = set()
    for p in files:
        prov = Circuit.load(p).provenance
        assert prov.dataset == "celltypist_pbmc_sample" and prov.dataset_id.startswith("celltypist_pbmc_sample-")
        assert (prov.model_hash, prov.transcoder_hash) == (pbmc.model_hash, pbmc.transcoder_hash)
        assert prov.dataset_n_cells == 559 and all(c.startswith("Cell_") for c in prov.cells)
        types.add(prov.cell_type)
    assert types <= set(meta["cell_types"]) and len(types) == len(files)
    # feature density/top genes stay those of the training data: no dataset-wide feature stats for this dataset
    assert not ct.joinpath("feature_stats.json").is_file()
    assert sum(p.stat().st_size for p in ct.iterdir()) < 5_000_000
