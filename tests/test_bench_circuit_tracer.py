"""The circuit-tracer comparison setting (benchmarks/bench_circuit_tracer.py), without circuit-tracer.

The builder must produce what both engines are given: a NeoX model with parallel
residual and LayerNorm with bias at the stated shape, a centred unembedding (so
circuit-tracer's demeaned logits equal the raw ones), and ReLU transcoders with the
stated width and about 44 active features per position on a prompt it was *not*
calibrated on, saved in the format circuitdb's loaders read.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_circuit_tracer.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_circuit_tracer", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_circuit_tracer"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("bench_circuit_tracer", None)


@pytest.fixture(scope="module")
def setting(bench, tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("ct_setting")
    # the benchmark's shapes, with a small vocabulary to keep the test fast
    shape = {**bench.SETTING, "vocab": 1000}
    info = bench.build_setting(out, **shape)
    return out, info


def test_default_setting_is_the_issue_setting(bench) -> None:  # type: ignore[no-untyped-def]
    s = bench.SETTING
    assert (s["n_layers"], s["d_model"], s["n_heads"], s["d_mlp"]) == (4, 256, 4, 1024)
    assert s["features"] == 16384 and s["active_per_position"] == 44.0


def test_prompt_ids_start_with_the_special_token(bench) -> None:  # type: ignore[no-untyped-def]
    ids = bench.prompt_ids(100, 50304, seed=1)
    assert len(ids) == 100 and ids[0] == bench.BOS_ID
    assert min(ids[1:]) >= 2 and max(ids) < 50304
    assert ids == bench.prompt_ids(100, 50304, seed=1) and ids != bench.prompt_ids(100, 50304, seed=2)


def test_model_is_neox_parallel_layernorm_with_bias(setting) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    out, info = setting
    model = AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True, dtype=torch.float32).eval()
    cfg = model.config
    assert cfg.model_type == "gpt_neox" and cfg.use_parallel_residual
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (4, 256, 4, 1024)
    assert info["rotary_pct"] == pytest.approx(0.25) and info["use_parallel_residual"]
    ln = model.gpt_neox.layers[0].input_layernorm
    assert ln.bias is not None and float(ln.bias.abs().max()) > 0 and float((ln.weight - 1).abs().max()) > 0
    # centred unembedding: the mean logit is 0 at every position
    ids = torch.tensor([0, 5, 17, 999, 3])
    with torch.no_grad():
        logits = model(ids[None]).logits[0]
    assert float(logits.mean(-1).abs().max()) < 1e-5
    assert float(logits.std()) > 1e-2


def test_transcoders_shape_and_density(bench, setting) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from circuitdb.attribution.replacement import ReplacementModel, load_transcoders

    out, info = setting
    tcs = load_transcoders(out / "transcoders")
    assert sorted(tcs) == [0, 1, 2, 3]
    model = AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True, dtype=torch.float32).eval()
    rm = ReplacementModel(model, tcs)  # the shapes fit the model
    for layer, tc in tcs.items():
        assert tc.cfg.activation == "relu" and tc.cfg.layer == layer
        assert tuple(tc.W_enc.shape) == (256, 16384) and tuple(tc.W_dec.shape) == (16384, 256)
        assert torch.allclose(tc.W_dec.norm(dim=1), torch.ones(16384), atol=1e-5)
    assert info["active_per_position_calibration"] == pytest.approx([44.0] * 4, abs=1.0)
    # a fresh prompt (not the calibration one): about 44 active features per position in every layer
    ids = torch.tensor(bench.prompt_ids(64, info["vocab"], seed=7))
    run = rm.run(ids)
    per_pos = [layer.feat_pos.numel() / ids.numel() for layer in run.layers]
    assert all(30 <= n <= 60 for n in per_pos), per_pos
