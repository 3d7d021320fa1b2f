"""The shipped demo transcoders fit the shipped demo model (layers, widths, model hash)."""

from importlib.resources import files

import pytest
import torch

from circuitdb.transcoder.evaluate import load_transcoders

DEMO_TC = files("circuitdb.demo_data") / "transcoders"
DEMO_MODEL = files("circuitdb.demo_data") / "model"


@pytest.mark.skipif(not (DEMO_TC / "transcoders.json").is_file(), reason="demo transcoders not shipped in this checkout")
def test_demo_transcoders_fit_the_demo_model():
    from circuitdb.loaders.model import load_model

    lm = load_model(str(DEMO_MODEL))
    tset = load_transcoders(str(DEMO_TC), model=lm.model)  # checks widths and the model hash
    assert tset.layers == list(range(lm.adapter.n_layers))
    for i, tc in tset.transcoders.items():
        assert tc.cfg.activation == "topk" and tc.cfg.k <= 32 and tc.W_enc.dtype == torch.float32
        assert tset.out_mean[i].shape == (lm.adapter.d_model,)


@pytest.mark.skipif(not (DEMO_TC / "transcoders.json").is_file(), reason="demo transcoders not shipped in this checkout")
@pytest.mark.parametrize("folder", ["circuits", "circuits_celltypist"])
def test_shipped_circuits_were_built_on_the_shipped_transcoders(folder):
    """Swapping a shipped transcoder without regenerating the circuits fails here (provenance hash mismatch)."""
    from circuitdb.attribution.attribute import transcoders_fingerprint
    from circuitdb.attribution.circuit import Circuit
    from circuitdb.attribution.replacement import load_transcoders as load_for_attribution

    shipped = transcoders_fingerprint(load_for_attribution(str(DEMO_TC)))
    circuits = sorted(p for p in (files("circuitdb.demo_data") / folder).iterdir() if p.name.startswith("circuit-"))
    assert circuits
    for p in circuits:
        prov = Circuit.load(p).provenance
        assert prov.transcoder_hash == shipped, p.name
        assert prov.transcoders == "circuitdb/demo_data/transcoders" and "/tmp" not in (prov.dataset_source or "")
