"""The replacement model: every MLP swapped for its transcoder plus an error term.

Two views of the same thing:

* :meth:`ReplacementModel.forward` runs the Hugging Face model with each MLP's
  output replaced by ``transcoder(u).out + error`` (hooks on the MLP modules), so
  with the errors of the same prompt it reproduces the original logits exactly.
* :meth:`ReplacementModel.run` runs the real model once and freezes everything
  that is non-linear between nodes (the *local replacement model* of
  circuit-tracer and Dunefsky et al.): attention patterns, LayerNorm/RMSNorm
  denominators (per position), the transcoder activations and the errors. What is
  left, :class:`FrozenRun`, is linear between nodes; it has an explicit forward
  (:meth:`FrozenRun.linear_forward`, used to check it reproduces the model) and
  batched transposed maps used by :mod:`circuitdb.attribution.attribute`.

Attention is re-implemented from the module weights (OV circuit per head):
``attn(y) = sum_h A_h (y W_V^h) W_O^h + c`` with ``c = b_O + sum_h b_V^h W_O^h``
(rows of a causal pattern sum to 1, so the value bias is a constant).

* **GPT-NeoX.** ``attention.query_key_value`` is a fused ``(3 d, d)`` weight whose
  output is viewed as ``(heads, 3 * head_dim)``: per head the rows are ``[q, k, v]``.
  Rotary embeddings (on part of the head dims) touch only Q/K, which are frozen in
  the pattern, so OV is linear. ``attention.dense`` is ``W_O``. With
  ``use_parallel_residual`` both attention and MLP read ``x_l`` through their own
  LayerNorm. LayerNorm mean-centring is linear and kept; its ``1/sigma`` is frozen;
  its bias is a constant (a bias node).
* **Gemma-2.** RMSNorms scale by ``(1 + w) / rms(x)`` with ``rms`` frozen (input,
  post-attention, pre-feedforward and post-feedforward norms). Embeddings are scaled
  by ``sqrt(d_model)`` (captured as the layer-0 input). Grouped-query attention:
  head ``h`` uses value head ``h // (heads / kv_heads)``. Attention softcapping and
  sliding windows only shape the (frozen) pattern. The *final logit softcap*
  ``cap * tanh(z / cap)`` is monotone; attribution targets the **pre-softcap logit**
  ``z`` (which is linear in the nodes); :attr:`FrozenRun.softcap` records ``cap``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import ArchAdapter, adapter_for
from circuitdb.transcoder.common import model_fingerprint
from circuitdb.transcoder.model import CONFIG_NAME, Transcoder

NormKind = Literal["layer", "rms"]


# --------------------------------------------------------------------------- norms
@dataclass
class FrozenNorm:
    """A LayerNorm/RMSNorm with its per-position denominator frozen.

    ``apply(x) = centre(x) * inv * weight`` (LayerNorm) or ``x * inv * weight`` (RMS,
    ``weight = 1 + w`` for Gemma); the bias is a separate constant.
    """

    kind: NormKind
    weight: torch.Tensor  # (d,)
    bias: torch.Tensor | None  # (d,)
    inv: torch.Tensor  # (P,) 1/sigma or 1/rms, frozen on the real forward

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Linear part on ``(..., P, d)``."""
        if self.kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        return x * self.inv[:, None] * self.weight

    def transpose(self, g: torch.Tensor) -> torch.Tensor:
        """Transposed linear part on a gradient ``(..., P, d)`` (centring is symmetric)."""
        h = g * self.inv[:, None] * self.weight
        if self.kind == "layer":
            h = h - h.mean(-1, keepdim=True)
        return h


def _freeze_norm(module: nn.Module, x: torch.Tensor, kind: NormKind, dtype: torch.dtype) -> FrozenNorm:
    x = x.to(dtype)
    if kind == "layer":
        eps = float(module.eps)  # type: ignore[attr-defined]
        c = x - x.mean(-1, keepdim=True)
        var = (c * c).mean(-1)  # two passes, as x.var(-1, unbiased=False) but ~10x faster on CPU
        inv = torch.rsqrt(var + eps)
        w = module.weight.detach().to(dtype)  # type: ignore[attr-defined]
        b = module.bias.detach().to(dtype) if getattr(module, "bias", None) is not None else None  # type: ignore[attr-defined]
        return FrozenNorm("layer", w, b, inv)
    eps = float(getattr(module, "eps", getattr(module, "variance_epsilon", 1e-6)))
    inv = torch.rsqrt(x.pow(2).mean(-1) + eps)
    w = 1.0 + module.weight.detach().to(dtype)  # type: ignore[attr-defined]
    return FrozenNorm("rms", w, None, inv)


