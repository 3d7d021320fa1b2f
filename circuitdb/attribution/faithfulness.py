"""Faithfulness: does ablating a circuit's top features hurt its cell type more than random features?

For one cell type and a set of its cells, :func:`evaluate_faithfulness` asks a *runner*
(a callable that runs the spliced model on those cells with given features zeroed and
returns each cell's target logit and whether the prediction was right) for:

* the baseline (nothing ablated);
* the circuit's top-``n`` features (by mean influence), for each ``n`` in ``sizes``;
* ``n_random`` random sets of the same size, drawn uniformly without replacement from a
  pool of *active* features (by default every (layer, index) active in the cell type's
  attributed cells; the circuit's own features may be drawn too).

Reported per ``n``: mean drop of the target logit (baseline - ablated) and of accuracy,
for the circuit and the random sets (mean and std), their ratio
(``circuit_logit_drop / random_logit_drop_mean``; ``None`` when the random mean is
not positive), the fraction of random sets that hurt at least as much, and
``beats_random``: the circuit lowers the target logit, and more than random sets do on average.

The model side is :func:`ablate_features`: forward hooks on each layer's MLP module (the
module each transcoder replaces) subtract the chosen features' decoder contributions,
``out - acts[..., F] @ W_dec[F]``, with the activations recomputed from the MLP's own
input in the running pass, at every position. That is, in the replacement model
``MLP = transcoder + error``, the features are zeroed while the error term
``MLP(x) - transcoder(x)`` is kept (recomputed), and downstream features respond.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from circuitdb.attribution.circuit import Circuit

FeatureKey = tuple[int, int]  # (layer, index)


class Scores(NamedTuple):
    """What a runner returns for its cells: ``target_logit`` (n,) float, ``correct`` (n,) bool."""

    target_logit: torch.Tensor
    correct: torch.Tensor


#: Runs the model on a fixed set of cells with the given features zeroed (``None``: nothing).
Runner = Callable[[Mapping[int, Sequence[int]] | None], Scores]


@dataclass
class FaithfulnessRow:
    """One (cell type, n) line of ``faithfulness.json``."""

    cell_type: str
    n: int
    n_ablated: int
    n_cells: int
    baseline_logit: float
    baseline_acc: float
    circuit_logit_drop: float
    random_logit_drop_mean: float
    random_logit_drop_std: float
    ratio: float | None
    circuit_acc_drop: float
    random_acc_drop_mean: float
    frac_random_ge: float
    beats_random: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


RankBy = Literal["influence", "effect"]


def top_features(circuit: Circuit, n: int | None = None, by: RankBy = "influence") -> list[FeatureKey]:
    """The circuit's features ranked by mean influence or mean signed effect (ties by layer, index), first ``n``."""
    feats = [x for x in circuit.nodes if x.kind == "feature" and x.layer is not None and x.index is not None]
    feats.sort(key=lambda x: (-(x.influence if by == "influence" else x.effect), int(x.layer), int(x.index)))  # type: ignore[arg-type]
    ranked = [(int(x.layer), int(x.index)) for x in feats]  # type: ignore[arg-type]
    return ranked if n is None else ranked[:n]


def by_layer(features: Sequence[FeatureKey]) -> dict[int, list[int]]:
    """Group (layer, index) pairs as ``{layer: sorted indices}``."""
    out: dict[int, list[int]] = {}
    for layer, index in features:
        out.setdefault(int(layer), []).append(int(index))
    return {k: sorted(set(v)) for k, v in sorted(out.items())}


def random_feature_sets(pool: Sequence[FeatureKey], size: int, n_sets: int, seed: int) -> list[list[FeatureKey]]:
    """``n_sets`` uniform draws of ``size`` distinct features from ``pool`` (sorted first: order-free)."""
    items = sorted(set((int(a), int(b)) for a, b in pool))
    size = min(size, len(items))
    g = torch.Generator().manual_seed(seed)
    return [[items[i] for i in torch.randperm(len(items), generator=g)[:size].tolist()] for _ in range(n_sets)]


def _seed_for(cell_type: str, n: int, seed: int) -> int:
    return (zlib.crc32(cell_type.encode("utf-8")) * 1_000_003 + n * 7919 + seed) % (2**62)


def evaluate_faithfulness(
    runner: Runner,
    ranked: Sequence[FeatureKey],
    pool: Sequence[FeatureKey],
    *,
    cell_type: str,
    sizes: Sequence[int] = (10, 25, 50),
    n_random: int = 20,
    seed: int = 0,
    callback: Callable[[int], None] | None = None,
) -> list[FaithfulnessRow]:
    """Circuit vs random ablations for one cell type.

    Parameters
    ----------
    runner
        Runs the model on this type's evaluation cells with a feature set zeroed.
    ranked
        The circuit's features, most influential first (:func:`top_features`).
    pool
        Active features to draw random sets from.
    cell_type
        Recorded in each row; also seeds the random draws (with ``n`` and ``seed``).
    sizes
        Numbers of top features to ablate; capped at ``len(ranked)`` (see ``n_ablated``).
    n_random
        Random sets per size.
    seed
        Base seed.
    callback
        Called with 1 after each runner call (``1 + len(sizes) * (1 + n_random)`` in all).

    Returns
    -------
    list of FaithfulnessRow
        One per size.
    """
    def run(feats: Mapping[int, Sequence[int]] | None) -> Scores:
        s = runner(feats)
        if callback is not None:
            callback(1)
        return s

    base = run(None)
    b_logit = base.target_logit.to(torch.float64)
    b_acc = float(base.correct.to(torch.float64).mean())
    rows: list[FaithfulnessRow] = []
    for n in sizes:
        k = min(int(n), len(ranked))
        circ = run(by_layer(list(ranked[:k])))
        c_drop = float((b_logit - circ.target_logit.to(torch.float64)).mean())
        c_acc = b_acc - float(circ.correct.to(torch.float64).mean())
        r_drops: list[float] = []
        r_accs: list[float] = []
        for fs in random_feature_sets(pool, k, n_random, _seed_for(cell_type, int(n), seed)):
            r = run(by_layer(fs))
            r_drops.append(float((b_logit - r.target_logit.to(torch.float64)).mean()))
            r_accs.append(b_acc - float(r.correct.to(torch.float64).mean()))
        rd = torch.tensor(r_drops, dtype=torch.float64)
        r_mean = float(rd.mean()) if len(rd) else 0.0
        r_std = float(rd.std(unbiased=False)) if len(rd) else 0.0
        rows.append(FaithfulnessRow(
            cell_type=cell_type, n=int(n), n_ablated=k, n_cells=len(b_logit),
            baseline_logit=float(b_logit.mean()), baseline_acc=b_acc,
            circuit_logit_drop=c_drop, random_logit_drop_mean=r_mean, random_logit_drop_std=r_std,
            ratio=(c_drop / r_mean) if r_mean > 0 else None,
            circuit_acc_drop=c_acc, random_acc_drop_mean=float(sum(r_accs) / len(r_accs)) if r_accs else 0.0,
            frac_random_ge=float((rd >= c_drop).to(torch.float64).mean()) if len(rd) else 0.0,
            beats_random=c_drop > 0 and c_drop > r_mean,
        ))
    return rows


