"""Attribution graph of one cell: direct effects in the local replacement model.

The frozen model (:class:`~circuitdb.attribution.replacement.FrozenRun`) is linear
between nodes, so every node's value (feature pre-activation, target logit) is an
exact sum of direct effects from the sources that write into the residual stream:

* **token embeddings** (per position; a gene's token span is merged into one gene
  node; every other prompt token, including the appended answer prefix, is its own
  ``token`` node per position),
* **active transcoder features** (value written: ``activation * W_dec[i]``),
* **error nodes** (layer, position): the true MLP output minus the transcoder's.
  When ``max_feature_nodes`` keeps only part of the active features, the features
  left out are folded into the error node of their (layer, position), so the sums
  stay exact (``metadata["dropped_features"]`` counts them),
* **bias nodes**, one per layer and one for the final norm/unembedding
  (``layer == n_layers``): norm biases, attention biases, ``b_dec``, and the target
  feature's own ``b_enc``.

Edges are computed by batched transposed passes (vector-Jacobian products written
out by hand for the frozen maps) from many target rows at once, never one autograd
pass per node. Rows are truncated to the positions a target can see (causal).

**Attention heads.** Every path from a source at position ``p`` to a target at
``q != p`` crosses positions; it is assigned to the attention head of its *last*
crossing (the head, closest to the target, that moved it to position ``q``). Per
head parts of an edge therefore sum exactly to its cross-position part.

**Feature pairs.** For kept features at the same position, the input-invariant
virtual weight is ``W_dec[s] . N^T W_enc[:, t]`` through the frozen norms (the
residual-stream path only; paths through attention or skip connections are not in
it), and the input-dependent attribution is ``activation[s] * virtual weight``.
Cross-position pairs have no virtual weight here: their attribution is the edge,
split per head.

**Gemma-2 softcap.** The target is the pre-softcap logit (linear in the nodes).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from circuitdb.attribution.graph import AttributionGraph, GraphNode
from circuitdb.attribution.replacement import (DEC_EXTRA, FrozenRun, ReplacementModel, attn_into_inputs, attn_into_inputs_lowrank,
                                                attn_transpose, attn_transpose_lowrank,
                                                padded_decoder)
from circuitdb.errors import InputError
from circuitdb.loaders.prompts import DEFAULT_ORGANISM, GeneSpan, Prompt, PromptTemplate, build_prompt, gene_token_spans
from circuitdb.loaders.sentences import CellSentence
from circuitdb.transcoder.model import Transcoder

TargetKind = Literal["answer", "top"]
ProgressCallback = Callable[[str, int, int], None]
_CHUNK_ELEMS = 1 << 24  # ~64 MiB of float32 per temporary
_DEC_CACHE_BYTES = 512 << 20  # padded per-position decoder rows kept between passes
_PAIR_PRODUCT_ELEMS = 1 << 24  # feature pairs as one padded product per position up to this many entries
_PAIR_PADDING = 4  # ... and while those entries are at most this many times the pairs (else per-pair dots)


# =========================================================================== targets
@dataclass(frozen=True)
class Target:
    """What the graph explains: ``logit[token] - logit[contrast_token]`` at the last position."""

    label: str
    token: int
    prefix: tuple[int, ...] = ()
    contrast_label: str | None = None
    contrast_token: int | None = None


def _answer_divergence(tokenizer: Any, candidates: Sequence[str], template: PromptTemplate) -> dict[str, list[int]]:
    """Each candidate's answer tokens (tokenised on its own, as appended after the prompt)."""
    out = {}
    for c in candidates:
        out[c] = list(tokenizer(template.answer_text(c), add_special_tokens=False)["input_ids"])
    return out


def _diverge(seqs: Mapping[str, list[int]], answer: str, others: Sequence[str]) -> tuple[tuple[int, ...], int]:
    """Shared prefix of ``answer`` with the closest other candidate, and its first diverging token."""
    a = seqs[answer]
    k = 0
    for o in others:
        b = seqs[o]
        n = 0
        while n < len(a) and n < len(b) and a[n] == b[n]:
            n += 1
        if n == len(a):
            raise InputError(f"the answer for {answer!r} is a prefix of the answer for {o!r}; give the candidate types distinct names")
        k = max(k, n)
    return tuple(a[:k]), a[k]


def answer_target(tokenizer: Any, candidates: Sequence[str], answer: str, contrast: str | None = None,
                  template: PromptTemplate | None = None) -> Target:
    """The target token where ``answer`` first diverges from the other candidates.

    The prefix is the longest one ``answer`` shares with its *closest* other candidate
    (not the prefix shared by all candidates: with C2S labels such as ``CD14+ Monocyte``,
    ``CD19+ B``, ``CD4+/CD25 T Reg`` most types share their first token ``" CD"``, whose
    logit cannot tell them apart). The target token is then unique to ``answer``.

    With ``contrast``, the prefix is the one ``answer`` and ``contrast`` share and the
    target is the difference of their first diverging tokens' logits.
    """
    template = template or PromptTemplate()
    cands = list(dict.fromkeys(candidates))
    if answer not in cands:
        raise InputError(f"cell type {answer!r} is not among the model's answers {cands}; pick one of them")
    if contrast is not None and contrast not in cands:
        raise InputError(f"contrast type {contrast!r} is not among the model's answers {cands}; pick one of them")
    if contrast == answer:
        raise InputError(f"contrast type {contrast!r} equals the answer; pick a different type")
    seqs = _answer_divergence(tokenizer, cands, template)
    if contrast is None:
        others = [c for c in cands if c != answer]
        prefix, tok = _diverge(seqs, answer, others)
        return Target(answer, tok, prefix)
    prefix, tok = _diverge(seqs, answer, [contrast])
    b = seqs[contrast]
    return Target(answer, tok, prefix, contrast, b[len(prefix)])


# =========================================================================== engine
@dataclass(frozen=True)
class _Row:
    """One row to attribute: a vector injected at ``layer`` (``n_layers`` = final residual) and ``pos``."""

    layer: int
    pos: int
    vec: torch.Tensor
    const: float


def _runs(keys: Sequence[int]) -> Iterator[tuple[int, int]]:
    """``(a, b)`` of each maximal run of equal ``keys[a:b]`` (rows injected at one layer), in order."""
    a = 0
    while a < len(keys):
        b = a + 1
        while b < len(keys) and keys[b] == keys[a]:
            b += 1
        yield a, b
        a = b


class _RowBatch(NamedTuple):
    """Rows injected at one layer, as tensors: positions ``(R,)``, vectors ``(R, d)``, constants ``(R,)``."""

    layer: int
    pos: torch.Tensor
    vec: torch.Tensor
    const: torch.Tensor
    n_pos: int  # the last position + 1


class _Layout:
    """Column layout of the full source space: all active features, errors, tokens, biases."""

    def __init__(self, run: FrozenRun) -> None:
        self.L = len(run.layers)
        self.P = run.n_pos
        counts = [int(Ly.feat_pos.numel()) for Ly in run.layers]
        self.feat_off = [0]
        for c in counts:
            self.feat_off.append(self.feat_off[-1] + c)
        self.n_feat = self.feat_off[-1]
        self.err0 = self.n_feat
        self.tok0 = self.err0 + self.L * self.P
        self.bias0 = self.tok0 + self.P
        self.n = self.bias0 + self.L + 1
        #: with totals: columns ``tot0 + layer * P + p`` after the sources hold, per MLP output, the
        #: direct effect of all its active features plus its error (``None``: not recorded)
        self.tot0: int | None = None

    def below(self, layer: int, *, totals: bool = False) -> "_Layout":
        """The narrower layout of rows injected at ``layer``: only the sources they can have.

        Features and errors of the layers below ``layer``, then the tokens and all biases (the
        same order as the full layout). A row injected at ``layer`` writes nothing into the
        features and errors of ``layer`` and above, so its row in this layout is the full row
        without those (zero) columns: see :meth:`columns`. ``totals``: then one total per MLP
        output below ``layer`` (see :attr:`tot0`), so a graph that drops features can fold them
        into the error nodes without reading their columns.
        """
        out = object.__new__(_Layout)
        out.L, out.P = self.L, self.P
        out.feat_off = self.feat_off[: layer + 1]
        out.n_feat = self.feat_off[min(layer, self.L)]
        out.err0 = out.n_feat
        out.tok0 = out.err0 + min(layer, self.L) * self.P
        out.bias0 = out.tok0 + self.P
        out.n = out.bias0 + self.L + 1
        out.tot0 = None
        if totals:
            out.tot0 = out.n
            out.n += min(layer, self.L) * self.P
        return out

    def columns(self, layer: int) -> torch.Tensor:
        """The full layout's column of each column of :meth:`below` ``(layer)``."""
        sub = self.below(layer)
        return torch.cat([torch.arange(sub.n_feat), torch.arange(self.err0, self.err0 + sub.tok0 - sub.err0),
                          torch.arange(self.tok0, self.n)])


