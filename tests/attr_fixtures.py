"""Tiny seeded models, transcoders and a tokenizer for the attribution tests (not a conftest)."""

from __future__ import annotations

import contextlib
import functools

import torch

from circuitdb.loaders.prompts import DEFAULT_PROMPT, PromptTemplate
from circuitdb.transcoder.model import Transcoder, TranscoderConfig

GENES = ["CD3E", "CD19", "MS4A1", "LYZ", "CD14", "NKG7", "GNLY", "CD8A", "IL7R", "FCGR3A", "PPBP", "HLA-DRA",
         "S100A8", "CST3", "MALAT1", "RPS27", "CCR7", "GZMB", "CD79A", "FCER1A"]
CELL_TYPES = ["CD14+ Monocyte", "CD19+ B", "CD4+/CD25 T Reg", "CD4+/CD45RO+ Memory", "CD56+ NK", "Dendritic"]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():  # noqa: ANN201
    """A byte-level BPE fast tokenizer trained on the prompt template, genes and cell types."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"])
    corpus = [DEFAULT_PROMPT, PromptTemplate().answer] + [" ".join(GENES)] * 3 + [" " + c + "." for c in CELL_TYPES] * 3
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def tiny_neox(*, dtype: torch.dtype = torch.float64, parallel: bool = True, seed: int = 0, layers: int = 2,
              vocab: int | None = None, d: int = 32, heads: int = 4, ctx: int = 256):  # noqa: ANN201
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=vocab or len(tiny_tokenizer()), hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * d, max_position_embeddings=ctx, rotary_pct=0.25, use_parallel_residual=parallel,
                        attn_implementation="eager")
    m = GPTNeoXForCausalLM(cfg).to(dtype).eval()
    with torch.no_grad():  # non-trivial norms and biases so every term is exercised
        for name, p in m.named_parameters():
            if "layernorm" in name or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.add_(0.05 * torch.randn_like(p))
    return m


def tiny_gemma(*, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 2, vocab: int | None = None, d: int = 32, ctx: int = 256):  # noqa: ANN201
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    cfg = Gemma2Config(vocab_size=vocab or len(tiny_tokenizer()), hidden_size=d, num_hidden_layers=layers, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=8, intermediate_size=4 * d, max_position_embeddings=ctx,
                       sliding_window=8, final_logit_softcapping=5.0, attn_logit_softcapping=10.0, attn_implementation="eager")
    m = Gemma2ForCausalLM(cfg).to(dtype).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m


def random_transcoders(model, *, n_features: int = 64, activation: str = "topk", k: int = 6, skip: bool = False,
                       seed: int = 1, dtype: torch.dtype = torch.float64, dec_scale: float = 1.0) -> dict[int, Transcoder]:  # noqa: ANN001
    """One random transcoder per layer (biases non-zero so bias terms matter).

    ``dec_scale`` scales the decoder, e.g. to the size of a random model's MLP outputs
    (trained transcoders approximate them) for float32 round-off checks.
    """
    from circuitdb.loaders.adapters import adapter_for

    ad = adapter_for(model)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer in range(ad.n_layers):
        cfg = TranscoderConfig(d_in=ad.d_model, d_features=n_features, activation=activation,  # type: ignore[arg-type]
                               k=k if activation == "topk" else None, skip=skip, layer=layer)
        tc = Transcoder(cfg)
        tc.reset_parameters(g)
        with torch.no_grad():
            tc.W_enc.copy_(torch.randn(ad.d_model, n_features, generator=g) / ad.d_model**0.5)
            tc.b_enc.copy_(0.1 * torch.randn(n_features, generator=g))
            tc.W_dec.mul_(dec_scale)
            tc.b_dec.copy_(0.1 * dec_scale * torch.randn(ad.d_model, generator=g))
            if tc.W_skip is not None:
                tc.W_skip.copy_(0.1 * dec_scale * torch.randn(ad.d_model, ad.d_model, generator=g) / ad.d_model**0.5)
        out[layer] = tc.to(dtype).eval()
    return out


def write_cli_inputs(root, *, top_k: int, n_features: int, k: int) -> None:  # noqa: ANN001
    """A saved tiny model (with its tokenizer and model card), its transcoders and a 4-cell ``data.h5ad``
    under ``root`` (``model/``, ``tc/``, ``data.h5ad``): the inputs of ``circuitdb attribute``."""
    import json

    import anndata as ad
    import numpy as np
    import pandas as pd

    with contextlib.suppress(AttributeError):  # pandas 3 strings: anndata >= 0.11 writes them when asked to
        ad.settings.allow_write_nullable_strings = True
    model = tiny_neox(dtype=torch.float32, ctx=512)
    model.save_pretrained(root / "model")
    tiny_tokenizer().save_pretrained(root / "model")
    (root / "model" / "circuitdb.json").write_text(json.dumps({"label_key": "cell_type", "top_k": top_k, "cell_types": CELL_TYPES}))
    for layer, tc in random_transcoders(model, dtype=torch.float32, n_features=n_features, k=k).items():
        tc.save(root / "tc" / f"layer_{layer}")
    X = np.random.default_rng(0).poisson(1.0, size=(4, len(GENES))).astype(np.float32)
    obs = pd.DataFrame({"cell_type": ["CD19+ B", "CD56+ NK", "Dendritic", "CD19+ B"]}, index=[f"cell{i}" for i in range(4)])
    a = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=GENES))
    a.raw = a
    a.write_h5ad(root / "data.h5ad")
