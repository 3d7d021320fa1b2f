"""The replacement model reproduces the model; the frozen linear model reproduces its hidden states."""

from __future__ import annotations

import pytest
import torch

from attr_fixtures import random_transcoders, tiny_gemma, tiny_neox
from circuitdb.attribution.replacement import ReplacementModel, attn_forward, attn_transpose, check_transcoders, model_fingerprint
from circuitdb.errors import InputError
from circuitdb.loaders.adapters import adapter_for


@pytest.fixture(autouse=True)
def _seed():  # noqa: ANN202
    """Seeded, and single-threaded: tiny matmuls on a shared machine run faster on one thread."""
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ids(n: int = 12, vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(3))


MODELS = {
    "neox_parallel": lambda dt: tiny_neox(dtype=dt, vocab=100),
    "neox_sequential": lambda dt: tiny_neox(dtype=dt, vocab=100, parallel=False),
    "gemma2": lambda dt: tiny_gemma(dtype=dt, vocab=100),
}


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize("skip", [False, True])
def test_replacement_forward_reproduces_logits(arch: str, skip: bool) -> None:
    model = MODELS[arch](torch.float32)
    # decoder at the scale of the random model's MLP outputs, as a trained transcoder would be
    tcs = random_transcoders(model, skip=skip, dtype=torch.float32, dec_scale=0.05)
    rm = ReplacementModel(model, tcs)
    ids = _ids()
    with torch.no_grad():
        ref = model(ids[None]).logits[0]
    run = rm.run(ids)
    errors = {L.index: L.error for L in run.layers}
    out = rm.forward(ids, errors)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    # without the error terms the replacement is a different model
    assert not torch.allclose(rm.forward(ids), ref, atol=1e-3)


@pytest.mark.parametrize("arch", list(MODELS))
def test_frozen_linear_forward_matches_hidden_states(arch: str) -> None:
    model = MODELS[arch](torch.float64)
    rm = ReplacementModel(model, random_transcoders(model, skip=True))
    ids = _ids(20)
    run = rm.run(ids)
    resid, mlp_ins, logits = run.linear_forward()
    # HF Gemma-2 computes RMSNorm in float32 even in a float64 model: 1e-5 there
    tol = 1e-9 if arch.startswith("neox") else 1e-5
    for i, (mine, true, hf) in enumerate(zip(resid, run.resid, run.resid_model)):
        assert torch.allclose(mine, true, atol=1e-12), f"residual entering layer {i}"
        assert torch.allclose(mine, hf, atol=tol, rtol=tol), f"HF residual entering layer {i}"
    for L, u in zip(run.layers, mlp_ins):
        assert torch.allclose(u, L.mlp_in, atol=1e-9)
    final = logits
    if run.softcap:
        final = run.softcap * torch.tanh(logits / run.softcap)
    assert torch.allclose(final, run.logits, atol=tol)
    assert torch.allclose(logits[-1], run.pre_softcap_logits(-1), atol=1e-9)


@pytest.mark.parametrize("arch", list(MODELS))
def test_ov_reimplementation_matches_hf_attention(arch: str) -> None:
    """Our per-head OV with the captured pattern equals the HF attention module output."""
    model = MODELS[arch](torch.float64)
    ad = adapter_for(model)
    rm = ReplacementModel(model, random_transcoders(model))
    ids = _ids(10)
    got = {}
    h = ad.layer(1).attn.register_forward_hook(lambda m, a, o: got.__setitem__("out", o[0][0]))
    try:
        run = rm.run(ids)
    finally:
        h.remove()
    L = run.layers[1]
    y = L.norm_attn.apply(run.resid[1]) + (L.norm_attn.bias if L.norm_attn.bias is not None else 0)
    y = L.norm_attn.apply(run.resid_model[1]) + (L.norm_attn.bias if L.norm_attn.bias is not None else 0)
    mine = attn_forward(L.ov, L.pattern, y) + L.ov.const
    tol = 1e-10 if arch.startswith("neox") else 1e-6  # Gemma-2 RMSNorm runs in float32 inside HF
    assert torch.allclose(mine, got["out"], atol=tol)


def test_attn_transpose_is_the_adjoint() -> None:
    model = tiny_gemma(vocab=100)
    rm = ReplacementModel(model, random_transcoders(model))
    run = rm.run(_ids(9))
    L = run.layers[0]
    x = torch.randn(9, 32, dtype=torch.float64)
    g = torch.randn(3, 9, 32, dtype=torch.float64)
    lhs = torch.einsum("rpd,pd->r", g, attn_forward(L.ov, L.pattern, x))
    rhs = torch.einsum("rpd,pd->r", attn_transpose(L.ov, L.pattern, g), x)
    assert torch.allclose(lhs, rhs, atol=1e-10)
    per_head = attn_transpose(L.ov, L.pattern, g, per_head=True)
    assert torch.allclose(per_head.sum(1), attn_transpose(L.ov, L.pattern, g), atol=1e-12)
    for norm in (L.norm_attn, L.post_mlp):
        assert norm is not None
        lhs = torch.einsum("rpd,pd->r", g, norm.apply(x))
        rhs = torch.einsum("rpd,pd->r", norm.transpose(g), x)
        assert torch.allclose(lhs, rhs, atol=1e-10)


def test_layernorm_transpose_is_the_adjoint() -> None:
    model = tiny_neox(vocab=100)
    run = ReplacementModel(model, random_transcoders(model)).run(_ids(7))
    n = run.layers[1].norm_mlp
    x, g = torch.randn(7, 32, dtype=torch.float64), torch.randn(2, 7, 32, dtype=torch.float64)
    assert torch.allclose(torch.einsum("rpd,pd->r", g, n.apply(x)), torch.einsum("rpd,pd->r", n.transpose(g), x), atol=1e-10)


def test_transcoders_of_another_model_are_refused() -> None:
    model = tiny_neox(vocab=100)
    other = tiny_neox(vocab=100, d=48)
    with pytest.raises(InputError, match="another model"):
        check_transcoders(adapter_for(model), random_transcoders(other))
    tcs = random_transcoders(model)
    for tc in tcs.values():  # same widths, but recorded as trained on another model
        tc.cfg.model = model_fingerprint(other)
    with pytest.raises(InputError, match="trained on model"):
        ReplacementModel(model, tcs)
    for tc in tcs.values():
        tc.cfg.model = model_fingerprint(model)
    ReplacementModel(model, tcs)
    del tcs[1]
    with pytest.raises(InputError, match="layers \\[1\\]"):
        ReplacementModel(model, tcs)


def test_prompt_longer_than_context_is_refused() -> None:
    model = tiny_neox(vocab=100, ctx=16)
    rm = ReplacementModel(model, random_transcoders(model))
    with pytest.raises(InputError, match="context is 16"):
        rm.run(_ids(17))