@dataclass
class _Grad:
    """A batch of gradients on the residual stream ``(R, Q, d)``: dense ``D``, or factors.

    Factored: row ``i`` is ``U[idx[i]] @ V[i]`` with ``U (n_u, Q, r)`` shared by the rows that
    started at the same position (``idx (R,)``; ``None``: one ``U`` per row) and ``V (R, r, d)``.
    A row that starts at one position has a rank-1 gradient, and each transposed attention
    layer multiplies the rank by at most ``H + 1``; while the rank is below the number of
    positions the factors make every step cheaper than on ``D`` (the pattern acts on the few
    shared ``U``, the weights on the small ``V``). All maps are exact (the same sums in another
    order).
    """

    U: torch.Tensor | None = None
    V: torch.Tensor | None = None
    idx: torch.Tensor | None = None
    D: torch.Tensor | None = None
    point: torch.Tensor | None = None  # (R,) when each row is still zero off its own position

    def at_point(self) -> torch.Tensor:
        """A point gradient's vector at each row's position: ``(R, d)``."""
        assert self.point is not None and self.V is not None
        R = self.V.shape[0]
        u = self.rows_U()[torch.arange(R, device=self.V.device), self.point]  # (R, r)
        return torch.bmm(u[:, None, :], self.V)[:, 0]

    @property
    def rank(self) -> int:
        return int(self.V.shape[1]) if self.V is not None else -1

    @property
    def n_rows(self) -> int:
        return int((self.D if self.D is not None else self.V).shape[0])  # type: ignore[union-attr]

    def collapse(self, Q: int) -> "_Grad":
        """A point gradient as rank 1 (one-hot position factors)."""
        assert self.point is not None and self.V is not None
        R = self.V.shape[0]
        U = torch.zeros(R, Q, 1, dtype=self.V.dtype, device=self.V.device)
        U[torch.arange(R, device=U.device), self.point, 0] = 1.0
        return _Grad(U=U, V=self.at_point()[:, None, :], point=self.point)

    def u_points(self) -> torch.Tensor | None:
        """For a point gradient, the position each ``U[u]`` sits at: ``(n_u,)`` (``None`` otherwise)."""
        if self.point is None or self.U is None:
            return None
        if self.idx is None:
            return self.point
        return torch.zeros(int(self.U.shape[0]), dtype=torch.long, device=self.point.device).index_copy_(0, self.idx, self.point)

    def rows_U(self) -> torch.Tensor:
        """``U`` per row ``(R, Q, r)``."""
        assert self.U is not None
        return self.U if self.idx is None else self.U[self.idx]

    def dense(self) -> torch.Tensor:
        if self.D is not None:
            return self.D
        assert self.V is not None
        return torch.bmm(self.rows_U(), self.V)

    def rows(self, a: int, b: int) -> "_Grad":
        """Rows ``a:b``."""
        if self.D is not None:
            return _Grad(D=self.D[a:b])
        pt = self.point[a:b] if self.point is not None else None
        if self.idx is None:
            return _Grad(U=self.U[a:b], V=self.V[a:b], point=pt)  # type: ignore[index]
        return _Grad(U=self.U, V=self.V[a:b], idx=self.idx[a:b], point=pt)  # type: ignore[index]

    def norm_t(self, norm: Any, Q: int) -> "_Grad":
        """Transposed frozen norm (per-position scale, weight, centring)."""
        if self.D is not None:
            return _Grad(D=_norm_t(norm, self.D, Q))
        assert self.U is not None and self.V is not None
        V = self.V * norm.weight
        if norm.kind == "layer":
            V = V - V.mean(-1, keepdim=True)
        return _Grad(U=self.U * norm.inv[:Q, None], V=V, idx=self.idx, point=self.point)

    def right(self, W: torch.Tensor) -> "_Grad":
        """``g @ W`` for a matrix ``W (d, d')`` acting on the model dimension."""
        if self.D is not None:
            return _Grad(D=self.D @ W)
        return _Grad(U=self.U, V=self.V @ W, idx=self.idx, point=self.point)  # type: ignore[operator]

    def pos_sum_dot(self, vec: torch.Tensor) -> torch.Tensor:
        """``sum_p g[:, p] . vec``: ``(R,)`` (a constant term's coefficient)."""
        if self.D is not None:
            return self.D.sum(1) @ vec
        assert self.U is not None and self.V is not None
        u = self.U.sum(1)
        return ((u if self.idx is None else u[self.idx]) * (self.V @ vec)).sum(-1)

    def dot_positions(self, x: torch.Tensor) -> torch.Tensor:
        """``g[:, p] . x[p]`` for each position: ``(R, Q)``."""
        if self.D is not None:
            return (self.D * x).sum(-1)
        assert self.V is not None
        if self.point is not None:
            R = self.V.shape[0]
            res = torch.zeros(R, x.shape[0], dtype=x.dtype, device=x.device)
            res[torch.arange(R, device=x.device), self.point] = (self.at_point() * x[self.point]).sum(-1)
            return res
        return torch.einsum("rqj,rjq->rq", self.rows_U(), self.V @ x.T)

    def __add__(self, other: "_Grad") -> "_Grad":
        if self.D is None and other.D is None:
            assert self.idx is other.idx or (self.idx is not None and other.idx is not None and torch.equal(self.idx, other.idx))
            same = self.point is not None and other.point is not None and torch.equal(self.point, other.point)
            return _Grad(U=torch.cat([self.U, other.U], 2), V=torch.cat([self.V, other.V], 1), idx=self.idx,  # type: ignore[list-item]
                         point=self.point if same else None)
        return _Grad(D=self.dense() + other.dense())


def _lowrank_pays(g: _Grad, Q: int, d: int, H: int) -> bool:
    """Whether one layer on ``g``'s factors (weights on ``V``, pattern on the shared ``U``, a dense
    copy for the records) costs less than on dense rows."""
    if g.D is not None:
        return False
    r, R = g.rank, g.n_rows
    n_u = int(g.U.shape[0])  # type: ignore[union-attr]
    pattern = n_u * H * Q * r * (1 if g.point is not None else Q)  # a point gradient's U: rows of the pattern
    return R * r * (2 * d * d + Q * d) + pattern < R * (2 * Q * d * d + Q * Q * d)