# -- the model side ------------------------------------------------------------------
@contextmanager
def ablate_features(
    mlps: Mapping[int, nn.Module],
    transcoders: Mapping[int, nn.Module],
    features: Mapping[int, Sequence[int]] | None,
) -> Iterator[None]:
    """Zero transcoder features inside every forward pass run within the block.

    Parameters
    ----------
    mlps
        ``{layer: MLP module}`` (e.g. ``adapter_for(model).layer(i).mlp``), the modules
        the transcoders replace; their first positional input is the transcoder input.
    transcoders
        ``{layer: Transcoder}`` with ``encode`` and ``W_dec``.
    features
        ``{layer: feature indices}`` to zero; ``None`` or empty: no hooks.
    """
    handles = []
    try:
        for layer, idx in (features or {}).items():
            if not len(idx):
                continue
            if layer not in transcoders or layer not in mlps:
                raise KeyError(f"no transcoder/MLP for layer {layer}")
            tc = transcoders[layer]
            ids = torch.as_tensor(list(idx), dtype=torch.long)
            w_dec = tc.W_dec.detach()[ids]  # (k, d_out)

            def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, tc: nn.Module = tc,
                     ids: torch.Tensor = ids, w_dec: torch.Tensor = w_dec) -> torch.Tensor:
                x = inputs[0]
                acts = tc.encode(x.to(w_dec.dtype))[..., ids]
                return output - (acts @ w_dec).to(output.dtype)

            handles.append(mlps[layer].register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


def ablation_runner(
    mlps: Mapping[int, nn.Module],
    transcoders: Mapping[int, nn.Module],
    evaluate: Callable[[], Scores],
) -> Runner:
    """A :data:`Runner` that calls ``evaluate()`` (a forward over fixed cells) under :func:`ablate_features`."""
    def runner(features: Mapping[int, Sequence[int]] | None) -> Scores:
        with torch.no_grad(), ablate_features(mlps, transcoders, features):
            return evaluate()

    return runner


def active_feature_pool(summaries_active: Sequence[Sequence[FeatureKey]]) -> list[FeatureKey]:
    """Union of per-cell active features (e.g. ``CellSummary.active_features``), sorted."""
    out: set[FeatureKey] = set()
    for a in summaries_active:
        out.update((int(x), int(y)) for x, y in a)
    return sorted(out)


def answer_scores(
    model: nn.Module,
    tokenizer: object,
    input_ids: Sequence[Sequence[int]],
    target_token: int,
    competitors: Sequence[int],
    *,
    batch_size: int = 32,
) -> Scores:
    """Target logit at each prompt's last token, and whether it beats every competitor token.

    Prompts are right-padded (causal attention: padding never reaches a real token, and
    positions stay ``0..len-1``), so no attention mask is needed.

    Parameters
    ----------
    model
        A Hugging Face causal LM.
    tokenizer
        Its tokenizer (for the pad id).
    input_ids
        One token list per cell: prompt plus the shared answer prefix.
    target_token
        The cell type's first diverging answer token.
    competitors
        The other candidates' tokens at that position (accuracy: target beats all).
    batch_size
        Cells per forward pass.
    """
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = 0 if pad is None else int(pad)
    device = next(model.parameters()).device
    comp = torch.as_tensor(sorted(set(int(c) for c in competitors) - {int(target_token)}), dtype=torch.long)
    logits_out: list[torch.Tensor] = []
    correct_out: list[torch.Tensor] = []
    for b0 in range(0, len(input_ids), batch_size):
        chunk = [list(x) for x in input_ids[b0:b0 + batch_size]]
        lens = torch.tensor([len(x) for x in chunk])
        ids = torch.full((len(chunk), int(lens.max())), pad, dtype=torch.long)
        for i, x in enumerate(chunk):
            ids[i, : len(x)] = torch.tensor(x)
        logits = model(input_ids=ids.to(device)).logits[torch.arange(len(chunk)), (lens - 1).to(device)].float().cpu()
        tl = logits[:, int(target_token)]
        logits_out.append(tl)
        correct_out.append((tl[:, None] > logits[:, comp]).all(-1) if len(comp) else torch.ones(len(chunk), dtype=torch.bool))
    return Scores(torch.cat(logits_out), torch.cat(correct_out))
