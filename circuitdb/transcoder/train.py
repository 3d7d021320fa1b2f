"""Train one transcoder per layer on harvested MLP inputs/outputs, resumably.

Layout of ``OUT``::

    transcoders.json            model hash, layers, activations hash, transcoder-set hash
    layer_{i}/cfg.json          :class:`~circuitdb.transcoder.model.TranscoderConfig`
    layer_{i}/transcoder.safetensors
                                circuit-tracer keys, mapping *raw* MLP input to *raw* MLP output
    layer_{i}/stats.safetensors mean MLP input/output over the training rows (for mean ablation)
    layer_{i}/train_state.pt    parameters, Adam state, step, dead-feature counters, RNG
                                (the checkpoint an interrupted run resumes from)

Training runs in a normalised space (inputs and outputs scaled so that the mean
squared norm is ``d``); the scales are folded into the saved weights, so the saved
transcoder needs no normalisation. Data order is a pure function of
``(seed, layer, epoch)``, so a run resumed from a checkpoint ends with exactly the
weights of an uninterrupted one.

TopK (default) needs no (rows, features) gradient: the top-k is selected exactly in two
stages (group maxima, then the chosen groups), and the backward pass, written out by hand,
touches only the ``k`` (and AuxK) selected features of each row, so encoder and decoder
gradients cost ``B * k * d`` instead of ``B * F * d``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from circuitdb.errors import InputError
from circuitdb.transcoder.common import save_tensors_atomic, sha256_file, sha256_json, torch_save_atomic, write_json_atomic
from circuitdb.transcoder.harvest import SEG_GENE, check_manifest, read_manifest
from circuitdb.transcoder.model import Activation, Transcoder, TranscoderConfig

STATE_NAME = "train_state.pt"
STATS_NAME = "stats.safetensors"
SET_MANIFEST = "transcoders.json"
#: Config fields that may change between a run and its resumption.
_RESUMABLE_FIELDS = ("checkpoint_every", "save_dtype", "steps", "epochs")


class TrainingDiverged(InputError):
    """The loss became NaN/inf; the last good checkpoint was kept."""


class TrainingInterrupted(Exception):
    """Raised by a callback (or a step limit) to stop after a checkpoint; rerun to resume."""


@dataclass
class TrainConfig:
    """How to train each layer's transcoder.

    Parameters
    ----------
    d_features
        Number of features per layer.
    activation
        ``topk`` (sparsify-style, default), ``relu`` (with an L1 penalty, Dunefsky et al.)
        or ``jumprelu`` (straight-through estimator, L0 penalty).
    k
        Features kept per row for ``topk``.
    l1_coeff
        Sparsity coefficient: L1 for ``relu``, L0 for ``jumprelu``.
    jumprelu_bandwidth
        Kernel width of JumpReLU's straight-through estimator (normalised units).
    jumprelu_init_threshold
        Initial JumpReLU threshold.
    skip
        Learn a linear skip connection ``W_skip``.
    batch_size
        Rows per optimiser step.
    steps, epochs
        Training length: ``steps`` optimiser steps, or ``epochs`` passes over the rows
        (default 10 epochs when neither is given).
    lr
        Adam learning rate; default ``2e-4 / sqrt(d_features / 2**14)`` (sparsify's rule), times 4.
    lr_warmup_steps
        Linear warm-up steps.
    lr_decay
        Decay the learning rate linearly to 0 over the last 20% of steps.
    auxk_alpha
        Weight of the AuxK loss (dead TopK features reconstruct the residual).
    dead_after_rows
        A feature not fired in this many rows counts as dead (AuxK target, and the dead fraction).
    resample_every
        Every this many steps (0: never), re-initialise the dead features from rows the
        transcoder reconstructs badly (see :func:`resample_dead_features`); not in the last
        20% of training. Works with any activation, alongside or instead of AuxK.
    positions
        Train on ``all`` harvested rows or only ``genes`` rows.
    buffer_rows
        Rows loaded and shuffled together (memory bound of the data loader).
    encoder_precision
        Precision of the encoder matmul: ``float32``, or ``bfloat16`` (fp32 accumulation;
        the selected values carry bf16 rounding, about 0.4%; gradients and weights stay
        float32). bf16 is several times faster on CPUs with AMX and on GPUs.
    checkpoint_every
        Steps between checkpoints.
    seed
        Seed of the initialisation and the data order.
    save_dtype
        dtype of the saved transcoder weights.
    device
        Torch device to train on.
    """

    d_features: int = 4096
    activation: Activation = "topk"
    k: int = 32
    l1_coeff: float = 1e-3
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.1
    skip: bool = False
    batch_size: int = 1024
    steps: int | None = None
    epochs: int | None = None
    lr: float | None = None
    lr_warmup_steps: int = 50
    lr_decay: bool = True
    auxk_alpha: float = 1 / 32
    dead_after_rows: int = 200_000
    resample_every: int = 0
    positions: Literal["all", "genes"] = "all"
    buffer_rows: int = 262_144
    encoder_precision: Literal["float32", "bfloat16"] = "float32"
    checkpoint_every: int = 200
    seed: int = 0
    save_dtype: Literal["float32", "float16"] = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.activation not in ("topk", "relu", "jumprelu"):
            raise InputError(f"--activation must be topk, relu or jumprelu, not {self.activation!r}")
        if self.d_features < 1:
            raise InputError(f"--features must be at least 1, got {self.d_features}")
        if self.activation == "topk" and not 0 < self.k <= self.d_features:
            raise InputError(f"--k must be in 1..{self.d_features} (the number of features), got {self.k}")
        if self.steps is not None and self.epochs is not None:
            raise InputError("give --steps or --epochs, not both")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"--steps must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}")
        if self.resample_every < 0:
            raise InputError(f"--resample-every must be 0 (off) or a number of steps, got {self.resample_every}")
        if self.batch_size < 1 or self.buffer_rows < 1 or self.checkpoint_every < 1:
            raise InputError("batch size, buffer rows and checkpoint interval must be at least 1")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if self.positions not in ("all", "genes"):
            raise InputError(f"positions must be all or genes, not {self.positions!r}")
        if self.encoder_precision not in ("float32", "bfloat16"):
            raise InputError(f"encoder precision must be float32 or bfloat16, not {self.encoder_precision!r}")
        if self.save_dtype not in ("float32", "float16"):
            raise InputError(f"save dtype must be float32 or float16, not {self.save_dtype!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 8e-4 / math.sqrt(self.d_features / 2**14)

    def identity(self) -> dict[str, Any]:
        """The fields a checkpoint must agree on to be resumed."""
        d = asdict(self)
        for k in _RESUMABLE_FIELDS + ("device",):
            d.pop(k, None)
        if not d["resample_every"]:  # checkpoints from before the option existed still resume
            d.pop("resample_every")
        return d


# -- data ------------------------------------------------------------------------------
class ActivationStore:
    """Read-only view of a finished harvest directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.manifest = read_manifest(self.dir)
        check_manifest(self.manifest, self.dir)
        self.shards: list[dict[str, Any]] = list(self.manifest["shards"])
        self.layers: list[int] = list(self.manifest["layers"])

    def check_layer(self, layer: int) -> None:
        if layer not in self.layers:
            raise InputError(f"layer {layer} was not harvested in {self.dir} (layers {self.layers}); harvest it or pick from those")

    def rows(self, shard: int, positions: str) -> int:
        s = self.shards[shard]
        return int(s["gene_rows"] if positions == "genes" else s["rows"])

    def load(self, shards: list[int], layer: int, positions: str) -> tuple[torch.Tensor, torch.Tensor]:
        from safetensors import safe_open

        xs, ys = [], []
        for i in shards:
            path = self.dir / self.shards[i]["file"]
            try:
                with safe_open(str(path), framework="pt") as f:
                    x = f.get_tensor(f"layer_{layer}.in")
                    y = f.get_tensor(f"layer_{layer}.out")
                    if positions == "genes":
                        keep = f.get_tensor("segment") == SEG_GENE
                        x, y = x[keep], y[keep]
            except (OSError, Exception) as exc:  # noqa: BLE001 - a damaged shard is bad input
                raise InputError(f"cannot read {path}: {' '.join(str(exc).split())[:120]}; rerun 'circuitdb harvest' into a new directory") from None
            xs.append(x.float())
            ys.append(y.float())
        return torch.cat(xs), torch.cat(ys)

    def stats(self, layer: int) -> dict[str, torch.Tensor]:
        """Means and mean squared norms of the layer's MLP input/output over all rows."""
        from safetensors import safe_open

        acc: dict[str, torch.Tensor] = {}
        n = 0
        for s in self.shards:
            with safe_open(str(self.dir / s["file"]), framework="pt") as f:
                for key in ("in_sum", "out_sum", "in_sq", "out_sq"):
                    t = f.get_tensor(f"stats.layer_{layer}.{key}")
                    acc[key] = acc[key] + t if key in acc else t
            n += int(s["rows"])
        return {
            "in_mean": (acc["in_sum"] / n).float(),
            "out_mean": (acc["out_sum"] / n).float(),
            "in_msq": (acc["in_sq"] / n).float(),
            "out_msq": (acc["out_sq"] / n).float(),
        }


def plan_epoch(store: ActivationStore, cfg: TrainConfig, layer: int, epoch: int) -> list[tuple[list[int], int]]:
    """Groups of shards (loaded and shuffled together) and their number of batches in ``epoch``."""
    rng = np.random.default_rng([cfg.seed, layer, epoch])
    order = [int(i) for i in rng.permutation(len(store.shards))]
    groups: list[tuple[list[int], int]] = []
    cur: list[int] = []
    rows = 0
    for i in order:
        r = store.rows(i, cfg.positions)
        if r == 0:
            continue
        cur.append(i)
        rows += r
        if rows >= cfg.buffer_rows:
            groups.append((cur, max(1, rows // cfg.batch_size)))
            cur, rows = [], 0
    if cur:
        groups.append((cur, max(1, rows // cfg.batch_size)))
    return groups


def total_steps(store: ActivationStore, cfg: TrainConfig, layer: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    epochs = cfg.epochs if cfg.epochs is not None else 10
    return sum(n for e in range(epochs) for _, n in plan_epoch(store, cfg, layer, e))


def iter_batches(store: ActivationStore, cfg: TrainConfig, layer: int, start_step: int, scales: tuple[float, float]):  # type: ignore[no-untyped-def]
    """Yield ``(step, x, y)`` from ``start_step`` on, forever (normalised, deterministic order)."""
    step = 0
    epoch = 0
    s_in, s_out = scales
    while True:
        for shards, n_b in plan_epoch(store, cfg, layer, epoch):
            if step + n_b <= start_step:
                step += n_b
                continue
            x, y = store.load(shards, layer, cfg.positions)
            g = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, layer, epoch, shards[0]]).integers(2**62)))
            perm = torch.randperm(x.shape[0], generator=g)
            for chunk in torch.tensor_split(perm, n_b):
                if step >= start_step:
                    yield step, x[chunk] * s_in, y[chunk] * s_out
                step += 1
        epoch += 1


# -- the TopK step: exact top-k selection and an analytic, sparse backward ----------------
#: Bound on the (rows x features) pre-activation block held at once (elements).
_PRE_BLOCK = 1 << 21


def _group_size(n_features: int, k: int) -> int:
    """Group width for :func:`_topk`'s two-stage selection, or 0 to use one plain ``topk``."""
    for s in (8, 6, 4):
        if n_features % s == 0 and n_features // s >= k and 4 * k * s <= n_features:
            return s
    return 0


def _topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact row-wise top-``k`` values and indices of ``pre`` (unsorted), faster than one ``topk``.

    Columns are split into groups of ``s``; the top-``k`` elements of a row always lie in
    the ``k`` groups with the largest maxima (an element outside them is beaten by those
    ``k`` maxima), so one top-``k`` over the group maxima and one over the ``k * s``
    elements of the chosen groups select the same values as a top-``k`` over the whole row
    (indices may differ only between exactly tied values).
    """
    n, f = pre.shape
    s = _group_size(f, k)
    if not s:
        return pre.topk(k, dim=-1, sorted=False)
    g = f // s  # group j holds the columns j, j + g, j + 2g, ... (a strided max vectorises well)
    groups = pre.view(n, s, g).amax(1).topk(k, dim=-1, sorted=False).indices
    cols = (groups.unsqueeze(-1) + g * torch.arange(s, device=pre.device)).view(n, k * s)
    vals, j = pre.gather(1, cols).topk(k, dim=-1, sorted=False)
    return vals, cols.gather(1, j)


def _select(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, k: int, dead_idx: torch.Tensor | None, k_aux: int,
            select_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """TopK (and AuxK over the dead features ``dead_idx``) selection of pre-activations ``x W^T + b``.

    Returns ``(vals, idx, aux_vals, aux_idx)``: the selected pre-activations (before the
    ReLU; float32) and their feature indices. The (rows, features) pre-activations are
    computed a block of rows at a time and never kept.
    """
    n, n_feat = x.shape[0], w.shape[0]
    exact = select_dtype == w.dtype
    w_sel = w if exact else w.to(select_dtype)
    b_sel = b if exact else b.to(select_dtype)
    rows = max(64, _PRE_BLOCK // n_feat)
    out_v, out_i, aux_v, aux_i = [], [], [], []
    for r0 in range(0, n, rows):
        xc = x[r0 : r0 + rows]
        pre = F.linear(xc if exact else xc.to(select_dtype), w_sel, b_sel)
        v, i = _topk(pre, k)
        out_v.append(v)
        out_i.append(i)
        if k_aux:
            assert dead_idx is not None
            pd = pre.index_select(1, dead_idx)
            if k_aux < dead_idx.numel():
                va, ja = pd.topk(k_aux, dim=-1, sorted=False)
                aux_v.append(va)
                aux_i.append(dead_idx[ja])
            else:  # every dead feature is selected
                aux_v.append(pd)
                aux_i.append(dead_idx.expand(pd.shape[0], -1))
    cat = (lambda t: t[0] if len(t) == 1 else torch.cat(t))  # noqa: E731
    vals, idx = cat(out_v).to(x.dtype), cat(out_i)
    if k_aux:
        return vals, idx, cat(aux_v).to(x.dtype), cat(aux_i)
    return vals, idx, vals.new_empty(n, 0), idx.new_empty(n, 0)


def _decode(idx: torch.Tensor, w_dec: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse decode ``sum_j a[b, j] W_dec[idx[b, j]]`` as a one-node autograd graph in ``a`` only.

    ``torch.autograd.grad(out, a_req, g)`` then runs embedding_bag's own per-sample-weight
    backward, the dot products ``W_dec[idx[b, j]] . g[b]``, without materialising the
    ``(B, k, d)`` gathered decoder rows.
    """
    a_req = a.detach().requires_grad_(True)
    with torch.enable_grad():
        return F.embedding_bag(idx, w_dec.detach(), per_sample_weights=a_req, mode="sum"), a_req


def _topk_loss_and_grads(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                         dead: torch.Tensor) -> tuple[float, dict[str, float], torch.Tensor, dict[str, torch.Tensor]]:
    """Loss, metrics, the (F,) 'fired in this batch' mask and the gradients of one TopK step.

    The loss is ``FVU + auxk_alpha * scale * ||e_hat - e||^2 / var(y)`` (sparsify's AuxK:
    the top ``k_aux`` dead features reconstruct the detached residual ``e``). The gradients
    are written out by hand; the only autograd node is the decoder's (see :func:`_decode`).
    With ``g = dL/d out`` and ``a = relu(pre)`` of the selected features,
    ``dL/da[b, j] = W_dec[idx[b, j]] . g[b]``, and the weight gradients of encoder and
    decoder are sums over the ``B * (k + k_aux)`` selected entries only, grouped by feature
    with one sort that both share. No (rows, features) tensor outlives the selection.
    """
    W_enc, b_enc, W_dec, b_dec = p["W_enc"].detach(), p["b_enc"].detach(), p["W_dec"].detach(), p["b_dec"].detach()
    n, n_feat = x.shape[0], cfg.d_features
    total_var = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
    dead_idx = dead.nonzero().squeeze(1)
    n_dead = dead_idx.numel()
    k_aux = min(x.shape[1] // 2, n_dead) if cfg.auxk_alpha > 0 else 0
    sel = torch.bfloat16 if cfg.encoder_precision == "bfloat16" else torch.float32
    vals, idx, aux_vals, aux_idx = _select(x, W_enc, b_enc, cfg.k, dead_idx if k_aux else None, k_aux, sel)
    a, a_aux = torch.relu(vals), torch.relu(aux_vals)
    dec, a_req = _decode(idx, W_dec, a)
    out = dec.detach() + b_dec
    if "W_skip" in p:
        out += x @ p["W_skip"].detach().T
    e = y - out
    fvu = e.pow(2).sum() / total_var
    loss = fvu
    g_out = e * (-2.0 / total_var)  # dL/d out
    # dL/da of each selected entry, W_dec[idx[b, j]] . g_out[b]
    (g_a,) = torch.autograd.grad(dec, a_req, g_out)
    dec_vecs = g_out
    if k_aux:
        c = cfg.auxk_alpha * min(n_dead / (x.shape[1] // 2), 1.0)
        e_hat, a_aux_req = _decode(aux_idx, W_dec, a_aux)
        r = e_hat.detach() - e
        loss = loss + c * r.pow(2).sum() / total_var
        g_hat = r * (2.0 * c / total_var)  # dL/d e_hat
        (g_a_aux,) = torch.autograd.grad(e_hat, a_aux_req, g_hat)
        g_a = torch.cat([g_a, g_a_aux], dim=1)
        dec_vecs = torch.cat([g_out, g_hat])
        idx_all = torch.cat([idx, aux_idx], dim=1)
        a_all = torch.cat([a, a_aux], dim=1)
        vec_rows = torch.cat([torch.arange(n, device=x.device).unsqueeze(1).expand(n, cfg.k),
                              torch.arange(n, 2 * n, device=x.device).unsqueeze(1).expand(n, k_aux)], dim=1)
    else:
        idx_all, a_all = idx, a
        vec_rows = torch.arange(n, device=x.device).unsqueeze(1).expand(n, cfg.k)
    g_pre = g_a * (a_all > 0)
    flat = idx_all.reshape(-1)
    order = torch.argsort(flat, stable=True)
    offsets = torch.zeros(n_feat, dtype=torch.long, device=x.device)
    offsets[1:] = torch.bincount(flat, minlength=n_feat).cumsum(0)[:-1]
    x_rows = torch.arange(n, device=x.device).repeat_interleave(idx_all.shape[1])[order]
    grads = {
        "W_enc": F.embedding_bag(x_rows, x, offsets, mode="sum", per_sample_weights=g_pre.reshape(-1)[order]),
        "b_enc": torch.zeros(n_feat, dtype=x.dtype, device=x.device).index_add_(0, flat, g_pre.reshape(-1)),
        "W_dec": F.embedding_bag(vec_rows.reshape(-1)[order], dec_vecs, offsets, mode="sum", per_sample_weights=a_all.reshape(-1)[order]),
        "b_dec": g_out.sum(0),
    }
    if "W_skip" in p:
        grads["W_skip"] = g_out.T @ x
    on = a > 0
    fired = torch.zeros(n_feat, dtype=torch.bool, device=x.device)
    fired[idx[on]] = True
    return float(loss), {"fvu": float(fvu), "l0": float(on.sum()) / n}, fired, grads


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, log_threshold, bandwidth: float):  # type: ignore[no-untyped-def, override]
        th = log_threshold.exp()
        ctx.save_for_backward(pre, th)
        ctx.bandwidth = bandwidth
        return pre * (pre > th)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        pre, th = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel = ((pre - th).abs() < eps / 2).to(pre.dtype) / eps
        g_pre = g * (pre > th)
        g_th = (-(th / 1.0) * kernel * g).sum(0)  # d/d(log th) = th * d/d th; d out/d th = -th * K / eps
        return g_pre, g_th * th, None


class _StepL0(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, log_threshold, bandwidth: float):  # type: ignore[no-untyped-def, override]
        th = log_threshold.exp()
        ctx.save_for_backward(pre, th)
        ctx.bandwidth = bandwidth
        return (pre > th).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        pre, th = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel = ((pre - th).abs() < eps / 2).to(pre.dtype) / eps
        return None, (-kernel * g).sum(0) * th, None


# -- one layer ------------------------------------------------------------------------
@dataclass
class LayerResult:
    layer: int
    steps: int
    resumed_from: int
    metrics: dict[str, float]
    directory: Path
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _unit_decoder(cfg: TrainConfig) -> bool:
    """ReLU/JumpReLU keep unit-norm decoder rows (so the L1/L0 penalty can't be dodged by scale);
    TopK decoders are free, start at zero and are learnt from the residual (as sparsify's transcoders)."""
    return cfg.activation != "topk"


def _init_params(cfg: TrainConfig, d_in: int, d_out: int, layer: int, out_mean: torch.Tensor, in_mean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + layer)
    w_enc = (torch.rand(cfg.d_features, d_in, generator=g) * 2 - 1) / math.sqrt(d_in)
    if _unit_decoder(cfg):
        w_dec = torch.randn(cfg.d_features, d_out, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
    else:
        w_dec = torch.zeros(cfg.d_features, d_out)
    # centre the pre-activations at initialisation
    b_enc = -(in_mean.float() @ w_enc.T) if in_mean is not None else torch.zeros(cfg.d_features)
    params = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": out_mean.clone().float()}
    if cfg.skip:
        params["W_skip"] = torch.zeros(d_out, d_in)
    if cfg.activation == "jumprelu":
        params["log_threshold"] = torch.full((cfg.d_features,), math.log(cfg.jumprelu_init_threshold))
    return {k: v.to(cfg.device).requires_grad_(True) for k, v in params.items()}


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    lr = cfg.learning_rate
    if cfg.lr_warmup_steps and step < cfg.lr_warmup_steps:
        lr *= (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_decay:
        start = int(total * 0.8)
        if step >= start:
            lr *= max(0.0, (total - step) / max(1, total - start))
    return lr


def _dense_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """ReLU/JumpReLU: the loss (autograd graph), metrics and the (F,) 'fired in this batch' mask."""
    total_var = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
    pre = F.linear(x, p["W_enc"], p["b_enc"])
    if cfg.activation == "relu":
        acts = torch.relu(pre)
        sparsity = acts.sum(-1).mean()
    else:
        acts = _JumpReLU.apply(pre, p["log_threshold"], cfg.jumprelu_bandwidth)
        sparsity = _StepL0.apply(pre, p["log_threshold"], cfg.jumprelu_bandwidth).sum(-1).mean()
    out = acts @ p["W_dec"] + p["b_dec"]
    if "W_skip" in p:
        out = out + x @ p["W_skip"].T
    fvu = (y - out).pow(2).sum() / total_var
    loss = fvu + cfg.l1_coeff * sparsity
    active = acts > 0
    return loss, {"fvu": float(fvu.detach()), "l0": float(active.sum()) / x.shape[0]}, active.any(0)


@torch.no_grad()
def _project_decoder_grad(p: dict[str, torch.Tensor]) -> None:
    w, g = p["W_dec"], p["W_dec"].grad
    if g is not None:
        g -= (g * w).sum(1, keepdim=True) * w


@torch.no_grad()
def _normalise_decoder(p: dict[str, torch.Tensor]) -> None:
    w = p["W_dec"]
    w /= w.norm(dim=1, keepdim=True).clamp_min(1e-8)


def optimizer_step(p: dict[str, torch.Tensor], opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, since_fired: torch.Tensor) -> dict[str, float]:
    """One training step on normalised rows ``(x, y)``; updates ``since_fired`` in place.

    Returns the metrics (``loss``, ``fvu``, ``l0``, ``dead``). A non-finite loss is
    returned *before* any parameter changes, so the caller can stop cleanly.
    """
    dead = since_fired > cfg.dead_after_rows
    if cfg.activation == "topk":
        loss_value, metrics, fired, grads = _topk_loss_and_grads(p, x, y, cfg, dead)
    else:
        loss, metrics, fired = _dense_loss(p, x, y, cfg)
        loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        return {**metrics, "loss": loss_value, "dead": float(dead.float().mean())}
    if cfg.activation == "topk":
        for name, g in grads.items():
            p[name].grad = g
    else:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if _unit_decoder(cfg):
            _project_decoder_grad(p)
    opt.step()
    if _unit_decoder(cfg):
        _normalise_decoder(p)
    since_fired += x.shape[0]
    since_fired[fired] = 0
    return {**metrics, "loss": loss_value, "dead": float((since_fired > cfg.dead_after_rows).float().mean())}


@torch.no_grad()
def _reconstruct(p: dict[str, torch.Tensor], x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The transcoder's output for normalised rows ``x`` (no gradients)."""
    if cfg.activation == "topk":
        sel = torch.bfloat16 if cfg.encoder_precision == "bfloat16" else torch.float32
        vals, idx, _, _ = _select(x, p["W_enc"].detach(), p["b_enc"].detach(), cfg.k, None, 0, sel)
        out = F.embedding_bag(idx, p["W_dec"].detach(), per_sample_weights=torch.relu(vals), mode="sum")
    else:
        pre = F.linear(x, p["W_enc"], p["b_enc"])
        acts = torch.relu(pre) if cfg.activation == "relu" else pre * (pre > p["log_threshold"].exp())
        out = acts @ p["W_dec"]
    out = out + p["b_dec"]
    if "W_skip" in p:
        out = out + x @ p["W_skip"].T
    return out


@torch.no_grad()
def resample_dead_features(p: dict[str, torch.Tensor], opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                           since_fired: torch.Tensor, generator: torch.Generator) -> int:
    """Re-initialise the dead features from badly reconstructed rows of the batch ``(x, y)``.

    As in Anthropic's "Towards Monosemanticity" resampling, adapted to transcoders: each dead
    feature draws a row with probability proportional to its squared reconstruction error;
    its decoder row points along that row's residual ``y - out`` (unit norm, or the mean
    norm of the live decoder rows for TopK's free decoders), its encoder row along the
    row's centred input, scaled to the mean live encoder norm (times 0.2 for ReLU/JumpReLU),
    and its bias centres the pre-activation at the batch mean. The features' Adam moments
    and 'rows since fired' counters are reset.

    Returns
    -------
    int
        The number of features resampled.
    """
    dead_mask = since_fired > cfg.dead_after_rows
    dead = dead_mask.nonzero().squeeze(1)
    n_dead = dead.numel()
    if n_dead == 0:
        return 0
    e = y - _reconstruct(p, x, cfg)
    err = e.pow(2).sum(1)
    weights = err if float(err.sum()) > 0 else torch.ones_like(err)
    rows = torch.multinomial(weights, n_dead, replacement=True, generator=generator)
    alive = ~dead_mask
    w_enc, w_dec = p["W_enc"], p["W_dec"]
    enc_norm = w_enc[alive].norm(dim=1).mean() if bool(alive.any()) else w_enc.norm(dim=1).mean()
    x_mean = x.mean(0)
    x_dir = F.normalize(x[rows] - x_mean, dim=1)
    w_enc[dead] = x_dir * enc_norm * (1.0 if cfg.activation == "topk" else 0.2)
    p["b_enc"][dead] = -(w_enc[dead] @ x_mean)
    dec_norm = 1.0
    if not _unit_decoder(cfg):
        live = w_dec[alive].norm(dim=1)
        dec_norm = float(live.mean()) if live.numel() and float(live.mean()) > 0 else 1.0
    w_dec[dead] = F.normalize(e[rows], dim=1) * dec_norm
    if "log_threshold" in p:
        p["log_threshold"][dead] = math.log(cfg.jumprelu_init_threshold)
    for name in ("W_enc", "b_enc", "W_dec", "log_threshold"):
        state = opt.state.get(p[name]) if name in p else None
        for key in ("exp_avg", "exp_avg_sq"):
            if state and key in state:
                state[key][dead] = 0
    since_fired[dead] = 0
    return n_dead


def _resample_generator(cfg: TrainConfig, layer: int, step: int) -> torch.Generator:
    """The generator of the resampling at ``step``: a pure function of (seed, layer, step), so resuming is exact."""
    seed = int(np.random.default_rng([cfg.seed, layer, step, 7]).integers(2**62))
    return torch.Generator(device=cfg.device).manual_seed(seed)


def init_training(cfg: TrainConfig, d_in: int, d_out: int, layer: int, out_mean: torch.Tensor, in_mean: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer, torch.Tensor]:
    """Fresh parameters (normalised space), their Adam optimiser, and the dead-feature counters."""
    p = _init_params(cfg, d_in, d_out, layer, out_mean, in_mean)
    opt = torch.optim.Adam(list(p.values()), lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True)
    return p, opt, torch.zeros(cfg.d_features, dtype=torch.long, device=cfg.device)


def export_transcoder(
    p: dict[str, torch.Tensor], cfg: TrainConfig, scales: tuple[float, float], *, d_in: int, d_out: int, layer: int, meta: dict[str, Any]
) -> Transcoder:
    """Fold the normalisation into the weights: a transcoder from raw MLP input to raw MLP output."""
    s_in, s_out = scales
    tc_cfg = TranscoderConfig(
        d_in=d_in, d_features=cfg.d_features, d_out=d_out, activation=cfg.activation,
        k=cfg.k if cfg.activation == "topk" else None,
        l1_coeff=cfg.l1_coeff if cfg.activation != "topk" else None,
        skip=cfg.skip, model=meta.get("model_hash", ""), layer=layer,
        hook_in=meta.get("hook_in", ""), hook_out=meta.get("hook_out", ""), data_hash=meta.get("acts_hash", ""),
        extra={"scale_in": s_in, "scale_out": s_out, "model_name": meta.get("model", ""), "train": asdict(cfg)},
    )
    tc = Transcoder(tc_cfg)
    with torch.no_grad():
        tc.W_enc.copy_((p["W_enc"].detach().cpu() * s_in).T)
        tc.b_enc.copy_(p["b_enc"].detach().cpu())
        tc.W_dec.copy_(p["W_dec"].detach().cpu() / s_out)
        tc.b_dec.copy_(p["b_dec"].detach().cpu() / s_out)
        if tc.W_skip is not None:
            tc.W_skip.copy_((p["W_skip"].detach().cpu() * (s_in / s_out)).T)
        if tc.threshold is not None:
            tc.threshold.copy_(p["log_threshold"].detach().cpu().exp())
    return tc


def _save_checkpoint(path: Path, p: dict[str, torch.Tensor], opt: torch.optim.Optimizer, step: int, since_fired: torch.Tensor, cfg: TrainConfig, extra: dict[str, Any]) -> None:
    torch_save_atomic(path, {
        "step": step,
        "params": {k: v.detach().cpu().clone() for k, v in p.items()},
        "optimizer": opt.state_dict(),
        "since_fired": since_fired.cpu().clone(),
        "identity": cfg.identity(),
        "rng": torch.get_rng_state(),
        **extra,
    })


def train_layer(
    store: ActivationStore,
    layer: int,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    callback: Callable[[int, int, dict[str, float]], None] | None = None,
    max_steps_this_run: int | None = None,
) -> LayerResult:
    """Train (or resume, or skip when finished) the transcoder of ``layer``.

    Parameters
    ----------
    store
        The harvested activations.
    layer
        Model layer index (must be harvested).
    cfg
        Training configuration.
    out
        Root output directory; this layer writes ``out/layer_{layer}/``.
    callback
        ``callback(step, total, metrics)`` after every step; it may raise
        :class:`TrainingInterrupted` to stop (the last checkpoint is kept).
    max_steps_this_run
        Stop with :class:`TrainingInterrupted` after this many steps, right after a checkpoint
        (for tests and time-sliced runs).

    Returns
    -------
    LayerResult
        Steps done, the step resumed from, and the last metrics.

    Raises
    ------
    TrainingDiverged
        The loss became NaN/inf; ``train_state.pt`` still holds the last good checkpoint.
    """
    store.check_layer(layer)
    ldir = Path(out) / f"layer_{layer}"
    ldir.mkdir(parents=True, exist_ok=True)
    state_path = ldir / STATE_NAME
    m = store.manifest
    d_in, d_out = int(m["d_in"]), int(m["d_out"])
    stats = store.stats(layer)
    scales = (math.sqrt(d_in / max(float(stats["in_msq"]), 1e-12)), math.sqrt(d_out / max(float(stats["out_msq"]), 1e-12)))
    total = total_steps(store, cfg, layer)
    hook_names = dict(zip(m["layers"], m["hook_in"]))
    meta = {"model_hash": m["model_hash"], "model": m.get("model", ""), "acts_hash": m["acts_hash"], "hook_in": hook_names.get(layer, ""), "hook_out": hook_names.get(layer, "")}

    p, opt, since_fired = init_training(cfg, d_in, d_out, layer, stats["out_mean"] * scales[1], stats["in_mean"] * scales[0])
    step0 = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location=cfg.device, weights_only=False)
        if state.get("identity") != cfg.identity() or state.get("acts_hash") != m["acts_hash"]:
            raise InputError(f"{ldir} holds a run with other settings or other activations; pass a new --out or delete {ldir}")
        if state.get("done") and state.get("total") == total and (ldir / "transcoder.safetensors").is_file():
            return LayerResult(layer, total, total, dict(state.get("metrics", {})), ldir, skipped=True)
        with torch.no_grad():
            for k, v in state["params"].items():
                p[k].copy_(v)
        opt.load_state_dict(state["optimizer"])
        since_fired = state["since_fired"].to(cfg.device)
        torch.set_rng_state(state["rng"])
        step0 = int(state["step"])
    resumed_from = step0
    metrics: dict[str, float] = {}
    extra = {"acts_hash": m["acts_hash"], "total": total, "scales": scales}
    last_good = step0
    run_steps = 0
    for step, x, y in iter_batches(store, cfg, layer, step0, scales):
        if step >= total:
            break
        x, y = x.to(cfg.device), y.to(cfg.device)
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step, total)
        metrics = optimizer_step(p, opt, x, y, cfg, since_fired)
        if not math.isfinite(metrics["loss"]):
            raise TrainingDiverged(
                f"layer {layer}: the loss became {metrics['loss']} at step {step}; stopped, the last good checkpoint "
                f"(step {last_good}) is kept in {ldir}; lower --lr and rerun with a new --out"
            )
        run_steps += 1
        done_steps = step + 1
        if cfg.resample_every and done_steps % cfg.resample_every == 0 and done_steps < int(total * 0.8):
            metrics["resampled"] = float(resample_dead_features(p, opt, x, y, cfg, since_fired, _resample_generator(cfg, layer, done_steps)))
        if done_steps % cfg.checkpoint_every == 0 or done_steps == total:
            _save_checkpoint(state_path, p, opt, done_steps, since_fired, cfg, {**extra, "metrics": metrics, "done": False})
            last_good = done_steps
        if callback is not None:
            callback(done_steps, total, metrics)
        if max_steps_this_run is not None and run_steps >= max_steps_this_run:
            if last_good != done_steps:
                _save_checkpoint(state_path, p, opt, done_steps, since_fired, cfg, {**extra, "metrics": metrics, "done": False})
            raise TrainingInterrupted(f"layer {layer}: stopped after step {done_steps} of {total}; rerun to resume")

    tc = export_transcoder(p, cfg, scales, d_in=d_in, d_out=d_out, layer=layer, meta=meta)
    if cfg.save_dtype == "float16":
        tc = tc.half()
    tc.save(ldir)
    save_tensors_atomic(ldir / STATS_NAME, {"mlp_in_mean": stats["in_mean"], "mlp_out_mean": stats["out_mean"]})
    _save_checkpoint(state_path, p, opt, total, since_fired, cfg, {**extra, "metrics": metrics, "done": True})
    return LayerResult(layer, total, resumed_from, metrics, ldir)


def write_set_manifest(out: str | os.PathLike[str], store: ActivationStore, layers: list[int], cfg: TrainConfig) -> dict[str, Any]:
    """Write ``transcoders.json``: model hash, layers, activations hash and the set's hash."""
    out = Path(out)
    entries = []
    for i in layers:
        ldir = out / f"layer_{i}"
        entries.append({"layer": i, "dir": ldir.name, "weights_sha256": sha256_file(ldir / "transcoder.safetensors"), "cfg_sha256": sha256_file(ldir / "cfg.json")})
    m = store.manifest
    manifest = {
        "model": m.get("model", ""),
        "model_hash": m["model_hash"],
        "n_model_layers": m.get("n_model_layers"),
        "acts_hash": m["acts_hash"],
        "data_hash": m.get("data_hash"),
        "sentence_options": m.get("sentence_options"),
        "d_in": m["d_in"],
        "d_out": m["d_out"],
        "layers": layers,
        "activation": cfg.activation,
        "d_features": cfg.d_features,
        "k": cfg.k if cfg.activation == "topk" else None,
        "transcoders": entries,
        "transcoder_set_hash": sha256_json([(e["layer"], e["weights_sha256"], e["cfg_sha256"]) for e in entries]),
    }
    write_json_atomic(out / SET_MANIFEST, manifest)
    return manifest


def train_transcoders(
    acts: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: TrainConfig,
    *,
    layers: str | list[int] | None = "all",
    callback: Callable[[int, int, int, dict[str, float]], None] | None = None,
    max_steps_this_run: int | None = None,
) -> tuple[list[LayerResult], dict[str, Any]]:
    """Train every requested layer in turn, then write ``transcoders.json``.

    ``callback(layer, step, total, metrics)`` is forwarded from :func:`train_layer`.
    """
    store = ActivationStore(acts)
    chosen = resolve_store_layers(store, layers)
    results = []
    for i in chosen:
        cb = (lambda s, t, mm, _i=i: callback(_i, s, t, mm)) if callback is not None else None
        results.append(train_layer(store, i, cfg, out, callback=cb, max_steps_this_run=max_steps_this_run))
    # the set manifest lists every finished layer in OUT (a later run may add layers)
    finished = sorted(int(d.name.split("_")[1]) for d in Path(out).glob("layer_*") if (d / "transcoder.safetensors").is_file())
    return results, write_set_manifest(out, store, finished, cfg)


def resolve_store_layers(store: ActivationStore, spec: str | list[int] | None) -> list[int]:
    n = int(store.manifest.get("n_model_layers") or (max(store.layers) + 1))
    if spec is None or spec == "all":
        return list(store.layers)
    if isinstance(spec, str):
        try:
            out: list[int] = []
            for part in spec.split(","):
                a, _, b = part.strip().partition("-")
                out.extend(range(int(a), int(b) + 1) if b else [int(a)])
        except ValueError:
            raise InputError(f"bad layer list {spec!r}; use 'all', '0,2,5' or '1-3'") from None
        spec = out
    for i in spec:
        if not 0 <= i < n:
            raise InputError(f"layer {i} is out of range; the model has layers 0..{n - 1}")
        store.check_layer(i)
    return sorted(dict.fromkeys(spec))


def export_set(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, dtype: Literal["float32", "float16"] = "float16") -> dict[str, Any]:
    """Copy a trained set to ``dst`` without training state, weights cast to ``dtype``.

    Used to ship small transcoder sets (e.g. the demo's); ``transcoders.json`` is rewritten
    with the new files' hashes (and hence a new set hash).
    """
    import json
    import shutil

    src, dst = Path(src), Path(dst)
    mpath = src / SET_MANIFEST
    if not mpath.is_file():
        raise InputError(f"{src} is not a transcoder directory (no {SET_MANIFEST}); train one with 'circuitdb train-transcoders'")
    manifest = json.loads(mpath.read_text())
    dst.mkdir(parents=True, exist_ok=True)
    entries = []
    for e in manifest["transcoders"]:
        ldir = dst / e["dir"]
        tc = Transcoder.load(src / e["dir"])
        (tc.half() if dtype == "float16" else tc.float()).save(ldir)
        shutil.copyfile(src / e["dir"] / STATS_NAME, ldir / STATS_NAME)
        entries.append({**e, "weights_sha256": sha256_file(ldir / "transcoder.safetensors"), "cfg_sha256": sha256_file(ldir / "cfg.json")})
    manifest["transcoders"] = entries
    manifest["weights_dtype"] = dtype
    manifest["transcoder_set_hash"] = sha256_json([(e["layer"], e["weights_sha256"], e["cfg_sha256"]) for e in entries])
    write_json_atomic(dst / SET_MANIFEST, manifest)
    return manifest