class _Engine:
    """Batched transposed passes through a frozen run."""

    def __init__(self, run: FrozenRun) -> None:
        self.run = run
        self.lay = _Layout(run)
        self.L = self.lay.L
        self._slot_cache: dict[int, tuple[torch.Tensor, int]] = {}
        self._dec_cache: dict[int, torch.Tensor] = {}  # per layer: record matrices (P, kmax + 3, d), for runs without one
        self._dec_bytes = 0
        self._v0: tuple[torch.Tensor, torch.Tensor | None] | None = None  # see _values0
        # per-position ordering of each layer's features (they are sorted by (pos, idx) already)
        for Ly in run.layers:
            assert Ly.feat_pos.numel() == 0 or bool((Ly.feat_pos[1:] >= Ly.feat_pos[:-1]).all())

    # -- recording -------------------------------------------------------------
    def _slots(self, layer: int) -> tuple[torch.Tensor, int]:
        """Each active feature's slot among the features at its position, and the most per position."""
        if layer not in self._slot_cache:
            Ly = self.run.layers[layer]
            pos = Ly.feat_pos
            if Ly.feat_slot is not None and Ly.dec_pad is not None:
                self._slot_cache[layer] = (Ly.feat_slot, int(Ly.dec_pad.shape[1]) - DEC_EXTRA)
            elif pos.numel() == 0:
                self._slot_cache[layer] = (pos, 0)
            else:
                first = torch.searchsorted(pos, pos, right=False)  # index of the first feature at the same position
                slot = torch.arange(pos.numel(), device=pos.device) - first
                self._slot_cache[layer] = (slot, int(slot.max()) + 1)
        return self._slot_cache[layer]

    def _record_mlp(self, out: torch.Tensor, layer: int, g_m: torch.Tensor, lay: _Layout) -> None:
        """Features, errors and b_dec of ``layer`` from the gradient at its MLP output ``g_m (R, Q, d)``
        (and the totals, where ``lay`` has them).

        One batched product over positions with the padded record matrix (:meth:`_decoder`: the
        features' outputs, the error, ``b_dec`` and the total per position).
        """
        run = self.run
        Ly = run.layers[layer]
        R, Q, d = g_m.shape
        n_l = int(torch.searchsorted(Ly.feat_pos, torch.tensor(Q, device=Ly.feat_pos.device)).item()) if Ly.feat_pos.numel() else 0
        slot, kmax = self._slots(layer)
        dec = self._decoder(layer, Q, g_m.dtype)[:Q]  # (Q, kmax + 3, d)
        if 8 <= R <= 48:  # medium batches: the record matrix first is the faster product here
            res = torch.bmm(dec, g_m.permute(1, 2, 0))  # (Q, kmax + 3, R)
            feats, err, bias, tot = res[Ly.feat_pos[:n_l], slot[:n_l]], res[:, kmax], res[:, kmax + 1], res[:, kmax + 2]  # (n_l, R), (Q, R) x 3
        else:
            res = torch.bmm(g_m.transpose(0, 1), dec.transpose(1, 2))  # (Q, R, kmax + 3)
            feats, err, bias, tot = res[Ly.feat_pos[:n_l], :, slot[:n_l]], res[:, :, kmax], res[:, :, kmax + 1], res[:, :, kmax + 2]
        if n_l:
            off = lay.feat_off[layer]
            out[:, off: off + n_l] = feats.T
        e0 = lay.err0 + layer * lay.P
        out[:, e0: e0 + Q] = err.T
        out[:, lay.bias0 + layer] += bias.sum(0)
        if lay.tot0 is not None:
            t0 = lay.tot0 + layer * lay.P
            out[:, t0: t0 + Q] = tot.T

    def _record_mlp_point(self, out: torch.Tensor, layer: int, pos: torch.Tensor, g: torch.Tensor, lay: _Layout) -> None:
        """As :meth:`_record_mlp` for rows whose gradient sits at one position each: ``g (R, d)`` at ``pos (R,)``."""
        run = self.run
        Ly = run.layers[layer]
        R = int(g.shape[0])
        rr = torch.arange(R, device=g.device)
        slot, kmax = self._slots(layer)
        dec = self._decoder(layer, int(pos.max()) + 1, g.dtype)
        # rows grouped by position (padded to the most rows at one position): each position's
        # record matrix is read once, not once per row
        upos, inv, cnt = torch.unique(pos, return_inverse=True, return_counts=True)
        if int(upos.numel()) < R:
            order = torch.argsort(inv, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(R, device=g.device) - (torch.cumsum(cnt, 0) - cnt)[inv[order]]
            g_pad = torch.zeros(int(upos.numel()), int(cnt.max()), g.shape[1], dtype=g.dtype, device=g.device)
            g_pad[inv, rank] = g
            res = torch.bmm(dec[upos], g_pad.transpose(1, 2))[inv, :, rank]  # (R, kmax + 3)
        else:
            res = torch.bmm(dec[pos], g[:, :, None])[:, :, 0]  # (R, kmax + 3)
        if kmax:
            first = torch.searchsorted(Ly.feat_pos, pos)
            count = torch.searchsorted(Ly.feat_pos, pos, right=True) - first
            j = torch.arange(kmax, device=g.device)
            mask = j[None, :] < count[:, None]
            cols = lay.feat_off[layer] + first[:, None] + j[None, :]
            out[rr[:, None].expand(R, kmax)[mask], cols[mask]] = res[:, :kmax][mask]
        out[rr, lay.err0 + layer * lay.P + pos] = res[:, kmax]
        out[:, lay.bias0 + layer] += res[:, kmax + 1]
        if lay.tot0 is not None:
            out[rr, lay.tot0 + layer * lay.P + pos] = res[:, kmax + 2]

    def _decoder(self, layer: int, Q: int, dtype: torch.dtype) -> torch.Tensor:
        """``layer``'s record matrix ``(>= Q, kmax + 3, d)``: the active features' activation-scaled decoder
        rows padded per position, then the error, ``b_dec`` and the features' sum plus the error (the
        layout of :attr:`FrozenLayer.dec_pad`).

        The frozen run's own matrix when it has one; else built from ``W_dec`` (the same products)
        and cached while under ``_DEC_CACHE_BYTES``.
        """
        Ly = self.run.layers[layer]
        if Ly.dec_pad is not None and Ly.dec_pad.dtype == dtype:
            return Ly.dec_pad
        dec = self._dec_cache.get(layer)
        if dec is not None:
            return dec
        lay = self.lay
        kmax = self._slots(layer)[1]
        size = lay.P * (kmax + DEC_EXTRA) * Ly.W_dec.shape[1] * Ly.W_dec.element_size()
        keep = self._dec_bytes + size <= _DEC_CACHE_BYTES
        n_b = Ly.feat_pos.numel() if keep else int(torch.searchsorted(Ly.feat_pos, torch.tensor(Q, device=Ly.feat_pos.device)))
        n_pos = lay.P if keep else Q
        dec = padded_decoder(Ly.W_dec, Ly.feat_pos[:n_b], Ly.feat_idx[:n_b], Ly.feat_act[:n_b], n_pos, kmax=kmax)[0].to(dtype)
        feat_sum = dec.sum(1)  # the extra slots are still zero (as in the frozen run)
        dec[:, kmax] = Ly.error[:n_pos]
        dec[:, kmax + 1] = Ly.b_dec
        dec[:, kmax + 2] = feat_sum + Ly.error[:n_pos]
        if keep:
            self._dec_cache[layer] = dec
            self._dec_bytes += size
        return dec

    def backward(self, rows: Sequence[_Row], *, g_top: torch.Tensor | None = None, start: int | None = None,
                 diag_only: bool = False, spawn: Callable[[int, torch.Tensor], None] | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """Direct effects of every source on each row: ``(R, n_sources)`` (into ``out`` when given, plain rows only).

        ``g_top``/``start``: begin from a given gradient at the residual entering layer
        ``start + 1`` (used for per-head rows). ``diag_only`` keeps only same-position
        attention; ``spawn(layer, g)`` then receives each layer's off-diagonal per-head
        gradients ``(R, H, Q, d)`` at the residual entering that layer.

        Plain rows go through :meth:`_backward_group`, one run of rows with the same layer
        at a time (pass rows sorted by layer), each pass starting at its own layer and
        truncated to its own last position.
        """
        if g_top is None and not diag_only:
            if out is None:
                out = torch.zeros(len(rows), self.lay.n, dtype=self.run.dtype, device=self.run.x0.device)
            else:
                out.zero_()
            for a, b in _runs([r.layer for r in rows]):
                self._backward_group(rows[a:b], out[a:b])
            return out
        return self._backward_general(rows, g_top=g_top, start=start, diag_only=diag_only, spawn=spawn)

    def _backward_group(self, rows: Sequence[_Row] | _RowBatch, out: torch.Tensor, *, diag_only: bool = False,
                        spawn: Callable[[int, _Grad], None] | None = None, lay: _Layout | None = None) -> None:
        """Rows injected at the same layer, written into ``out (R, n_sources)`` (zeros on entry).

        The gradient starts as rank 1 per row (one position) and stays factored (:class:`_Grad`)
        while that is cheaper; then it is dense. ``diag_only``/``spawn`` as in :meth:`_descend`.
        ``lay``: the column layout of ``out`` (default: the full one; or ``self.lay.below(layer)``).
        """
        run, L = self.run, self.L
        lay = lay or self.lay
        dt, dev = run.dtype, run.x0.device
        if not isinstance(rows, _RowBatch):
            rows = _RowBatch(rows[0].layer, torch.tensor([r.pos for r in rows], device=dev), torch.stack([r.vec for r in rows]).to(dt),
                             torch.tensor([r.const for r in rows], dtype=dt, device=dev), max(r.pos for r in rows) + 1)
        Q, layer0, pos, vec = rows.n_pos, rows.layer, rows.pos, rows.vec  # vec: (R, d)
        out[:, lay.bias0 + layer0] += rows.const
        upos, idx = torch.unique(pos, return_inverse=True)
        onehot = torch.zeros(int(upos.numel()), Q, 1, dtype=dt, device=dev)
        onehot[torch.arange(int(upos.numel()), device=dev), upos, 0] = 1.0
        inj = _Grad(U=onehot, V=vec[:, None, :], idx=idx, point=pos)
        if layer0 == L:
            fn = run.final_norm
            if fn.bias is not None:
                out[:, lay.bias0 + L] += vec @ fn.bias
            self._descend(out, inj.norm_t(fn, Q), None, L - 1, Q, diag_only=diag_only, spawn=spawn, lay=lay)
        else:
            self._descend(out, None, inj, layer0, Q, diag_only=diag_only, spawn=spawn, lay=lay)

    def _descend(self, out: torch.Tensor, G: _Grad | None, g_u0: _Grad | None, top: int, Q: int, *,
                 diag_only: bool = False, spawn: Callable[[int, _Grad], None] | None = None, lay: _Layout | None = None) -> None:
        """Pass a gradient down from layer ``top`` to the embeddings, recording direct effects into ``out``.

        ``G``: the gradient at the residual leaving layer ``top`` (``None``: zero); ``g_u0``: a
        gradient at layer ``top``'s MLP input (the rows' injection). ``diag_only`` keeps only
        same-position attention; ``spawn(layer, g)`` then receives each layer's off-diagonal
        per-head gradients at the residual entering that layer, rows ordered (row, head).
        ``lay``: the column layout of ``out`` (default: the full one).
        """
        run = self.run
        lay = lay or self.lay
        d = run.x0.shape[1]
        H = int(run.layers[0].pattern.shape[0]) if self.L else 0
        tok_attn: torch.Tensor | None = None  # the bottom attention's direct effects on the embeddings
        for layer in range(top, -1, -1):
            Ly = run.layers[layer]
            g_u = g_u0 if layer == top else None
            if G is not None:
                g_m = G.norm_t(Ly.post_mlp, Q) if Ly.post_mlp is not None else G
                if g_m.point is not None:
                    self._record_mlp_point(out, layer, g_m.point, g_m.at_point(), lay)
                else:
                    self._record_mlp(out, layer, g_m.dense(), lay)
                if Ly.W_skip is not None:
                    g_u = g_m.right(Ly.W_skip.T) if g_u is None else g_u + g_m.right(Ly.W_skip.T)
            g_from_u = None
            if g_u is not None:
                if Ly.norm_mlp.bias is not None:
                    out[:, lay.bias0 + layer] += g_u.pos_sum_dot(Ly.norm_mlp.bias)
                g_from_u = g_u.norm_t(Ly.norm_mlp, Q)
            if Ly.parallel or g_from_u is None:
                g_h = G
            else:
                g_h = g_from_u if G is None else G + g_from_u
            if g_h is not None:
                g_a = g_h.norm_t(Ly.post_attn, Q) if Ly.post_attn is not None else g_h
                out[:, lay.bias0 + layer] += g_a.pos_sum_dot(Ly.ov.const)
                pattern = Ly.pattern[:, :Q, :Q]
                factored = _lowrank_pays(g_a, Q, d, H)
                if diag_only:
                    diag = torch.diag_embed(pattern.diagonal(dim1=-2, dim2=-1))
                    if spawn is not None:
                        spawn(layer, self._cross_heads(Ly, pattern - diag, g_a, Q, factored))
                    pattern = diag
                if layer == 0 and not diag_only:
                    # the bottom attention: below it are only the embeddings (and its norm's bias), so
                    # its direct effects are taken against the embeddings' values per head instead of
                    # passing the gradient down to the embeddings through W_V
                    values, bias_values = self._values0()
                    if factored:
                        tok_attn, b_attn = attn_into_inputs_lowrank(Ly.ov, pattern, values[:, :Q], g_a.U, g_a.V, g_a.idx,  # type: ignore[arg-type]
                                                                    g_a.u_points(), bias_values)
                    else:
                        tok_attn, b_attn = attn_into_inputs(Ly.ov, pattern, values[:, :Q], g_a.dense(), bias_values)
                    if b_attn is not None:
                        out[:, lay.bias0 + layer] += b_attn
                    G = g_h
                else:
                    if factored:
                        U2, V2 = attn_transpose_lowrank(Ly.ov, pattern, g_a.U, g_a.V, g_a.idx, g_a.u_points())  # type: ignore[arg-type]
                        g_y = _Grad(U=U2, V=V2, idx=g_a.idx, point=g_a.point if diag_only else None)
                    else:
                        g_y = _Grad(D=attn_transpose(Ly.ov, pattern, g_a.dense()))
                    if Ly.norm_attn.bias is not None:
                        out[:, lay.bias0 + layer] += g_y.pos_sum_dot(Ly.norm_attn.bias)
                    G = g_h + g_y.norm_t(Ly.norm_attn, Q)
            if Ly.parallel and g_from_u is not None:
                G = g_from_u if G is None else G + g_from_u
            if G is not None and G.point is not None and G.rank > 1:  # still one position per row: back to rank 1
                G = G.collapse(Q)
            if G is not None and G.D is None and not _lowrank_pays(G, Q, d, H):
                G = _Grad(D=G.dense())
        if G is not None:
            out[:, lay.tok0: lay.tok0 + Q] = G.dot_positions(run.x0[:Q])
        if tok_attn is not None:
            out[:, lay.tok0: lay.tok0 + Q] += tok_attn

    def _values0(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer 0's attention values of its inputs: the embeddings' normed linear part times ``W_V``
        per head ``(H, P, dh)``, and its norm's bias times ``W_V`` ``(H, dh)`` (``None``: no bias)."""
        if self._v0 is None:
            Ly = self.run.layers[0]
            values = torch.einsum("pd,hde->hpe", Ly.norm_attn.apply(self.run.x0), Ly.ov.W_V)
            b = Ly.norm_attn.bias
            self._v0 = (values, torch.einsum("d,hde->he", b, Ly.ov.W_V) if b is not None else None)
        return self._v0

    @staticmethod
    def _cross_heads(Ly: Any, off: torch.Tensor, g_a: _Grad, Q: int, factored: bool) -> _Grad:
        """Per-head off-diagonal attention of ``g_a`` through the attention norm: rows ``(row, head)``."""
        H = int(off.shape[0])
        if factored:
            assert g_a.U is not None and g_a.V is not None
            U2, V2 = attn_transpose_lowrank(Ly.ov, off, g_a.U, g_a.V, g_a.idx, g_a.u_points())
            n_u, R, r = g_a.U.shape[0], g_a.V.shape[0], g_a.U.shape[2]
            U2 = U2.view(n_u, Q, H, r).transpose(1, 2).reshape(n_u * H, Q, r)  # (shared u, head)
            base = torch.arange(R, device=U2.device) if g_a.idx is None else g_a.idx
            idx = (base[:, None] * H + torch.arange(H, device=U2.device)).reshape(-1)  # rows (row, head)
            return _Grad(U=U2, V=V2.reshape(R * H, r, -1), idx=idx).norm_t(Ly.norm_attn, Q)
        per_head = attn_transpose(Ly.ov, off, g_a.dense(), per_head=True)  # (R, H, Q, d)
        return _Grad(D=_norm_t(Ly.norm_attn, per_head.reshape(-1, Q, per_head.shape[-1]), Q))

    def _backward_general(self, rows: Sequence[_Row], *, g_top: torch.Tensor | None = None, start: int | None = None,
                          diag_only: bool = False, spawn: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Dense passes: mixed-layer rows, a given top gradient, or same-position attention only (head split)."""
        run, lay = self.run, self.lay
        L = self.L
        dt, dev = run.dtype, run.x0.device
        if g_top is not None:
            R, Q = g_top.shape[0], g_top.shape[1]
            G = g_top
            top = int(start if start is not None else L - 1)
        else:
            R = len(rows)
            Q = max(r.pos for r in rows) + 1
            G = torch.zeros(R, Q, run.x0.shape[1], dtype=dt, device=dev)
            top = max(r.layer for r in rows)
        out = torch.zeros(R, lay.n, dtype=dt, device=dev)
        for i, r in enumerate(rows):
            out[i, lay.bias0 + r.layer] += r.const
        if g_top is None and top == L:
            fin = [i for i, r in enumerate(rows) if r.layer == L]
            inj = torch.zeros(len(fin), Q, G.shape[2], dtype=dt, device=dev)
            for j, i in enumerate(fin):
                inj[j, rows[i].pos] = rows[i].vec
            fn = run.final_norm
            if fn.bias is not None:
                out[fin, lay.bias0 + L] += inj.sum(1) @ fn.bias
            G[fin] = _norm_t(fn, inj, Q)
            top = L - 1
        by_layer: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            if r.layer < L:
                by_layer.setdefault(r.layer, []).append(i)
        for layer in range(top, -1, -1):
            Ly = run.layers[layer]
            g_m = _norm_t(Ly.post_mlp, G, Q) if Ly.post_mlp is not None else G
            self._record_mlp(out, layer, g_m, lay)
            g_u = g_m @ Ly.W_skip.T if Ly.W_skip is not None else None
            if layer in by_layer:
                if g_u is None:
                    g_u = torch.zeros_like(G)
                for i in by_layer[layer]:
                    g_u[i, rows[i].pos] += rows[i].vec
            if g_u is not None:
                if Ly.norm_mlp.bias is not None:
                    out[:, lay.bias0 + layer] += g_u.sum(1) @ Ly.norm_mlp.bias
                g_from_u = _norm_t(Ly.norm_mlp, g_u, Q)
            else:
                g_from_u = None
            g_h = G if (Ly.parallel or g_from_u is None) else G + g_from_u
            g_a = _norm_t(Ly.post_attn, g_h, Q) if Ly.post_attn is not None else g_h
            out[:, lay.bias0 + layer] += g_a.sum(1) @ Ly.ov.const
            pattern = Ly.pattern[:, :Q, :Q]
            if diag_only:
                diag = torch.diag_embed(pattern.diagonal(dim1=-2, dim2=-1))
                if spawn is not None:
                    per_head = attn_transpose(Ly.ov, pattern - diag, g_a, per_head=True)  # (R, H, Q, d)
                    spawn(layer, _norm_t(Ly.norm_attn, per_head, Q))
                pattern = diag
            g_y = attn_transpose(Ly.ov, pattern, g_a)
            if Ly.norm_attn.bias is not None:
                out[:, lay.bias0 + layer] += g_y.sum(1) @ Ly.norm_attn.bias
            G = g_h + _norm_t(Ly.norm_attn, g_y, Q)
            if Ly.parallel and g_from_u is not None:
                G = G + g_from_u
        out[:, lay.tok0: lay.tok0 + Q] = (G * run.x0[:Q]).sum(-1)
        return out

    def head_split(self, rows: Sequence[_Row], col_map: torch.Tensor, n_nodes: int, chunk: int = 64) -> torch.Tensor:
        """Per-head cross-position contributions ``(R, L, H, n_nodes)`` (last-crossing rule).

        ``col_map`` maps each source column to its graph node (index_add). Each row runs a
        same-position-only pass; at each layer its off-diagonal attention, per head, is passed
        down from there (factored while cheap, like :meth:`backward`).
        """
        run, lay = self.run, self.lay
        L, H = self.L, run.layers[0].pattern.shape[0]
        R = len(rows)
        dev = run.x0.device
        res = torch.zeros(R, L, H, n_nodes, dtype=run.dtype, device=dev)
        col_map = col_map.to(dev)
        for a, b in _runs([r.layer for r in rows]):

            def spawn(layer: int, g: _Grad, a: int = a) -> None:
                n_rows = g.n_rows
                Q = int((g.U if g.D is None else g.D).shape[1])  # type: ignore[union-attr]
                for c in range(0, n_rows, chunk):
                    part = g.rows(c, c + chunk)
                    m = part.n_rows
                    full = torch.zeros(m, lay.n, dtype=run.dtype, device=dev)
                    if layer == 0:  # nothing below layer 0 but the embeddings
                        full[:, lay.tok0: lay.tok0 + Q] = part.dot_positions(run.x0[:Q])
                    else:
                        self._descend(full, part, None, layer - 1, Q)
                    full[:, lay.bias0:] = 0.0  # constants have no position: not part of any crossing
                    mapped = torch.zeros(m, n_nodes, dtype=run.dtype, device=dev).index_add_(1, col_map, full)
                    r_idx = torch.arange(c, c + m, device=dev)
                    res[a + r_idx // H, layer, r_idx % H] = mapped

            scratch = torch.zeros(b - a, lay.n, dtype=run.dtype, device=dev)
            self._backward_group(rows[a:b], scratch, diag_only=True, spawn=spawn)
        return res


def _norm_t(norm: Any, g: torch.Tensor, Q: int) -> torch.Tensor:
    """Transposed frozen norm on ``(..., Q, d)`` (positions truncated to ``Q``)."""
    h = g * norm.inv[:Q, None] * norm.weight
    if norm.kind == "layer":
        h = h - h.mean(-1, keepdim=True)
    return h


# =========================================================================== prompt handling
@dataclass
class _Prepared:
    ids: list[int]
    spans: list[GeneSpan]
    text: str
    cell_id: str | None
    label: str | None
    n_prompt: int


def _prepare(prompt_or_cell: Any, tokenizer: Any, organism: str, template: PromptTemplate | None) -> _Prepared:
    cell_id = label = None
    if isinstance(prompt_or_cell, CellSentence):
        cell_id, label = prompt_or_cell.cell_id, prompt_or_cell.label
        prompt_or_cell = build_prompt(prompt_or_cell.genes, organism=organism, template=template)
    if isinstance(prompt_or_cell, Prompt):
        if tokenizer is None:
            raise InputError("attributing a gene prompt needs its tokenizer; pass tokenizer=")
        ids, spans = gene_token_spans(tokenizer, prompt_or_cell)
        return _Prepared(ids, spans, prompt_or_cell.text, cell_id, label, len(ids))
    if isinstance(prompt_or_cell, str):
        if tokenizer is None:
            raise InputError("attributing a text prompt needs its tokenizer; pass tokenizer=")
        ids = list(tokenizer(prompt_or_cell)["input_ids"])
        return _Prepared(ids, [], prompt_or_cell, None, None, len(ids))
    ids = [int(t) for t in torch.as_tensor(prompt_or_cell).reshape(-1).tolist()]
    return _Prepared(ids, [], "", None, None, len(ids))


def transcoders_fingerprint(transcoders: Mapping[int, Transcoder]) -> str:
    """A 16-hex hash of the transcoders' configs and of every weight tensor (encoder, decoder, biases,
    skip, threshold): a strided sample of each plus its exact sum, so any retraining changes it."""
    h = hashlib.sha256()
    for layer in sorted(transcoders):
        tc = transcoders[layer]
        c = tc.cfg
        h.update(json.dumps({"layer": layer, "d_in": c.d_in, "d_features": c.d_features, "d_out": c.d_out,
                             "act": c.activation, "k": c.k, "l1": c.l1_coeff, "skip": c.skip, "model": c.model,
                             "data": c.data_hash}, sort_keys=True, default=str).encode())
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip", "threshold"):
            t = getattr(tc, name, None)
            if t is None:
                continue
            flat = t.detach().to("cpu", torch.float32).contiguous().view(-1)
            h.update(f"{name}{tuple(t.shape)}".encode())
            h.update(flat[:: max(1, flat.numel() // 4096)].numpy().tobytes())
            h.update(repr(float(flat.double().sum())).encode())
    return h.hexdigest()[:16]


def _cached_transcoders_fingerprint(rm: ReplacementModel) -> str:
    if "transcoders" not in rm._fingerprints:
        rm._fingerprints["transcoders"] = transcoders_fingerprint(rm.transcoders)
    return rm._fingerprints["transcoders"]


# =========================================================================== entry point
def attribute(
    prompt_or_cell: CellSentence | Prompt | str | Sequence[int] | torch.Tensor,
    model: nn.Module | ReplacementModel,
    transcoders: Mapping[int, Transcoder] | Sequence[Transcoder] | None = None,
    *,
    tokenizer: Any = None,
    target: TargetKind = "answer",
    answer: str | None = None,
    candidates: Sequence[str] | None = None,
    contrast: str | None = None,
    template: PromptTemplate | None = None,
    organism: str = DEFAULT_ORGANISM,
    max_feature_nodes: int | None = None,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    head_split_nodes: int | None = 32,
    head_edges_per_node: int | None = 64,
    heads: bool = True,
    pairs: bool = True,
    callback: ProgressCallback | None = None,
) -> AttributionGraph:
    """Attribution graph of one prompt or cell in the local replacement model.

    Parameters
    ----------
    prompt_or_cell
        A :class:`CellSentence` (genes, label, id), a rendered :class:`Prompt`, a text
        prompt, or token ids. Gene nodes exist only for cells/prompts (gene spans).
    model
        The Hugging Face model (with ``transcoders``) or a :class:`ReplacementModel`.
    transcoders
        One transcoder per layer (ignored when ``model`` is a ReplacementModel).
    tokenizer
        The model's fast tokenizer (needed unless token ids are given).
    target
        ``"answer"``: the logit of the answer token where ``answer`` (default: the
        cell's label) first diverges from the other ``candidates``, with the shared
        answer prefix appended to the prompt. ``"top"``: the model's top next token.
    answer, candidates
        The cell type to explain and all cell types the model answers.
    contrast
        Explain ``logit(answer) - logit(contrast)`` at their first diverging token.
    max_feature_nodes
        Keep at most this many features (chosen greedily by estimated influence on
        the target); ``None`` keeps every active feature. Left-out features are
        folded into the error nodes so all sums stay exact.
    batch_size
        Rows per batched transposed pass (every active feature), or per selection round under
        ``max_feature_nodes`` (then in passes of at most ``2**23 / (tokens * d_model)`` rows, at
        least 16). ``None`` picks about ``2**23 / (tokens * d_model)`` (16 to 512), so small models
        get wide batches and large ones bounded memory; with a budget, at least
        ``max_feature_nodes / 4`` up to 512 (at most 4 rounds up to a 2,048-feature budget:
        fewer, wider passes; circuit-tracer ranks once per 4 batches of 512).
    dtype
        Dtype of the frozen model (``torch.float64`` for exact checks).
    head_split_nodes, head_edges_per_node
        Split cross-position edges per attention head for the targets and the top
        ``head_split_nodes`` features (by influence), keeping each node's
        ``head_edges_per_node`` largest cross-position incoming edges. ``None``: all.
        Each split node costs about ``n_layers * n_heads / 2`` extra rows of backward
        passes (one per head and layer, from that layer down).
    heads
        ``False`` skips the per-head split altogether.
    pairs
        Compute same-position feature-pair virtual weights.
    callback
        ``callback(stage, done, total)`` for progress.

    Returns
    -------
    AttributionGraph
    """
    t0 = time.perf_counter()
    rm = model if isinstance(model, ReplacementModel) else ReplacementModel(model, transcoders or {})
    cb = callback or (lambda stage, done, total: None)
    prep = _prepare(prompt_or_cell, tokenizer, organism, template)
    tgt: Target | None = None
    if target == "answer":
        answer = answer or prep.label
        if answer is None or candidates is None or tokenizer is None:
            raise InputError("target='answer' needs the cell type (answer= or a labelled cell), candidates= and tokenizer=; or use target='top'")
        tgt = answer_target(tokenizer, candidates, answer, contrast, template)
        prep.ids = prep.ids + list(tgt.prefix)
    elif target != "top":
        raise InputError(f"target must be 'answer' or 'top', not {target!r}")
    rm.check_length(len(prep.ids))
    run = rm.run(prep.ids, dtype=dtype, all_logits=False)
    cb("forward", 1, 1)
    if tgt is None:  # the model's own top next token (its logits; a final softcap keeps the order)
        tok = int(run.logits[-1].argmax())
        tgt = Target(_decode(tokenizer, tok), tok)
    # the frozen model's pre-softcap logits of the target tokens only (not the whole vocabulary)
    tokens = [tgt.token] + ([tgt.contrast_token] if tgt.contrast_token is not None else [])
    logits = dict(zip(tokens, run.pre_softcap_logits(-1, tokens=tokens).tolist()))
    if batch_size is None:
        batch_size = int(min(512, max(16, (1 << 23) // max(1, run.n_pos * run.x0.shape[1]))))
        if max_feature_nodes is not None and max_feature_nodes < sum(int(Ly.feat_pos.numel()) for Ly in run.layers):
            batch_size = max(batch_size, min(512, -(-max_feature_nodes // 4)))  # a budget is picked in at most 4 rounds
    elif batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    graph = _build_graph(run, rm, tgt, prep, tokenizer, logits, max_feature_nodes=max_feature_nodes, batch_size=batch_size,
                         head_split_nodes=head_split_nodes, head_edges_per_node=head_edges_per_node, heads=heads, pairs=pairs, cb=cb)
    graph.metadata["seconds"] = time.perf_counter() - t0
    return graph


def _decode(tokenizer: Any, tok: int) -> str:
    if tokenizer is None:
        return str(tok)
    return str(tokenizer.decode([tok]))


def _build_graph(run: FrozenRun, rm: ReplacementModel, tgt: Target, prep: _Prepared, tokenizer: Any, logits: Mapping[int, float], *,
                 max_feature_nodes: int | None, batch_size: int, head_split_nodes: int | None,
                 head_edges_per_node: int | None, heads: bool, pairs: bool, cb: ProgressCallback) -> AttributionGraph:
    eng = _Engine(run)
    lay = eng.lay
    L, P = lay.L, lay.P
    dt = run.dtype
    q = P - 1
    # ---- target row
    w = run.W_U[:, tgt.token].clone()
    const = float(run.b_U[tgt.token]) if run.b_U is not None else 0.0
    if tgt.contrast_token is not None:
        w = w - run.W_U[:, tgt.contrast_token]
        const -= float(run.b_U[tgt.contrast_token]) if run.b_U is not None else 0.0
    target_row = _Row(L, q, w, const)
    target_value = float(logits[tgt.token] - (logits[tgt.contrast_token] if tgt.contrast_token is not None else 0.0))
    t_rows = eng.backward([target_row])  # (1, n)

    # ---- feature rows
    feat_layer = torch.cat([torch.full((int(Ly.feat_pos.numel()),), Ly.index, dtype=torch.long) for Ly in run.layers]) if L else torch.zeros(0, dtype=torch.long)
    feat_pos = torch.cat([Ly.feat_pos.cpu() for Ly in run.layers])
    feat_idx = torch.cat([Ly.feat_idx.cpu() for Ly in run.layers])
    n_feat = lay.n_feat
    fl, fp, fi = feat_layer.tolist(), feat_pos.tolist(), feat_idx.tolist()
    # feature i's encoder vector: a contiguous row of W_enc.T (cached on the model) or a column of W_enc
    enc_rows = [rm.encoder_rows(layer, dt, run.x0.device) for layer in range(L)]

    def feat_row(f: int) -> _Row:
        layer, i = fl[f], fi[f]
        E, Ly = enc_rows[layer], run.layers[layer]
        return _Row(layer, fp[f], E[i] if E is not None else Ly.W_enc[:, i], float(Ly.b_enc[i]))

    def feat_rows(fs: list[int]) -> _RowBatch:
        """Features of one layer as a batch of rows (the values of ``[feat_row(f) for f in fs]``)."""
        layer = fl[fs[0]]
        Ly, E = run.layers[layer], enc_rows[layer]
        ft = torch.tensor(fs, dtype=torch.long)
        idx = feat_idx[ft].to(dev)
        vec = E[idx] if E is not None else Ly.W_enc[:, idx].T.contiguous()
        return _RowBatch(layer, feat_pos[ft].to(dev), vec, Ly.b_enc[idx], max(fp[f] for f in fs) + 1)

    budget = n_feat if max_feature_nodes is None else min(max_feature_nodes, n_feat)
    dev = run.x0.device
    if budget == n_feat:
        # every feature, in layout order (sorted by layer, position): each batch is shallow and
        # short, and its rows go straight into the adjacency (feature f is node f)
        kept = list(range(n_feat))
        kept_t = torch.arange(n_feat)
        lay_n = _node_layout(run, lay, prep, tokenizer, tgt, kept, fl, fp, fi, feat_layer, feat_pos)
        nodes, col_map, feat_node, err_node0, gene_of_pos, bias_node0, tnode = lay_n
        n = len(nodes)
        # Source columns of features and errors are their nodes (m of them, in the same order):
        # copied as they are; only tokens (merged into genes) and biases are mapped. Every row of a
        # feature is written whole, so only the other nodes' rows are zeroed.
        m = lay.tok0
        assert err_node0 == lay.err0 and bool((col_map[:m] == torch.arange(m)).all())
        adjacency = torch.empty(n, n, dtype=dt)
        adjacency[n_feat:].zero_()
        col_map_dev = col_map.to(dev)
        tail_map = col_map_dev[m:] - m
        rows_buf = torch.empty(min(batch_size, max(1, n_feat)), lay.n, dtype=dt, device=dev)
        for a in range(0, n_feat, batch_size):
            batch = kept[a: a + batch_size]
            rows = rows_buf[: len(batch)]
            rows.zero_()
            for i, j in _runs([fl[f] for f in batch]):  # runs of one layer (as Engine.backward)
                eng._backward_group(feat_rows(batch[i:j]), rows[i:j])
            dst = adjacency[a: a + len(batch)]
            dst[:, :m] = rows[:, :m].cpu()
            dst[:, m:] = torch.zeros(len(batch), n - m, dtype=dt, device=dev).index_add_(1, tail_map, rows[:, m:]).cpu()
            cb("features", a + len(batch), budget)
        del rows_buf
    else:
        # Rows are kept in blocks of rows injected at one layer, each in that layer's narrower
        # layout (Layout.below): a row has no sources in its own layer or above.
        blocks: list[tuple[list[int], int, torch.Tensor]] = []
        below: dict[int, _Layout] = {}
        order: list[int] = []
        scores = torch.zeros(n_feat, dtype=dt, device=dev)
        visited = torch.zeros(n_feat, dtype=torch.bool, device=dev)
        scores += _influence_share(t_rows[0], n_feat)
        sub = max(16, min(batch_size, (1 << 23) // max(1, P * int(run.x0.shape[1]))))  # rows per pass: a dense gradient of at most 2^23 floats
        while len(order) < budget:
            cand = scores.masked_fill(visited, -1.0)
            k = min(batch_size, budget - len(order))
            top = torch.topk(cand, k).indices.tolist()
            batch = sorted(top, key=lambda f: (fl[f], fp[f]))
            # sub-batches of neighbouring (layer, position), then runs of one layer: each pass
            # stops at its own top layer and is truncated to its own last position
            new: list[tuple[list[int], int, torch.Tensor]] = []
            for c in range(0, len(batch), sub):
                part = batch[c: c + sub]
                for i, j in _runs([fl[f] for f in part]):
                    layer = fl[part[i]]
                    if layer not in below:
                        below[layer] = lay.below(layer, totals=True)
                    blk = torch.zeros(j - i, below[layer].n, dtype=dt, device=dev)
                    eng._backward_group(feat_rows(part[i:j]), blk, lay=below[layer])
                    new.append((part[i:j], layer, blk))
            order.extend(batch)
            visited[batch] = True
            # each new row passes its own (pre-batch) influence estimate on to its sources
            updates = []
            for feats, layer, blk in new:
                ab = blk[:, : below[layer].tot0].abs()  # the sources (not the totals)
                w = scores[torch.tensor(feats, device=dev)].clamp_min(0) / ab.sum(1).clamp_min(1e-30)
                updates.append((lay.feat_off[layer], w, ab))
            for nf, w, ab in updates:
                if nf:
                    scores[:nf] += w @ ab[:, :nf]
            del updates
            blocks.extend(new)
            cb("features", len(order), budget)
        kept = sorted(order, key=lambda f: (fl[f], fp[f], fi[f]))
        kept_t = torch.tensor(kept, dtype=torch.long)
        lay_n = _node_layout(run, lay, prep, tokenizer, tgt, kept, fl, fp, fi, feat_layer, feat_pos)
        nodes, col_map, feat_node, err_node0, gene_of_pos, bias_node0, tnode = lay_n
        n = len(nodes)
        adjacency = _zeros(n, n, dt)
        col_map_dev = col_map.to(dev)
        # A block's rows have sources only among the kept features of lower layers (nodes 0..K-1,
        # their columns are their feature indices), the error nodes of lower layers, the genes and
        # the biases: those ranges of its rows are written, the rest stays zero. A dropped feature
        # folds into its error node: the node's edge is the MLP output's total (all its features
        # plus its error) less the kept features, so the dropped features' columns are not read.
        kept_t_dev = kept_t.to(dev)
        kept_slot = (feat_layer[kept_t] * P + feat_pos[kept_t]).to(dev)  # each kept feature's MLP output (layer, pos)
        kept_below = torch.searchsorted(feat_layer[kept_t], torch.arange(L + 1)).tolist()  # kept features of layers < l
        gene0 = err_node0 + L * P
        tok_map = col_map_dev[lay.tok0: lay.bias0] - gene0
        for feats, layer, blk in blocks:
            b, K = below[layer], kept_below[layer]
            rows = torch.tensor([feat_node[f] for f in feats], dtype=torch.long)
            kept_cols = blk.index_select(1, kept_t_dev[:K])
            err = blk[:, b.tot0: b.tot0 + layer * P].index_add(1, kept_slot[:K], kept_cols, alpha=-1)
            genes = torch.zeros(len(feats), bias_node0 - gene0, dtype=dt, device=dev).index_add_(1, tok_map, blk[:, b.tok0: b.bias0])
            adjacency[rows, :K] = kept_cols.cpu()
            adjacency[rows, err_node0: err_node0 + layer * P] = err.cpu()
            adjacency[rows, gene0: bias_node0] = genes.cpu()
            adjacency[rows, bias_node0: bias_node0 + L + 1] = blk[:, b.bias0: b.tot0].cpu()
        assert sum(len(f) for f, _, _ in blocks) == len(kept)
        del blocks
    adjacency[tnode] = torch.zeros(n, dtype=dt, device=dev).index_add_(0, col_map_dev, t_rows[0]).cpu()

    # ---- values
    values = torch.zeros(n, dtype=dt)
    values[: len(kept)] = torch.cat([Ly.feat_pre for Ly in run.layers]).cpu()[kept_t]
    for layer in range(L):
        values[err_node0 + layer * P: err_node0 + (layer + 1) * P] = run.layers[layer].error.norm(dim=-1).cpu()
    values.index_add_(0, torch.tensor([gene_of_pos[p] for p in range(P)], dtype=torch.long), run.x0.norm(dim=-1).cpu())
    values[bias_node0: bias_node0 + L + 1] = 1.0
    values[tnode] = target_value

    # ---- influence (for ranking) and head split
    if not heads:
        head_edges, head_weights = torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, L, int(run.layers[0].pattern.shape[0]) if L else 0, dtype=dt)
    else:
        infl = _node_influence(adjacency, tnode, L + 2)
        head_edges, head_weights = _head_split(eng, run, nodes, adjacency, infl, tnode, target_row, feat_row, kept, feat_node,
                                               col_map, head_split_nodes, head_edges_per_node, batch_size, cb)
    pair_index, pair_virtual = _pairs(run, feat_layer[kept_t], feat_pos[kept_t], feat_idx[kept_t], enc_rows) if pairs else (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=dt))

    metadata: dict[str, Any] = {
        "prompt": prep.text,
        "cell_id": prep.cell_id,
        "label": prep.label,
        "n_prompt_tokens": prep.n_prompt,
        "n_tokens": P,
        "input_ids": [int(t) for t in run.input_ids.tolist()],
        "prompt_tokens": [_decode(tokenizer, int(t)) for t in run.input_ids.tolist()],
        "target_prob": _target_prob(run, tgt),
        "target": {"label": tgt.label, "token_id": tgt.token, "token": _decode(tokenizer, tgt.token),
                   "contrast": tgt.contrast_label, "contrast_token_id": tgt.contrast_token,
                   "answer_prefix": list(tgt.prefix), "value": target_value, "space": "pre-softcap logit"},
        "softcap": run.softcap,
        "model": rm.fingerprint(),
        "transcoders": _cached_transcoders_fingerprint(rm),
        "arch": rm.adapter.arch,
        "n_layers": L,
        "n_heads": int(run.layers[0].pattern.shape[0]) if L else 0,
        "dtype": str(dt).replace("torch.", ""),
        "n_active_features": n_feat,
        "n_feature_nodes": len(kept),
        "dropped_features": n_feat - len(kept),
        "max_feature_nodes": max_feature_nodes,
        "error_nodes_include_dropped_features": n_feat > len(kept),
        "head_split_rule": "last crossing" if heads else None,
        "pairs_rule": "same position, residual path",
    }
    return AttributionGraph(nodes=nodes, adjacency=adjacency, head_edges=head_edges, head_weights=head_weights, values=values,
                            metadata=metadata, pair_index=pair_index, pair_virtual=pair_virtual)


def _zeros(n: int, m: int, dtype: torch.dtype) -> torch.Tensor:
    """A zero ``(n, m)`` CPU tensor from numpy's ``zeros`` (``calloc``).

    A large block comes straight from the OS, already zero, and a page costs time only when first
    touched. A graph's adjacency is mostly rows that are never written (errors, genes, biases),
    and ``torch.zeros`` would write every byte of them. Small blocks are zeroed by ``calloc``
    itself, which costs the same as ``torch.zeros``.
    """
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype)
    if np_dtype is None:
        return torch.zeros(n, m, dtype=dtype)
    return torch.from_numpy(np.zeros((n, m), dtype=np_dtype))


def _node_layout(run: FrozenRun, lay: _Layout, prep: _Prepared, tokenizer: Any, tgt: Target, kept: list[int], fl: list[int],
                 fp: list[int], fi: list[int], feat_layer: torch.Tensor, feat_pos: torch.Tensor
                 ) -> tuple[list[GraphNode], torch.Tensor, dict[int, int], int, dict[int, int], int, int]:
    """Graph nodes for the ``kept`` features (sorted), and each source column's node.

    Returns ``(nodes, col_map, feat_node, err_node0, gene_of_pos, bias_node0, tnode)``; dropped
    features' columns map to their error node.
    """
    L, P = lay.L, lay.P
    nodes: list[GraphNode] = []
    col_map = torch.empty(lay.n, dtype=torch.long)
    act_kept = torch.cat([Ly.feat_act for Ly in run.layers]).cpu()[torch.tensor(kept, dtype=torch.long)].tolist()
    feat_node = {f: i for i, f in enumerate(kept)}
    nodes.extend(GraphNode("feature", layer=fl[f], pos=fp[f], index=fi[f], activation=a) for f, a in zip(kept, act_kept))
    err_node0 = len(nodes)
    nodes.extend(GraphNode("error", layer=layer, pos=p) for layer in range(L) for p in range(P))
    col_map[lay.err0: lay.tok0] = torch.arange(err_node0, err_node0 + L * P)
    col_map[: lay.n_feat] = err_node0 + feat_layer * P + feat_pos  # dropped features fold into their error node
    col_map[torch.tensor(kept, dtype=torch.long)] = torch.arange(len(kept))
    gene_of_pos: dict[int, int] = {}
    for sp in prep.spans:
        gene_of_pos.update({p: len(nodes) for p in range(sp.start, sp.end)})
        nodes.append(GraphNode("gene", pos=sp.start, span_end=sp.end, gene=sp.gene))
    for p in range(P):
        if p not in gene_of_pos:
            gene_of_pos[p] = len(nodes)
            nodes.append(GraphNode("token", pos=p, token=_decode(tokenizer, int(run.input_ids[p]))))
    col_map[lay.tok0: lay.bias0] = torch.tensor([gene_of_pos[p] for p in range(P)], dtype=torch.long)
    bias_node0 = len(nodes)
    nodes.extend(GraphNode("bias", layer=layer) for layer in range(L + 1))
    col_map[lay.bias0:] = torch.arange(bias_node0, bias_node0 + L + 1)
    tnode = len(nodes)
    label = tgt.label if tgt.contrast_label is None else f"{tgt.label} - {tgt.contrast_label}"
    nodes.append(GraphNode("target", pos=P - 1, index=tgt.token, label=label, token=_decode(tokenizer, tgt.token)))
    return nodes, col_map, feat_node, err_node0, gene_of_pos, bias_node0, tnode


def _target_prob(run: FrozenRun, tgt: Target) -> float:
    """The model's probability of the target token at the last position (post-softcap)."""
    return float(torch.softmax(run.logits[-1].double(), -1)[tgt.token])


def _influence_share(row: torch.Tensor, n_feat: int) -> torch.Tensor:
    a = row[:n_feat].abs()
    tot = row.abs().sum()
    return a / tot if float(tot) > 0 else a


def _node_influence(adjacency: torch.Tensor, tnode: int, depth: int) -> torch.Tensor:
    """Indirect influence on the target of each node that has incoming edges (features, target).

    Walks the row-normalised ``|adjacency|`` restricted to those nodes; others get 0.
    Used only to rank features (e.g. for the per-head split).
    """
    rowsum = adjacency.abs().sum(1)
    rows = torch.nonzero(rowsum > 0).flatten()
    infl = torch.zeros(adjacency.shape[0])
    if rows.numel() == 0:
        return infl
    sub = adjacency[rows[:, None], rows[None, :]].abs().to(torch.float32) / rowsum[rows].to(torch.float32).clamp_min(1e-30)[:, None]
    pos_t = int((rows == tnode).nonzero().flatten()[0])
    v = torch.zeros(rows.numel())
    v[pos_t] = 1.0
    acc = torch.zeros(rows.numel())
    for _ in range(depth + 1):
        v = v @ sub
        if float(v.abs().sum()) == 0:
            break
        acc += v
    infl[rows] = acc
    return infl


def _head_split(eng: _Engine, run: FrozenRun, nodes: list[GraphNode], adjacency: torch.Tensor, infl: torch.Tensor, tnode: int,
                target_row: _Row, feat_row: Callable[[int], _Row], kept: list[int], feat_node: dict[int, int],
                col_map: torch.Tensor, n_nodes: int | None, per_node: int | None, batch_size: int,
                cb: ProgressCallback) -> tuple[torch.Tensor, torch.Tensor]:
    L = eng.L
    H = int(run.layers[0].pattern.shape[0]) if L else 0
    dt = run.dtype
    node_feat = {v: k for k, v in feat_node.items()}
    feats_by_infl = sorted(node_feat, key=lambda i: -float(infl[i]))
    chosen = [tnode] + (feats_by_infl if n_nodes is None else feats_by_infl[:n_nodes])
    src_pos = _source_positions(nodes)
    edges: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    n = len(nodes)
    bs = max(1, batch_size // max(1, H))
    for a in range(0, len(chosen), bs):
        batch = chosen[a: a + bs]
        rows = [target_row if t == tnode else feat_row(node_feat[t]) for t in batch]
        # candidate sources per target: cross-position (some source position differs from the target's)
        cand_per_t = []
        for t in batch:
            tpos = int(nodes[t].pos or 0)
            row = adjacency[t]
            cand = [s for s in torch.nonzero(row).flatten().tolist() if src_pos[s] and min(src_pos[s]) < tpos]
            if per_node is not None and len(cand) > per_node:
                cand = sorted(cand, key=lambda s: -abs(float(row[s])))[:per_node]
            cand_per_t.append(cand)
        if not any(cand_per_t):
            continue
        mapped = eng.head_split(rows, col_map, n)  # (B, L, H, n)
        for j, t in enumerate(batch):
            if cand_per_t[j]:
                idx = torch.tensor(cand_per_t[j], dtype=torch.long)
                edges.append(torch.stack([torch.full_like(idx, t), idx], 1))
                weights.append(mapped[j][:, :, idx.to(run.x0.device)].permute(2, 0, 1).cpu())
        cb("heads", min(a + bs, len(chosen)), len(chosen))
    if not edges:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, L, H, dtype=dt)
    return torch.cat(edges), torch.cat(weights)


def _source_positions(nodes: list[GraphNode]) -> list[list[int]]:
    out: list[list[int]] = []
    for nd in nodes:
        if nd.kind == "gene":
            out.append(list(range(int(nd.pos or 0), int(nd.span_end or 0))))
        elif nd.kind in ("feature", "error", "token"):
            out.append([int(nd.pos or 0)])
        else:
            out.append([])
    return out


def _pairs(run: FrozenRun, feat_layer: torch.Tensor, feat_pos: torch.Tensor, feat_idx: torch.Tensor,
           enc_rows: Sequence[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-position virtual weights between the kept features (source layer < target layer).

    ``feat_layer/pos/idx (K,)``: the kept features in node order (node ``i`` is feature ``i``,
    sorted by layer). Pairs come grouped by position (positions in order of first appearance),
    then by target node, then by source node. ``enc_rows``: per layer ``W_enc.T`` where cached.
    """
    K = int(feat_layer.numel())
    if K < 2:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=run.dtype)
    dev = run.x0.device
    enc = torch.empty(K, run.x0.shape[1], dtype=run.dtype, device=dev)
    dec = torch.empty_like(enc)
    for Ly in run.layers:  # the kept features of each layer are one contiguous run
        sel = torch.nonzero(feat_layer == Ly.index).flatten()
        if sel.numel() == 0:
            continue
        a, b = int(sel[0]), int(sel[-1]) + 1
        pos, idx = feat_pos[a:b].to(dev), feat_idx[a:b].to(dev)
        E = enc_rows[Ly.index] if enc_rows is not None else None
        e = (E[idx] if E is not None else Ly.W_enc[:, idx].T) * Ly.norm_mlp.inv[pos, None] * Ly.norm_mlp.weight
        if Ly.norm_mlp.kind == "layer":
            e = e - e.mean(-1, keepdim=True)
        enc[a:b] = e
        dvec = Ly.W_dec[idx]
        if Ly.post_mlp is not None:
            dvec = dvec * Ly.post_mlp.inv[pos, None] * Ly.post_mlp.weight
        dec[a:b] = dvec
    # members of each position, positions in order of first appearance, members in node order
    first = torch.full((int(feat_pos.max()) + 1,), K, dtype=torch.long).scatter_reduce_(0, feat_pos, torch.arange(K), "amin")
    order = torch.sort(first[feat_pos], stable=True).indices  # (K,) nodes grouped by position
    key = first[feat_pos][order]
    size = torch.unique_consecutive(key, return_counts=True)[1]
    start = torch.cumsum(size, 0) - size
    m = torch.repeat_interleave(size, size)  # each member's group size
    s0 = torch.repeat_interleave(start, size)  # each member's group start (in ``order``)
    ti = torch.repeat_interleave(torch.arange(K), m)  # target member, repeated once per group member
    off = torch.arange(int(m.sum())) - torch.repeat_interleave(torch.cumsum(m, 0) - m, m)
    si = torch.repeat_interleave(s0, m) + off
    t, src = order[ti], order[si]
    keep = feat_layer[t] > feat_layer[src]
    t, src = t[keep], src[keep]
    if t.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=run.dtype)
    G, mmax = int(size.numel()), int(size.max())
    if G * mmax * mmax <= min(_PAIR_PRODUCT_ELEMS, _PAIR_PADDING * t.numel()):  # pays unless mostly padding
        # one product per position: all its members' encoders times all its members' decoders
        # (padded to the largest position), then each pair's entry
        gid = torch.repeat_interleave(torch.arange(G), size)  # each member's group (in ``order``)
        slot = torch.arange(K) - start[gid]
        pad = torch.zeros(G, mmax, dtype=torch.long)
        pad[gid, slot] = order
        pad = pad.to(dev)
        prod = torch.bmm(enc[pad], dec[pad].transpose(1, 2))  # (G, mmax, mmax): [g, target slot, source slot]
        g = gid[ti[keep]]
        vals = prod[g.to(dev), slot[ti[keep]].to(dev), off[keep].to(dev)]
        return torch.stack([t, src], 1), vals.cpu()
    vals = torch.empty(t.numel(), dtype=run.dtype, device=dev)
    step = max(1, (1 << 22) // max(1, enc.shape[1]))  # pairs per chunk: two (step, d) gathers of ~16 MiB
    for a in range(0, t.numel(), step):
        td, sd = t[a: a + step].to(dev), src[a: a + step].to(dev)
        vals[a: a + step] = torch.bmm(enc[td][:, None, :], dec[sd][:, :, None])[:, 0, 0]
    return torch.stack([t, src], 1), vals.cpu()


# =========================================================================== many cells
def attribute_many(
    cells: Sequence[Any],
    model: nn.Module | ReplacementModel,
    transcoders: Mapping[int, Transcoder] | Sequence[Transcoder] | None = None,
    *,
    callback: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> list[AttributionGraph] | None:
    """Attribute many cells, sharded by cell over a torch.distributed (gloo) group.

    With ``WORLD_SIZE > 1`` in the environment (``torchrun``, or RANK / WORLD_SIZE /
    MASTER_ADDR / MASTER_PORT set by hand) rank ``r`` attributes cells ``r, r + W, ...``
    and rank 0 gathers the graphs back into input order. A single process does all.

    Parameters
    ----------
    cells
        Cells (or prompts) for :func:`attribute`; each cell's own label is its answer.
    model, transcoders
        As for :func:`attribute` (build a :class:`ReplacementModel` once and pass it).
    callback
        ``callback(done, total_on_this_rank)`` after each cell.
    **kwargs
        Passed to :func:`attribute` for every cell.

    Returns
    -------
    list of AttributionGraph or None
        All graphs in input order on rank 0; ``None`` on other ranks.
    """
    import os

    import torch.distributed as dist

    rm = model if isinstance(model, ReplacementModel) else ReplacementModel(model, transcoders or {})
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    started = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    rank = dist.get_rank() if world > 1 else 0
    try:
        mine = list(range(rank, len(cells), world))
        graphs: list[tuple[int, AttributionGraph]] = []
        for k, i in enumerate(mine):
            graphs.append((i, attribute(cells[i], rm, **kwargs)))
            if callback is not None:
                callback(k + 1, len(mine))
        if world == 1:
            return [g for _, g in graphs]
        gathered: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(graphs, gathered, dst=0)
        if rank != 0:
            return None
        assert gathered is not None
        merged = sorted((pair for part in gathered for pair in part), key=lambda p: p[0])
        return [g for _, g in merged]
    finally:
        if started:
            dist.destroy_process_group()
