"""Named model configurations: the real C2S architectures, and tiny ones for tests.

The real weights can't be downloaded here; these configs let tests build random
models with exactly the published shapes, so the loading and hooking code is
exercised on the architecture it will meet.

* ``vandijklab/C2S-Pythia-410m-cell-type-prediction`` (and the other C2S-Pythia
  models) use Pythia-410m's GPT-NeoX config.
* ``vandijklab/C2S-Scale-Gemma-2-2B`` uses Gemma-2-2B's config.
"""

from __future__ import annotations

from typing import Any, Literal

from circuitdb.errors import InputError

Arch = Literal["gpt_neox", "gemma2"]


def c2s_pythia_410m_config(**overrides: Any) -> Any:
    """GPT-NeoX config of C2S-Pythia-410m (= Pythia-410m).

    vocab 50304, d_model 1024, 24 layers, 16 heads, d_mlp 4096, rotary on 25% of
    each head (base 10000), 2048 positions, parallel residual, untied embeddings.
    """
    from transformers import GPTNeoXConfig

    kw: dict[str, Any] = dict(
        vocab_size=50304,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        hidden_act="gelu",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        max_position_embeddings=2048,
        initializer_range=0.02,
        layer_norm_eps=1e-5,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_bias=True,
        bos_token_id=0,
        eos_token_id=0,
        architectures=["GPTNeoXForCausalLM"],
    )
    kw.update(overrides)
    return GPTNeoXConfig(**kw)


def c2s_scale_gemma2_2b_config(**overrides: Any) -> Any:
    """Gemma-2 config of C2S-Scale-Gemma-2-2B (= Gemma-2-2B).

    vocab 256000, d_model 2304, 26 layers, 8 query / 4 key-value heads of dim 256,
    d_mlp 9216 (gated GELU-tanh), pre- and post-feedforward RMSNorms, attention
    logit softcap 50, final logit softcap 30, query scale 1/sqrt(256), sliding
    window 4096 on alternate layers, tied embeddings.
    """
    from transformers import Gemma2Config

    kw: dict[str, Any] = dict(
        vocab_size=256000,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        query_pre_attn_scalar=256,
        sliding_window=4096,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        architectures=["Gemma2ForCausalLM"],
    )
    kw.update(overrides)
    return Gemma2Config(**kw)


def tiny_config(arch: Arch, *, vocab_size: int = 512, **overrides: Any) -> Any:
    """A few-hundred-thousand-parameter config of ``arch`` with the same structure as the real one.

    GPT-NeoX: 2 layers, d_model 64, 4 heads, d_mlp 256, rotary 25%, parallel
    residual, untied. Gemma-2: 2 layers (one sliding, one full), d_model 64,
    4 query / 2 key-value heads of dim 16, d_mlp 128, softcapping, sliding window 8.
    """
    if arch == "gpt_neox":
        kw: dict[str, Any] = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=256, max_position_embeddings=512)
        kw.update(overrides)
        return c2s_pythia_410m_config(**kw)
    if arch == "gemma2":
        kw = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                  sliding_window=8, max_position_embeddings=512)
        kw.update(overrides)
        return c2s_scale_gemma2_2b_config(**kw)
    raise InputError(f"unknown architecture {arch!r}; use gpt_neox or gemma2")


def random_model(config: Any, *, seed: int = 0, dtype: Any = None) -> Any:
    """A randomly initialised ``AutoModelForCausalLM`` for ``config``, in eval mode (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if config.model_type == "gemma2":
        kwargs["attn_implementation"] = "eager"  # softcapping is only exact in eager attention
    return AutoModelForCausalLM.from_config(config, **kwargs).eval()
