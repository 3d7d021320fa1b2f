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