def _topk_active(tc: Transcoder, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The nonzero entries of TopK ``tc.activation(pre)`` for ``pre (P, F)``: ``(rows, cols, values)`` in
    row-major order (as :func:`_nonzero_2d` on the activations), without building the activations.

    ``torch.topk`` on CPU costs about 10 us per row of a few hundred features; numpy's
    ``partition`` finds each row's k-th largest value several times faster. The entries ``>=`` it
    are the same top k whenever that keeps exactly k per row (each row keeps at least k, so a
    total of ``P k`` means no tie at any row's k-th value); of those, the ones that ReLU does not
    zero (``> 0``, or NaN) are active. ``None`` where this does not apply (not TopK, autograd,
    not a CPU float tensor, or a tie): the caller falls back to ``tc.activation``.
    """
    k, F = int(tc.cfg.k or 1), int(pre.shape[-1])
    if (tc.cfg.activation != "topk" or pre.requires_grad or pre.device.type != "cpu" or pre.dtype not in (torch.float32, torch.float64)
            or pre.numel() == 0 or k >= F or pre.dim() != 2):
        return None
    pn = pre.numpy()
    kth = np.partition(pn, F - k, axis=-1)[:, F - k]
    flat = np.flatnonzero(pn >= kth[:, None])
    if flat.size != pn.shape[0] * k:
        return None
    vals = pn.reshape(-1)[flat]
    live = ~(vals <= 0)  # relu keeps > 0 (and NaN)
    flat, vals = flat[live], vals[live]
    flat_t = torch.from_numpy(flat)
    return flat_t // F, flat_t % F, torch.from_numpy(vals)


def _nonzero_2d(x: torch.Tensor, *, floor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` of the entries of ``x (P, F)`` that are not zero (with ``floor (F,)``: not
    ``<= floor`` per column, NaN included), in row-major order, as ``torch.nonzero(..., as_tuple=True)``.

    On CPU through numpy, whose comparison and ``flatnonzero`` are several times faster than
    torch's here (3 ms instead of 17 ms for 450 x 16,384 entries on one thread).
    """
    if x.device.type != "cpu" or x.requires_grad:
        return (torch.logical_not(x <= floor) if floor is not None else x != 0).nonzero(as_tuple=True)
    xn = x.numpy()
    flat = torch.from_numpy(np.flatnonzero(~(xn <= floor.numpy()[None, :]) if floor is not None else xn != 0))
    F = int(x.shape[1])
    return flat // F, flat % F


#: slots after the features in :attr:`FrozenLayer.dec_pad`: the error, ``b_dec``, then the features' sum
#: plus the error (a position's whole MLP output but ``b_dec`` and the skip path)
DEC_EXTRA = 3


def padded_decoder(W_dec: torch.Tensor, pos: torch.Tensor, idx: torch.Tensor, act: torch.Tensor, n_pos: int, *,
                   kmax: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Active features' outputs ``act[i] * W_dec[idx[i]]`` padded per position: ``(n_pos, kmax + DEC_EXTRA, d)``.

    ``pos`` is sorted; feature ``i`` goes to ``[pos[i], slot[i]]`` (its rank among the features at
    its position), the padding is zero; the ``DEC_EXTRA`` slots after the features are left for the
    caller (zeros). ``kmax``: the feature slots per position (default: the most at one position).
    One gather and one in-place product, straight into the layout the batched records of
    :mod:`circuitdb.attribution.attribute` read. Returns ``(padded, slot)``.
    """
    n = int(pos.numel())
    d = int(W_dec.shape[1])
    cnt = torch.bincount(pos, minlength=n_pos)[:n_pos]
    if kmax is None:
        kmax = int(cnt.max()) if n else 0
    width = kmax + DEC_EXTRA
    slot = torch.arange(n, device=pos.device) - (torch.cumsum(cnt, 0) - cnt)[pos]
    flat = pos * width + slot
    ix = torch.zeros(n_pos * width, dtype=torch.long, device=pos.device)  # padding reads row 0, times 0
    ix[flat] = idx
    scale = torch.zeros(n_pos * width, dtype=act.dtype, device=act.device)
    scale[flat] = act
    out = torch.index_select(W_dec, 0, ix).mul_(scale[:, None])
    return out.view(n_pos, width, d), slot


#: the reused encoder-product buffer of :meth:`ReplacementModel._encode` is kept up to this size (larger
#: products get a fresh tensor each layer)
ENCODER_BUFFER_BYTES = 256 << 20

#: at most this many bytes of contiguous encoder rows (``W_enc.T``) are kept per ReplacementModel
ENCODER_ROWS_BYTES = 128 << 20


# --------------------------------------------------------------------------- attention
@dataclass
class OVWeights:
    """Per-head OV weights: ``W_V (H, d, dh)``, ``W_O (H, dh, d)``, constant ``c (d,)``."""

    W_V: torch.Tensor
    W_O: torch.Tensor
    const: torch.Tensor


def ov_weights(adapter: ArchAdapter, layer: int, dtype: torch.dtype) -> OVWeights:
    """Read one layer's OV circuit from the Hugging Face attention module."""
    attn = adapter.layer(layer).attn
    H, dh, d = adapter.n_heads, adapter.head_dim, adapter.d_model
    if adapter.arch == "gpt_neox":
        W = attn.query_key_value.weight.detach().to(dtype)  # (H*3*dh, d)
        Wv = W.view(H, 3, dh, d)[:, 2]  # (H, dh, d): rows of the v slice per head
        W_V = Wv.transpose(1, 2).contiguous()  # (H, d, dh)
        qkv_b = attn.query_key_value.bias
        b_V = qkv_b.detach().to(dtype).view(H, 3, dh)[:, 2] if qkv_b is not None else None
        dense = attn.dense
    else:
        kv = adapter.n_kv_heads
        Wv = attn.v_proj.weight.detach().to(dtype).view(kv, dh, d)
        rep = H // kv
        W_V = Wv.repeat_interleave(rep, dim=0).transpose(1, 2).contiguous()
        vb = attn.v_proj.bias
        b_V = vb.detach().to(dtype).view(kv, dh).repeat_interleave(rep, dim=0) if vb is not None else None
        dense = attn.o_proj
    W_O = dense.weight.detach().to(dtype).T.reshape(H, dh, d).contiguous()  # (H, dh, d)
    const = torch.zeros(d, dtype=dtype, device=W_O.device)
    if b_V is not None:
        const = const + torch.einsum("he,hed->d", b_V, W_O)
    if dense.bias is not None:
        const = const + dense.bias.detach().to(dtype)
    return OVWeights(W_V, W_O, const)


def attn_forward(ov: OVWeights, pattern: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Frozen attention on normed input ``y (P, d)`` with ``pattern (H, P, P)``; constant excluded."""
    v = torch.einsum("pd,hde->hpe", y, ov.W_V)
    z = torch.einsum("hqp,hpe->hqe", pattern, v)
    return torch.einsum("hqe,hed->qd", z, ov.W_O)


def attn_transpose(ov: OVWeights, pattern: torch.Tensor, g: torch.Tensor, *, per_head: bool = False) -> torch.Tensor:
    """Transposed frozen attention: ``g (R, P, d)`` at the output -> ``(R, P, d)`` at the input.

    ``per_head=True`` keeps heads apart: ``(R, H, P, d)``. Written as plain GEMMs: one
    ``(P, P) x (P, R * dh)`` product per head, so the pattern is never copied per row.
    """
    R, P, d = g.shape
    H, dh, _ = ov.W_O.shape
    z = (g.reshape(R * P, d) @ ov.W_O.reshape(H * dh, d).T).view(R, P, H, dh).permute(2, 1, 0, 3).reshape(H, P, R * dh)
    z = torch.bmm(pattern.transpose(1, 2), z).view(H, P, R, dh)  # sum_q A[q, p] z[q]
    if per_head:
        return torch.matmul(z.permute(2, 0, 1, 3), ov.W_V.transpose(1, 2))  # (R, H, P, d)
    W_Vt = ov.W_V.transpose(1, 2).reshape(H * dh, d)  # rows (h, e)
    return (z.permute(2, 1, 0, 3).reshape(R * P, H * dh) @ W_Vt).view(R, P, d)


def attn_transpose_lowrank(ov: OVWeights, pattern: torch.Tensor, U: torch.Tensor, V: torch.Tensor,
                           idx: torch.Tensor | None = None, u_pos: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Transposed frozen attention on a gradient given by factors: row ``i`` is ``U[idx[i]] @ V[i]``.

    ``U (n_u, P, r)`` (shared by rows, ``idx=None``: one per row), ``V (R, r, d)``. Head ``h``
    maps ``g`` to ``A_h^T g W_O^h^T W_V^h^T = (A_h^T U) (V W_O^h^T W_V^h^T)``, so the result has
    rank ``H r`` with the same ``idx``: returns ``U' (n_u, P, H r)`` and ``V' (R, H r, d)``
    (rank index ``(h, j)``). Costs ``n_u H P^2 r + 2 R r d^2`` instead of ``R (P^2 d + 2 P d^2)``.

    ``u_pos (n_u,)``: each ``U[u]`` is zero off position ``u_pos[u]`` (a gradient still at its
    row's own position). Then ``A_h^T U[u]`` is row ``u_pos[u]`` of the pattern times that
    position's factor: a gather instead of a product over all positions (the same numbers).
    """
    R, r = V.shape[0], V.shape[1]
    H, dh, d = ov.W_O.shape
    U2 = _pattern_t_factors(pattern, U, u_pos)
    z = (V.reshape(R * r, d) @ ov.W_O.reshape(H * dh, d).T).view(R * r, H, dh).transpose(0, 1)  # (H, R r, dh)
    V2 = torch.bmm(z, ov.W_V.transpose(1, 2)).view(H, R, r, d).transpose(0, 1).reshape(R, H * r, d)
    return U2, V2


def _pattern_t_factors(pattern: torch.Tensor, U: torch.Tensor, u_pos: torch.Tensor | None) -> torch.Tensor:
    """``A_h^T U`` for every head: ``U (n_u, P, r)`` -> ``(n_u, P, H r)``, rank index ``(h, j)``
    (``u_pos``: as in :func:`attn_transpose_lowrank`)."""
    n_u, P, r = U.shape
    H = pattern.shape[0]
    if u_pos is not None:
        fac = U[torch.arange(n_u, device=U.device), u_pos]  # (n_u, r)
        return (pattern[:, u_pos, :].permute(1, 2, 0)[:, :, :, None] * fac[:, None, None, :]).reshape(n_u, P, H * r)
    # a batched product on the transposed view (no copy of the pattern)
    return torch.matmul(pattern.transpose(1, 2), U.permute(1, 0, 2).reshape(P, n_u * r)).view(H, P, n_u, r).permute(2, 1, 0, 3).reshape(n_u, P, H * r)


def attn_into_inputs(ov: OVWeights, pattern: torch.Tensor, values: torch.Tensor, g: torch.Tensor,
                     bias_values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Direct effects of the attention's inputs through the transposed attention, without the
    gradient at its input: ``g (R, P, d)`` at the output of attention on ``y = y_lin + b``.

    ``values (H, P, dh)``: ``y_lin @ W_V`` per head; ``bias_values (H, dh)``: ``b @ W_V``. Returns
    ``(R, P)``, ``<attn_transpose(g)[:, p], y_lin[p]>`` per position, and ``(R,)``,
    ``sum_p <attn_transpose(g)[:, p], b>`` (``None`` without ``bias_values``). The same sums
    as through :func:`attn_transpose` (``A_h^T g W_O^h^T`` dotted with ``y W_V^h`` instead of
    ``A_h^T g W_O^h^T W_V^h^T`` with ``y``), without its ``2 R P d^2``-flop projection back to
    the model dimension.
    """
    R, P, d = g.shape
    H, dh, _ = ov.W_O.shape
    z = (g.reshape(R * P, d) @ ov.W_O.reshape(H * dh, d).T).view(R, P, H, dh).permute(2, 1, 0, 3).reshape(H, P, R * dh)
    w = torch.bmm(pattern.transpose(1, 2), z).view(H, P, R, dh)  # sum_q A[q, p] z[q]
    tok = torch.einsum("hpre,hpe->rp", w, values)
    return tok, (torch.einsum("hpre,he->r", w, bias_values) if bias_values is not None else None)


def attn_into_inputs_lowrank(ov: OVWeights, pattern: torch.Tensor, values: torch.Tensor, U: torch.Tensor, V: torch.Tensor,
                             idx: torch.Tensor | None = None, u_pos: torch.Tensor | None = None,
                             bias_values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`attn_into_inputs` on a gradient given by factors (as :func:`attn_transpose_lowrank`).

    ``A_h^T U`` as there; ``V W_O^h^T`` dotted with each position's values: ``R r P d``
    multiply-adds for the positions instead of ``2 R r d^2`` for ``V'`` and ``R H r P d`` to
    dot the result with the inputs.
    """
    R, r = V.shape[0], V.shape[1]
    H, dh, d = ov.W_O.shape
    P = U.shape[1]
    U2 = _pattern_t_factors(pattern, U, u_pos)  # (n_u, P, H r)
    z = (V.reshape(R * r, d) @ ov.W_O.reshape(H * dh, d).T).view(R, r, H, dh)
    zh = z.permute(2, 0, 1, 3).reshape(H, R * r, dh)
    T = torch.bmm(zh, values.transpose(1, 2)).view(H, R, r, P).permute(1, 3, 0, 2).reshape(R, P, H * r)  # (R, P, (h, j))
    Ur = U2 if idx is None else U2[idx]
    tok = (Ur * T).sum(-1)
    if bias_values is None:
        return tok, None
    zb = torch.einsum("rjhe,he->rhj", z, bias_values).reshape(R, H * r)
    us = U2.sum(1)
    return tok, ((us if idx is None else us[idx]) * zb).sum(-1)


# --------------------------------------------------------------------------- frozen run
@dataclass
class FrozenLayer:
    """Everything about one layer of one prompt that attribution needs, frozen."""

    index: int
    parallel: bool
    norm_attn: FrozenNorm
    norm_mlp: FrozenNorm
    post_attn: FrozenNorm | None
    post_mlp: FrozenNorm | None
    pattern: torch.Tensor  # (H, P, P)
    ov: OVWeights
    W_enc: torch.Tensor  # (d, F)
    b_enc: torch.Tensor  # (F,)
    W_dec: torch.Tensor  # (F, d)
    b_dec: torch.Tensor  # (d,)
    W_skip: torch.Tensor | None  # (d, d)
    mlp_in: torch.Tensor  # (P, d) the true MLP input u
    error: torch.Tensor  # (P, d) true MLP output - transcoder output
    feat_pos: torch.Tensor  # (n,) active features: position
    feat_idx: torch.Tensor  # (n,) feature index
    feat_act: torch.Tensor  # (n,) activation
    feat_pre: torch.Tensor  # (n,) pre-activation
    #: ``(P, kmax + 3, d)``, what each position's MLP output is made of, for batched records: each active
    #: feature's output (activation x decoder row) at ``[feat_pos[i], feat_slot[i]]``, zeros in the
    #: padding, then the error (slot ``kmax``), ``b_dec`` (slot ``kmax + 1``) and the sum of the
    #: features and the error (slot ``kmax + 2``) at every position (``None``: rebuilt from ``W_dec``)
    dec_pad: torch.Tensor | None = None
    feat_slot: torch.Tensor | None = None  # (n,) each active feature's slot among the features at its position


@dataclass
class FrozenRun:
    """One prompt through the local replacement model (all tensors on one device, one dtype)."""

    input_ids: torch.Tensor  # (P,)
    x0: torch.Tensor  # (P, d) residual entering layer 0 (token embeddings, scaled for Gemma)
    layers: list[FrozenLayer]
    final_norm: FrozenNorm
    W_U: torch.Tensor  # (d, V)
    b_U: torch.Tensor | None  # (V,)
    logits: torch.Tensor  # (P, V) the model's own logits (post-softcap for Gemma); (1, V) with run(all_logits=False)
    resid: list[torch.Tensor] = field(default_factory=list)  # frozen-model residual entering each layer, then final
    resid_model: list[torch.Tensor] = field(default_factory=list)  # the HF model's own residuals (same up to round-off)
    softcap: float | None = None

    @property
    def n_pos(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.x0.dtype

    def pre_softcap_logits(self, pos: int = -1, tokens: Sequence[int] | None = None) -> torch.Tensor:
        """The attribution target space: final-norm output times W_U (before any softcap).

        ``tokens``: only these vocabulary entries (in that order), not the whole vocabulary.
        """
        fn = self.final_norm
        y = fn.apply(self.resid[-1])[pos]
        if fn.bias is not None:
            y = y + fn.bias
        if tokens is None:
            out = y @ self.W_U
            return out + self.b_U if self.b_U is not None else out
        cols = torch.tensor(list(tokens), dtype=torch.long, device=self.W_U.device)
        out = y @ self.W_U[:, cols]
        return out + self.b_U[cols] if self.b_U is not None else out

    def linear_forward(self, acts: Sequence[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Run the frozen linear model from the nodes (embeddings, features, errors, constants).

        ``acts`` optionally overrides each layer's active-feature activations. Returns
        ``(residuals entering each layer + final, MLP inputs per layer, pre-softcap logits (P, V))``.
        With the true activations it reproduces the Hugging Face forward.
        """
        x = self.x0
        resid, mlp_ins = [x], []
        for li, L in enumerate(self.layers):
            y = L.norm_attn.apply(x)
            if L.norm_attn.bias is not None:
                y = y + L.norm_attn.bias
            a = attn_forward(L.ov, L.pattern, y) + L.ov.const
            if L.post_attn is not None:
                a = L.post_attn.apply(a)
            h = x + a
            u = L.norm_mlp.apply(x if L.parallel else h)
            if L.norm_mlp.bias is not None:
                u = u + L.norm_mlp.bias
            mlp_ins.append(u)
            act = L.feat_act if acts is None else acts[li]
            m = torch.zeros_like(x).index_add_(0, L.feat_pos, act[:, None] * L.W_dec[L.feat_idx]) + L.b_dec + L.error
            if L.W_skip is not None:
                m = m + u @ L.W_skip
            if L.post_mlp is not None:
                m = L.post_mlp.apply(m)
            x = h + m
            resid.append(x)
        y = self.final_norm.apply(x)
        if self.final_norm.bias is not None:
            y = y + self.final_norm.bias
        logits = y @ self.W_U
        if self.b_U is not None:
            logits = logits + self.b_U
        return resid, mlp_ins, logits


# --------------------------------------------------------------------------- transcoders
def load_transcoders(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> dict[int, Transcoder]:
    """Load every transcoder under ``path`` (any depth; one ``cfg.json`` per layer), keyed by layer."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"transcoder directory {path} does not exist; pass the OUT of 'circuitdb train-transcoders'")
    out: dict[int, Transcoder] = {}
    for cfg_path in sorted(path.rglob(CONFIG_NAME)):
        tc = Transcoder.load(cfg_path.parent, device=device, dtype=dtype)
        if tc.cfg.layer in out:
            raise InputError(f"two transcoders for layer {tc.cfg.layer} under {path}; keep one checkpoint per layer")
        out[tc.cfg.layer] = tc
    if not out:
        raise InputError(f"no transcoders ({CONFIG_NAME}) under {path}; train them with 'circuitdb train-transcoders'")
    return out



def check_transcoders(adapter: ArchAdapter, transcoders: Mapping[int, Transcoder] | Sequence[Transcoder], *,
                      model_hash: str | None = None) -> dict[int, Transcoder]:
    """Check that ``transcoders`` cover every layer of the model with matching widths.

    Raises :class:`InputError` for transcoders of another model: width or layer
    count mismatch, or (when ``model_hash`` is given) a transcoder whose
    ``cfg.model`` records a different :func:`model_fingerprint`.
    """
    tcs = dict(transcoders) if isinstance(transcoders, Mapping) else {i: t for i, t in enumerate(transcoders)}
    d = adapter.d_model
    for layer, tc in tcs.items():
        d_out = int(tc.cfg.d_out or tc.cfg.d_in)
        if tc.cfg.d_in != d or d_out != d:
            raise InputError(
                f"transcoder for layer {layer} maps {tc.cfg.d_in}->{d_out} but the model's MLP is {d}->{d}; "
                "these transcoders belong to another model: pass the transcoders trained on this model"
            )
        if not 0 <= layer < adapter.n_layers:
            raise InputError(f"transcoder for layer {layer} but the model has layers 0..{adapter.n_layers - 1}; use transcoders trained on this model")
        if model_hash and tc.cfg.model and tc.cfg.model != model_hash:
            raise InputError(
                f"the layer-{layer} transcoder was trained on model {tc.cfg.model} but this model is {model_hash}; "
                "these transcoders belong to another model: pass the transcoders trained on this model"
            )
    missing = [i for i in range(adapter.n_layers) if i not in tcs]
    if missing:
        raise InputError(f"no transcoder for layers {missing}; attribution replaces every MLP: train transcoders for all layers")
    return tcs


# --------------------------------------------------------------------------- the model
class ReplacementModel:
    """A Hugging Face causal LM with its MLPs replaced by transcoders (+ error terms).

    Parameters
    ----------
    model
        ``AutoModelForCausalLM`` (GPT-NeoX or Gemma-2); put in eval mode.
    transcoders
        One :class:`Transcoder` per layer (mapping layer -> transcoder, or a list).
    """

    def __init__(self, model: nn.Module, transcoders: Mapping[int, Transcoder] | Sequence[Transcoder]) -> None:
        self.model = model.eval()
        self.adapter = adapter_for(model)
        tcs = dict(transcoders) if isinstance(transcoders, Mapping) else dict(enumerate(transcoders))
        # hash the model only when some transcoder records the model it was trained on
        self.model_hash = model_fingerprint(model) if any(t.cfg.model for t in tcs.values()) else None
        self._fingerprints: dict[str, str] = {}
        self._enc_rows: dict[tuple[int, torch.dtype, str], torch.Tensor] = {}
        self._enc_rows_bytes = 0
        self._ov_cache: dict[tuple[int, torch.dtype], OVWeights] = {}
        self._scratch = threading.local()  # per thread: the encoder product's buffer, reused between layers and runs
        self.transcoders = check_transcoders(self.adapter, tcs, model_hash=self.model_hash)
        cfg = model.config  # type: ignore[attr-defined]
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 0) or 0)
        self.softcap = getattr(cfg, "final_logit_softcapping", None) if self.adapter.arch == "gemma2" else None

    def encoder_rows(self, layer: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """``W_enc.T`` of ``layer``'s transcoder, contiguous ``(F, d)``: feature ``i``'s encoder row.

        Kept between calls (the transcoders are frozen for attribution) while all layers' copies
        stay under ``ENCODER_ROWS_BYTES``; ``None`` past that (then read the columns of ``W_enc``).
        Gathering rows instead of strided columns makes stacking many features' encoders cheap.
        """
        key = (layer, dtype, str(device))
        if key not in self._enc_rows:
            W = self.transcoders[layer].W_enc
            size = W.numel() * torch.empty(0, dtype=dtype).element_size()
            if self._enc_rows_bytes + size > ENCODER_ROWS_BYTES:
                return None
            self._enc_rows[key] = W.detach().to(device=device, dtype=dtype).T.contiguous()
            self._enc_rows_bytes += size
        return self._enc_rows[key]

    def _ov(self, layer: int, dtype: torch.dtype) -> OVWeights:
        """:func:`ov_weights` of ``layer``, kept between runs (the model is frozen for attribution)."""
        key = (layer, dtype)
        if key not in self._ov_cache:
            self._ov_cache[key] = ov_weights(self.adapter, layer, dtype)
        return self._ov_cache[key]

    def fingerprint(self) -> str:
        """:func:`model_fingerprint` of the model, computed once (the model is frozen for attribution)."""
        if "model" not in self._fingerprints:
            self._fingerprints["model"] = self.model_hash or model_fingerprint(self.model)
        return self._fingerprints["model"]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _encode(self, u: torch.Tensor, W_enc: torch.Tensor) -> torch.Tensor:
        """``u @ W_enc`` (no bias). On CPU into a buffer kept per thread and reused by every layer and
        run, whose pages are already mapped: a fresh ``(P, F)`` result (29 MiB at 450 x 16,384)
        costs its page faults again each time. Overwritten by the next call: gather from it, keep nothing.
        """
        n = int(u.shape[0]) * int(W_enc.shape[1])
        if u.device.type != "cpu" or u.requires_grad or n * u.element_size() > ENCODER_BUFFER_BYTES:
            return u @ W_enc
        buf = getattr(self._scratch, "buf", None)
        if buf is None or buf.dtype != u.dtype or buf.numel() < n:
            buf = self._scratch.buf = torch.empty(n, dtype=u.dtype)
        return torch.mm(u, W_enc, out=buf[:n].view(int(u.shape[0]), int(W_enc.shape[1])))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check_length(self, n_tokens: int) -> None:
        if self.max_positions and n_tokens > self.max_positions:
            raise InputError(
                f"the prompt has {n_tokens} tokens but the model's context is {self.max_positions}; "
                "use fewer genes per cell (--max-genes)"
            )

    @contextlib.contextmanager
    def _eager(self) -> Iterator[None]:
        cfg = self.model.config  # type: ignore[attr-defined]
        old = cfg._attn_implementation
        if old != "eager":
            self.model.set_attn_implementation("eager")  # type: ignore[operator]
        try:
            yield
        finally:
            if old != "eager" and old is not None:
                self.model.set_attn_implementation(old)  # type: ignore[operator]

    def _ids(self, input_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        ids = torch.as_tensor(input_ids, dtype=torch.long, device=self.device).reshape(-1)
        self.check_length(int(ids.shape[0]))
        return ids

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor | Sequence[int], errors: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(P, V)`` with each MLP output replaced by ``transcoder(u).out + errors[layer]``.

        ``errors=None`` runs the pure replacement (no error terms).
        """
        ids = self._ids(input_ids)
        handles = []

        def make_hook(layer: int):  # noqa: ANN202
            tc = self.transcoders[layer]

            def hook(module, args, output):  # noqa: ANN001, ANN202
                u = args[0]
                out = tc(u.to(tc.W_enc.dtype)).out
                if errors is not None:
                    out = out + errors[layer].to(out.dtype)
                return out.to(output.dtype)

            return hook

        try:
            for i in range(self.adapter.n_layers):
                handles.append(self.adapter.layer(i).mlp.register_forward_hook(make_hook(i)))
            return self.model(ids[None]).logits[0]
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor | Sequence[int], *, dtype: torch.dtype | None = None, all_logits: bool = True) -> FrozenRun:
        """Run the real model once and freeze it into a :class:`FrozenRun`.

        ``dtype`` is the dtype of the frozen tensors (default: the model's). For exact
        float64 checks load the model itself in float64. ``all_logits=False`` keeps only the
        last position's logits (``FrozenRun.logits`` is then ``(1, V)``), skipping the
        unembedding of every other position.
        """
        ids = self._ids(input_ids)
        ad = self.adapter
        dt = dtype or self.dtype
        arch = ad.arch
        caps: dict[str, torch.Tensor] = {}
        handles = []

        def cap_in(name: str):  # noqa: ANN202
            def hook(module, args, kwargs):  # noqa: ANN001, ANN202
                x = args[0] if args else kwargs["hidden_states"]
                caps[name] = x[0].detach()

            return hook

        def cap_out(name: str):  # noqa: ANN202
            def hook(module, args, output):  # noqa: ANN001, ANN202
                if isinstance(output, tuple):
                    caps[name] = output[0][0].detach()
                    if len(output) > 1 and output[1] is not None:
                        caps[name + ".pattern"] = output[1][0].detach()
                else:
                    caps[name] = output[0].detach()

            return hook

        blocks = self.model.gpt_neox.layers if arch == "gpt_neox" else self.model.model.layers  # type: ignore[attr-defined]
        try:
            for i in range(ad.n_layers):
                lp = ad.layer(i)
                handles.append(blocks[i].register_forward_pre_hook(cap_in(f"{i}.x"), with_kwargs=True))
                handles.append(lp.mlp.register_forward_pre_hook(cap_in(f"{i}.u"), with_kwargs=True))
                handles.append(lp.mlp.register_forward_hook(cap_out(f"{i}.m")))
                handles.append(lp.attn.register_forward_hook(cap_out(f"{i}.attn")))
                for nm, mod in lp.norms.items():
                    handles.append(mod.register_forward_pre_hook(cap_in(f"{i}.{nm}"), with_kwargs=True))
            handles.append(ad.final_norm.register_forward_pre_hook(cap_in("final"), with_kwargs=True))
            with self._eager():
                logits = self.model(ids[None], logits_to_keep=0 if all_logits else 1).logits[0].detach()
        finally:
            for h in handles:
                h.remove()

        kind: NormKind = "layer" if arch == "gpt_neox" else "rms"
        layers: list[FrozenLayer] = []
        # Propagate our own residual through the frozen maps so the frozen run is exactly
        # self-consistent in its dtype (HF Gemma-2 computes RMSNorm in float32 even for a
        # float64 model); the error term absorbs the difference to the true MLP output.
        x = caps["0.x"].to(dt)
        resid = [x]
        for i in range(ad.n_layers):
            lp = ad.layer(i)
            tc = self.transcoders[i]
            m_true = caps[f"{i}.m"].to(dt)
            dev = x.device
            W_enc, b_enc = tc.W_enc.detach().to(device=dev, dtype=dt), tc.b_enc.detach().to(device=dev, dtype=dt)
            W_dec, b_dec = tc.W_dec.detach().to(device=dev, dtype=dt), tc.b_dec.detach().to(device=dev, dtype=dt)
            W_skip = tc.W_skip.detach().to(device=dev, dtype=dt) if tc.W_skip is not None else None
            n_attn = _freeze_norm(lp.norms["input_layernorm"], caps[f"{i}.input_layernorm"], kind, dt)
            if arch == "gpt_neox":
                n_mlp = _freeze_norm(lp.norms["post_attention_layernorm"], caps[f"{i}.post_attention_layernorm"], kind, dt)
                post_attn = post_mlp = None
            else:
                post_attn = _freeze_norm(lp.norms["post_attention_layernorm"], caps[f"{i}.post_attention_layernorm"], kind, dt)
                n_mlp = _freeze_norm(lp.norms["pre_feedforward_layernorm"], caps[f"{i}.pre_feedforward_layernorm"], kind, dt)
                post_mlp = _freeze_norm(lp.norms["post_feedforward_layernorm"], caps[f"{i}.post_feedforward_layernorm"], kind, dt)
            pattern = caps.get(f"{i}.attn.pattern")
            if pattern is None:
                raise RuntimeError("attention patterns were not returned; the eager attention path is required")
            pattern = pattern.to(dt)
            ov = self._ov(i, dt)
            y = n_attn.apply(x) + (n_attn.bias if n_attn.bias is not None else 0)
            a = attn_forward(ov, pattern, y) + ov.const
            h = x + (post_attn.apply(a) if post_attn is not None else a)
            u = n_mlp.apply(x if ad.parallel_residual else h) + (n_mlp.bias if n_mlp.bias is not None else 0)
            uw = self._encode(u, W_enc)  # u @ W_enc, a reused buffer: only gathers from it are kept
            if tc.cfg.activation == "relu":
                # relu(uw + b) != 0 exactly where not uw + b <= 0, i.e. not uw <= -b (a float sum is 0
                # only for exact opposites; NaN included), and equals uw + b there: the bias is added
                # to the active entries only
                pos, idx = _nonzero_2d(uw, floor=-b_enc)
                f_act = f_pre = uw[pos, idx] + b_enc[idx]
            else:
                pre = uw.add_(b_enc)
                found = _topk_active(tc, pre)
                if found is not None:  # TopK: the active entries straight from a partial sort
                    pos, idx, f_pre = found
                    f_act = f_pre
                else:
                    act = tc.activation(pre)
                    pos, idx = _nonzero_2d(act)
                    f_act, f_pre = act[pos, idx], pre[pos, idx]
            # sparse decode: only the active features' decoder rows
            dec_pad, f_slot = padded_decoder(W_dec, pos, idx, f_act, int(u.shape[0]))  # each active feature's output
            kmax = int(dec_pad.shape[1]) - DEC_EXTRA
            dec = dec_pad.sum(1)  # the padding and the (still empty) extra slots add zeros
            tc_out = dec + b_dec + (u @ W_skip if W_skip is not None else 0)
            x = h + (post_mlp.apply(m_true) if post_mlp is not None else m_true)
            error = m_true - tc_out
            dec_pad[:, kmax] = error
            dec_pad[:, kmax + 1] = b_dec
            dec_pad[:, kmax + 2] = dec + error
            resid.append(x)
            layers.append(FrozenLayer(
                index=i, parallel=ad.parallel_residual, norm_attn=n_attn, norm_mlp=n_mlp, post_attn=post_attn, post_mlp=post_mlp,
                pattern=pattern, ov=ov, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec, W_skip=W_skip,
                mlp_in=u, error=error, feat_pos=pos, feat_idx=idx, feat_act=f_act, feat_pre=f_pre,
                dec_pad=dec_pad, feat_slot=f_slot,
            ))
        unembed = self.model.get_output_embeddings()  # type: ignore[operator]  # lm_head (transformers 5) / embed_out
        W_U = unembed.weight.detach().to(dt).T
        b_U = unembed.bias.detach().to(dt) if getattr(unembed, "bias", None) is not None else None
        final = _freeze_norm(ad.final_norm, caps["final"], kind, dt)
        resid_model = [caps[f"{i}.x"].to(dt) for i in range(ad.n_layers)] + [caps["final"].to(dt)]
        return FrozenRun(
            input_ids=ids, x0=resid[0], layers=layers, final_norm=final, W_U=W_U, b_U=b_U, logits=logits.to(dt),
            resid=resid, resid_model=resid_model, softcap=self.softcap,
        )
