"""Architecture adapters: where, in a Hugging Face causal LM, each layer's parts live.

Two architectures are supported:

* **GPT-NeoX** (Pythia, C2S-Pythia-410m), with ``use_parallel_residual``:
  ``x_{l+1} = x_l + attn(ln1(x_l)) + mlp(ln2(x_l))``. The MLP's own input is
  ``ln2(x_l)``, so hooks go on the MLP module, never on a "resid_mid".
  Without parallel residual: ``h = x + attn(ln1(x))``, ``x' = h + mlp(ln2(h))``.
* **Gemma-2** (C2S-Scale): ``h = x + post_attn_norm(attn(input_norm(x)))``;
  ``x' = h + post_ff_norm(mlp(pre_ff_norm(h)))``. The transcoder target is the
  MLP module's own output, *before* ``post_feedforward_layernorm``: the hook sits
  on the module it replaces, and the post-norm (an RMSNorm with a learned
  scale) stays in the model, where attribution freezes its scale as a linear map.
  Attention logits are soft-capped (``attn_logit_softcap``), and so are the
  final logits (``final_logit_softcap``): ``cap * tanh(logits / cap)``.

:meth:`ArchAdapter.mlp_input` and :meth:`ArchAdapter.block_output` spell these
equations out in code; the tests check them against forward hooks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from circuitdb.errors import InputError

ArchName = Literal["gpt_neox", "gemma2"]


@dataclass(frozen=True)
class LayerParts:
    """Module names (relative to the model) and modules of one layer.

    Attributes
    ----------
    index
        Layer number.
    mlp_name, attn_name
        ``named_modules()`` names of the MLP and attention modules (hook these).
    mlp, attn
        The modules themselves.
    norms
        The layer's norms by their Hugging Face attribute name.
    block_name, block
        The decoder layer; a forward pre-hook on it sees the residual stream ``x_l``.
    mlp_in_norm
        Key in ``norms`` of the norm whose output is the MLP's input.
    mlp_out_norm
        Key in ``norms`` of the norm applied to the MLP's output before the residual add (``None``: added as is).
    attn_out_name, mlp_out_name
        Names of the output projections (``attention.dense``/``o_proj``; ``dense_4h_to_h``/``down_proj``).
    """

    index: int
    mlp_name: str
    attn_name: str
    mlp: nn.Module
    attn: nn.Module
    norms: dict[str, nn.Module]
    block_name: str = ""
    block: nn.Module | None = None
    mlp_in_norm: str = "post_attention_layernorm"
    mlp_out_norm: str | None = None
    attn_out_name: str = ""
    mlp_out_name: str = ""


@dataclass(frozen=True)
class ArchAdapter:
    """Shape facts and module lookups for one loaded model.

    Attributes
    ----------
    arch
        ``"gpt_neox"`` or ``"gemma2"``.
    n_layers, d_model, d_mlp
        Depth and widths.
    n_heads, n_kv_heads, head_dim
        Attention heads (``n_kv_heads < n_heads``: grouped-query attention).
    parallel_residual
        GPT-NeoX's ``use_parallel_residual``: attention and MLP read the same ``x_l``.
    model
        The wrapped model.
    rotary_dim
        Dimensions of each head that get rotary embeddings (``head_dim * partial_rotary_factor``).
    tied_embeddings
        Whether the unembedding shares the embedding matrix.
    attn_logit_softcap, final_logit_softcap
        Gemma-2's soft caps (``None`` when absent).
    """

    arch: ArchName
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    parallel_residual: bool
    model: nn.Module
    rotary_dim: int = 0
    tied_embeddings: bool = False
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def _blocks(self) -> Any:
        return self.model.gpt_neox.layers if self.arch == "gpt_neox" else self.model.model.layers  # type: ignore[attr-defined]

    @property
    def layers_prefix(self) -> str:
        """``named_modules()`` prefix of the decoder layers."""
        return "gpt_neox.layers" if self.arch == "gpt_neox" else "model.layers"

    def layer(self, i: int) -> LayerParts:
        """The parts of layer ``i`` (range-checked)."""
        if not isinstance(i, int) or not 0 <= i < self.n_layers:
            raise InputError(f"layer {i} is out of range; the model has layers 0..{self.n_layers - 1}")
        block = self._blocks()[i]
        prefix = f"{self.layers_prefix}.{i}"
        if self.arch == "gpt_neox":
            return LayerParts(
                i, f"{prefix}.mlp", f"{prefix}.attention", block.mlp, block.attention,
                {"input_layernorm": block.input_layernorm, "post_attention_layernorm": block.post_attention_layernorm},
                block_name=prefix, block=block, mlp_in_norm="post_attention_layernorm", mlp_out_norm=None,
                attn_out_name=f"{prefix}.attention.dense", mlp_out_name=f"{prefix}.mlp.dense_4h_to_h",
            )
        return LayerParts(
            i, f"{prefix}.mlp", f"{prefix}.self_attn", block.mlp, block.self_attn,
            {
                "input_layernorm": block.input_layernorm,
                "post_attention_layernorm": block.post_attention_layernorm,
                "pre_feedforward_layernorm": block.pre_feedforward_layernorm,
                "post_feedforward_layernorm": block.post_feedforward_layernorm,
            },
            block_name=prefix, block=block, mlp_in_norm="pre_feedforward_layernorm",
            mlp_out_norm="post_feedforward_layernorm",
            attn_out_name=f"{prefix}.self_attn.o_proj", mlp_out_name=f"{prefix}.mlp.down_proj",
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
        # transformers v5 names GPT-NeoX's unembedding lm_head (v4: embed_out)
        head = getattr(self.model, "lm_head", None)
        return head if head is not None else self.model.embed_out  # type: ignore[attr-defined]

    @property
    def embedding_row_scale(self) -> float:
        """Factor between a row of ``embed.weight`` and the residual stream it starts (Gemma: ``sqrt(d_model)``)."""
        return float(self.d_model) ** 0.5 if self.arch == "gemma2" else 1.0

    @property
    def embed_scale(self) -> float:
        """Factor to apply to ``embed(ids)`` to get layer 0's input.

        transformers v5's Gemma-2 embedding module scales by ``sqrt(d_model)`` itself
        (so this is 1.0); older versions scaled in the model's forward.
        """
        if self.arch == "gemma2" and not hasattr(self.embed, "embed_scale"):
            return self.embedding_row_scale
        return 1.0

    def mlp_input(self, i: int, resid_pre: Tensor, attn_out: Tensor) -> Tensor:
        """What layer ``i``'s MLP module receives, given the layer's residual input and its attention module's output."""
        parts = self.layer(i)
        if self.arch == "gpt_neox":
            h = resid_pre if self.parallel_residual else resid_pre + attn_out
            return parts.norms["post_attention_layernorm"](h)
        h = resid_pre + parts.norms["post_attention_layernorm"](attn_out)
        return parts.norms["pre_feedforward_layernorm"](h)

    def block_output(self, i: int, resid_pre: Tensor, attn_out: Tensor, mlp_out: Tensor) -> Tensor:
        """Layer ``i``'s residual output from its input and its attention and MLP modules' outputs."""
        parts = self.layer(i)
        if self.arch == "gpt_neox":
            return resid_pre + attn_out + mlp_out
        h = resid_pre + parts.norms["post_attention_layernorm"](attn_out)
        return h + parts.norms["post_feedforward_layernorm"](mlp_out)

    def logits(self, resid_final: Tensor) -> Tensor:
        """Logits from the last layer's residual output (final norm, unembedding, soft cap)."""
        import torch

        out = self.unembed(self.final_norm(resid_final))
        if self.final_logit_softcap:
            out = self.final_logit_softcap * torch.tanh(out / self.final_logit_softcap)
        return out

    def resolve_layers(self, spec: str | list[int] | None) -> list[int]:
        """``"all"``/``None`` -> every layer; ``"0,2,5"`` or ``"1-3"`` -> those, range-checked."""
        if spec is None or spec == "all":
            return list(range(self.n_layers))
        if isinstance(spec, str):
            out: list[int] = []
            for part in spec.split(","):
                m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
                if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                    raise InputError(f"bad layer list {spec!r}; use 'all', '0,2,5' or '1-3'")
                lo = int(m.group(1))
                out.extend(range(lo, int(m.group(2) or lo) + 1))
            spec = out
        if not spec:
            raise InputError("the layer list is empty; use 'all', '0,2,5' or '1-3'")
        for i in spec:
            if not 0 <= i < self.n_layers:
                raise InputError(f"layer {i} is out of range; the model has layers 0..{self.n_layers - 1}")
        return sorted(dict.fromkeys(spec))


