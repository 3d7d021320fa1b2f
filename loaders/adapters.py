"""Architecture adapters: where, in a Hugging Face causal LM, each layer's parts live.

Two architectures are supported:

* **GPT-NeoX** (Pythia, C2S-Pythia-410m), with ``use_parallel_residual``:
  ``x_{l+1} = x_l + attn(ln1(x_l)) + mlp(ln2(x_l))``. The MLP's own input is
  ``ln2(x_l)``, so hooks go on the MLP module, never on a "resid_mid".
* **Gemma-2** (C2S-Scale): ``h = x + post_attn_norm(attn(input_norm(x)))``;
  ``x' = h + post_ff_norm(mlp(pre_ff_norm(h)))``. The transcoder target is the
  MLP module's own output, *before* ``post_feedforward_layernorm``: the hook sits
  on the module it replaces, and the post-norm (an RMSNorm with a learned
  scale) stays in the model, where attribution freezes its scale as a linear map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from circuitdb.errors import InputError

ArchName = Literal["gpt_neox", "gemma2"]


@dataclass(frozen=True)
class LayerParts:
    """Module names (relative to the model) and modules of one layer."""

    index: int
    mlp_name: str
    attn_name: str
    mlp: nn.Module
    attn: nn.Module
    norms: dict[str, nn.Module]


@dataclass(frozen=True)
class ArchAdapter:
    """Shape facts and module lookups for one loaded model."""

    arch: ArchName
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    parallel_residual: bool
    model: nn.Module

    def layer(self, i: int) -> LayerParts:
        if not 0 <= i < self.n_layers:
            raise InputError(f"layer {i} is out of range; the model has layers 0..{self.n_layers - 1}")
        if self.arch == "gpt_neox":
            block = self.model.gpt_neox.layers[i]  # type: ignore[attr-defined, index]
            prefix = f"gpt_neox.layers.{i}"
            return LayerParts(
                i, f"{prefix}.mlp", f"{prefix}.attention", block.mlp, block.attention,
                {"input_layernorm": block.input_layernorm, "post_attention_layernorm": block.post_attention_layernorm},
            )
        block = self.model.model.layers[i]  # type: ignore[attr-defined, index]
        prefix = f"model.layers.{i}"
        return LayerParts(
            i, f"{prefix}.mlp", f"{prefix}.self_attn", block.mlp, block.self_attn,
            {
                "input_layernorm": block.input_layernorm,
                "post_attention_layernorm": block.post_attention_layernorm,
                "pre_feedforward_layernorm": block.pre_feedforward_layernorm,
                "post_feedforward_layernorm": block.post_feedforward_layernorm,
            },
        )

    def layers(self) -> list[LayerParts]:
        return [self.layer(i) for i in range(self.n_layers)]

    @property
    def embed(self) -> nn.Module:
        return self.model.gpt_neox.embed_in if self.arch == "gpt_neox" else self.model.model.embed_tokens  # type: ignore[attr-defined]

    @property
    def final_norm(self) -> nn.Module:
        return self.model.gpt_neox.final_layer_norm if self.arch == "gpt_neox" else self.model.model.norm  # type: ignore[attr-defined]

    @property
    def unembed(self) -> nn.Module:
        out = self.model.get_output_embeddings()  # type: ignore[operator]  # embed_out (transformers<5) or lm_head
        if out is None:
            out = self.model.embed_out if self.arch == "gpt_neox" else self.model.lm_head  # type: ignore[attr-defined]
        return out

    def resolve_layers(self, spec: str | list[int] | None) -> list[int]:
        """``"all"``/``None`` -> every layer; ``"0,2,5"`` or ``"1-3"`` -> those, range-checked."""
        if spec is None or spec == "all":
            return list(range(self.n_layers))
        if isinstance(spec, str):
            out: list[int] = []
            for part in spec.split(","):
                part = part.strip()
                try:
                    if "-" in part:
                        a, b = part.split("-", 1)
                        out.extend(range(int(a), int(b) + 1))
                    else:
                        out.append(int(part))
                except ValueError:
                    raise InputError(f"bad layer list {spec!r}; use 'all', '0,2,5' or '1-3'") from None
            spec = out
        for i in spec:
            if not 0 <= i < self.n_layers:
                raise InputError(f"layer {i} is out of range; the model has layers 0..{self.n_layers - 1}")
        return sorted(dict.fromkeys(spec))


def adapter_for(model: nn.Module) -> ArchAdapter:
    """Build the adapter for a loaded ``AutoModelForCausalLM``; error for other architectures."""
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype == "gpt_neox":
        n_heads = cfg.num_attention_heads
        return ArchAdapter(
            "gpt_neox", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, n_heads, n_heads,
            cfg.hidden_size // n_heads, bool(cfg.use_parallel_residual), model,
        )
    if mtype == "gemma2":
        return ArchAdapter(
            "gemma2", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.head_dim, False, model,
        )
    raise InputError(f"unsupported architecture {mtype!r}; circuitdb supports gpt_neox (Pythia/C2S-Pythia) and gemma2 (C2S-Scale)")