def _rope_fraction(cfg: Any) -> float:
    rp = getattr(cfg, "rope_parameters", None) or {}
    if isinstance(rp, dict) and "partial_rotary_factor" in rp:
        return float(rp["partial_rotary_factor"])
    for key in ("partial_rotary_factor", "rotary_pct"):
        if getattr(cfg, key, None) is not None:
            return float(getattr(cfg, key))
    return 1.0


def adapter_for(model: nn.Module) -> ArchAdapter:
    """Build the adapter for a loaded ``AutoModelForCausalLM``; error for other architectures.

    Raises
    ------
    InputError
        Not a GPT-NeoX / Gemma-2 causal LM, or its modules don't match its config.
    """
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype == "gpt_neox":
        if not hasattr(model, "gpt_neox") or not (hasattr(model, "lm_head") or hasattr(model, "embed_out")):
            raise InputError(f"expected a GPTNeoXForCausalLM, got {type(model).__name__}; load it with AutoModelForCausalLM")
        n_heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // n_heads
        adapter = ArchAdapter(
            "gpt_neox", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, n_heads, n_heads,
            head_dim, bool(cfg.use_parallel_residual), model,
            rotary_dim=int(head_dim * _rope_fraction(cfg)),
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
        )
    elif mtype == "gemma2":
        if not hasattr(model, "model") or not hasattr(model, "lm_head"):
            raise InputError(f"expected a Gemma2ForCausalLM, got {type(model).__name__}; load it with AutoModelForCausalLM")
        adapter = ArchAdapter(
            "gemma2", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.head_dim, False, model,
            rotary_dim=int(cfg.head_dim * _rope_fraction(cfg)),
            tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", True)),
            attn_logit_softcap=getattr(cfg, "attn_logit_softcapping", None),
            final_logit_softcap=getattr(cfg, "final_logit_softcapping", None),
            extra={"query_pre_attn_scalar": cfg.query_pre_attn_scalar, "sliding_window": cfg.sliding_window,
                   "layer_types": list(getattr(cfg, "layer_types", None) or [])},
        )
    else:
        raise InputError(
            f"unsupported architecture {mtype!r}; circuitdb supports gpt_neox (Pythia/C2S-Pythia) and gemma2 (C2S-Scale)"
        )
    n_blocks = len(adapter._blocks())
    if n_blocks != adapter.n_layers:
        raise InputError(f"the model has {n_blocks} layers but its config says {adapter.n_layers}; reload it from a consistent directory")
    return adapter
