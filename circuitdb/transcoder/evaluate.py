"""Do the transcoders replace the MLPs? Faithfulness on the held-out cells.

For the held-out cells (every ``holdout_every``-th) with prompt + answer
``" {cell_type}."``, :func:`evaluate_transcoders` measures

* per layer, on every token: FVU of the MLP output, mean L0, dead fraction
  (features that never fire on the held-out tokens);
* cross-entropy of the answer tokens: original; each layer's MLP replaced by its
  transcoder (one at a time); all layers at once; each MLP zero- and mean-ablated
  (the mean over the training rows, saved beside each transcoder);
* CE loss recovered ``(L_abl - L_spliced) / (L_abl - L_orig)`` (zero ablation is the
  main ``L_abl``; mean ablation is reported too) and KL(original || spliced) on the
  answer positions;
* cell-type accuracy (sum of answer log-probs of every candidate type) of the original
  model and with every transcoder spliced in.

Splicing is a forward hook on the MLP module returning the transcoder's output.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import ArchAdapter, adapter_for
from circuitdb.transcoder.common import CellPrompt, PromptOptions, iter_cell_prompts, model_fingerprint, pad_batch, pad_id_of
from circuitdb.transcoder.hooks import capture_mlp, replace_mlp
from circuitdb.transcoder.model import Transcoder
from circuitdb.transcoder.train import SET_MANIFEST, STATE_NAME, STATS_NAME


@dataclass
class TranscoderSet:
    """A directory of per-layer transcoders (``transcoders.json`` + ``layer_{i}/``)."""

    directory: Path
    manifest: dict[str, Any]
    transcoders: dict[int, Transcoder]
    in_mean: dict[int, torch.Tensor] = field(default_factory=dict)
    out_mean: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.transcoders)

    @property
    def set_hash(self) -> str:
        return str(self.manifest.get("transcoder_set_hash", ""))


def load_transcoders(
    directory: str | os.PathLike[str],
    *,
    model: torch.nn.Module | None = None,
    layers: list[int] | None = None,
    check_model_hash: bool = True,
    dtype: torch.dtype = torch.float32,
) -> TranscoderSet:
    """Load a transcoder set; with ``model``, check that it fits (layers, d_in/d_out, model hash).

    Raises
    ------
    InputError
        Not a transcoder directory, a layer missing/out of range, widths that do not match
        the model, or transcoders trained on another model.
    """
    from safetensors.torch import load_file

    d = Path(directory)
    mpath = d / SET_MANIFEST
    if not mpath.is_file():
        raise InputError(f"{d} is not a transcoder directory (no {SET_MANIFEST}); train one with 'circuitdb train-transcoders'")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError:
        raise InputError(f"{mpath} is corrupt; retrain with 'circuitdb train-transcoders'") from None
    available = [int(e["layer"]) for e in manifest.get("transcoders", [])]
    chosen = available if layers is None else layers
    adapter = adapter_for(model) if model is not None else None
    for i in chosen:
        if adapter is not None and not 0 <= i < adapter.n_layers:
            raise InputError(f"layer {i} is out of range; the model has layers 0..{adapter.n_layers - 1}")
        if i not in available:
            raise InputError(f"{d} has no transcoder for layer {i} (it has {available}); train it or pick from those")
    tcs: dict[int, Transcoder] = {}
    in_mean: dict[int, torch.Tensor] = {}
    out_mean: dict[int, torch.Tensor] = {}
    for i in chosen:
        tc = Transcoder.load(d / f"layer_{i}", dtype=dtype).eval()
        if adapter is not None and (tc.cfg.d_in != adapter.d_model or tc.cfg.d_out != adapter.d_model):
            raise InputError(
                f"the layer-{i} transcoder in {d} maps {tc.cfg.d_in} -> {tc.cfg.d_out} but the model's MLP is "
                f"{adapter.d_model} -> {adapter.d_model}; train transcoders on this model's activations"
            )
        tcs[i] = tc
        sp = d / f"layer_{i}" / STATS_NAME
        if sp.is_file():
            st = load_file(str(sp))
            in_mean[i], out_mean[i] = st["mlp_in_mean"].to(dtype), st["mlp_out_mean"].to(dtype)
    if model is not None and check_model_hash and manifest.get("model_hash"):
        mh = model_fingerprint(model)
        if mh != manifest["model_hash"]:
            raise InputError(
                f"the transcoders in {d} were trained on model {manifest['model_hash']} but --model is {mh}; "
                "harvest and train on this model, or pass the model they were trained on"
            )
    return TranscoderSet(d, manifest, tcs, in_mean, out_mean)


def splice_fn(tc: Transcoder) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return tc(x.to(tc.W_enc.dtype)).out

    return fn


def _answer_targets(batch: list[CellPrompt], seq_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch index, position predicting the token, target token) of every answer token."""
    bi, pos, tgt = [], [], []
    for b, p in enumerate(batch):
        for t in range(p.answer_start, len(p.input_ids)):
            bi.append(b)
            pos.append(t - 1)
            tgt.append(p.input_ids[t])
    return torch.tensor(bi, dtype=torch.long), torch.tensor(pos, dtype=torch.long), torch.tensor(tgt, dtype=torch.long)


def _score_fallback(model: Any, prompts: list[CellPrompt], cand_ids: list[list[int]], pad: int) -> torch.Tensor:
    """Sum of candidate-answer log-probs after each prompt (one forward of all candidates per prompt)."""
    out = torch.empty(len(prompts), len(cand_ids))
    device = next(model.parameters()).device
    for i, p in enumerate(prompts):
        pid = list(p.input_ids[: p.answer_start])
        rows = [pid + c for c in cand_ids]
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        lp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1).cpu()
        for j, c in enumerate(cand_ids):
            s = len(pid)
            out[i, j] = sum(float(lp[j, s + t - 1, c[t]]) for t in range(len(c)))
    return out


def score_cells(model: Any, tokenizer: Any, prompts: list[CellPrompt], candidates: list[str], *, answer: str = " {cell_type}.", batch_size: int = 8) -> torch.Tensor:
    """``(cells, candidates)`` summed answer log-probs (the loaders' scorer when available)."""
    texts = [answer.format(cell_type=c) for c in candidates]
    from circuitdb.loaders.scoring import score_candidates

    if all(p.prompt_text for p in prompts):
        return score_candidates(model, tokenizer, [p.prompt_text for p in prompts], texts, batch_size=batch_size)
    cand_ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return _score_fallback(model, prompts, cand_ids, pad_id_of(tokenizer))


class _Acc:
    """Accumulates per-condition CE / KL over answer tokens, also summed per cell (for the bootstrap)."""

    def __init__(self) -> None:
        self.ce: dict[Any, float] = {}
        self.kl: dict[Any, float] = {}
        self.cell_ce: dict[Any, list[torch.Tensor]] = {}
        self.cell_kl: dict[Any, list[torch.Tensor]] = {}
        self.cell_tokens: list[torch.Tensor] = []
        self.n = 0

    def add(self, key: Any, logp: torch.Tensor, tgt: torch.Tensor, orig: torch.Tensor | None, cell: torch.Tensor, n_cells: int) -> None:
        nll = -logp.gather(-1, tgt[:, None]).squeeze(1).double()
        self.ce[key] = self.ce.get(key, 0.0) + float(nll.sum())
        self.cell_ce.setdefault(key, []).append(torch.zeros(n_cells, dtype=torch.float64).index_add_(0, cell, nll))
        if orig is not None:
            kl = (orig.exp() * (orig - logp)).sum(-1).double()
            self.kl[key] = self.kl.get(key, 0.0) + float(kl.sum())
            self.cell_kl.setdefault(key, []).append(torch.zeros(n_cells, dtype=torch.float64).index_add_(0, cell, kl))

    def per_cell(self, key: Any, what: str = "ce") -> np.ndarray:
        return torch.cat((self.cell_ce if what == "ce" else self.cell_kl)[key]).numpy()


def bootstrap_interval(statistic: Callable[..., np.ndarray], per_cell: Sequence[np.ndarray], tokens: np.ndarray, *,
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval, over cells, of a statistic of per-token means.

    Parameters
    ----------
    statistic
        Maps the per-token means of each array in ``per_cell`` (each an ``(n_boot,)`` array,
        in order) to the ``(n_boot,)`` statistic; NaN where undefined.
    per_cell
        Per cell, a quantity *summed* over the cell's answer tokens (one array per condition).
    tokens
        Per cell, the number of answer tokens.
    n_boot
        Resamples (cells drawn with replacement, the same draw for every array: paired).
    seed
        Seed of the resampling.
    level
        Coverage of the interval.

    Returns
    -------
    tuple of float
        ``(low, high)``; NaN when the statistic is undefined in more than half of the resamples.
    """
    rng = np.random.default_rng(seed)
    n = len(tokens)
    idx = rng.integers(0, n, size=(n_boot, n))
    tok = tokens[idx].sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = statistic(*(a[idx].sum(1) / tok for a in per_cell))
    if np.isnan(stat).mean() > 0.5:
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(stat, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _recovered_v(abl: np.ndarray, spl: np.ndarray, org: np.ndarray) -> np.ndarray:
    den = abl - org
    return np.where(np.abs(den) < 1e-12, np.nan, (abl - spl) / den)


def _kl_recovered_v(kl_abl: np.ndarray, kl_spl: np.ndarray) -> np.ndarray:
    return np.where(kl_abl <= 0, np.nan, 1.0 - kl_spl / kl_abl)


def bootstrap_recovered(ce_ablated: np.ndarray, ce_spliced: np.ndarray, ce_original: np.ndarray, tokens: np.ndarray, *,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of CE recovered over cells (per-cell CE *sums* per condition).

    See :func:`bootstrap_interval`; NaN when ablation leaves the CE unchanged in most resamples.
    """
    return bootstrap_interval(_recovered_v, [ce_ablated, ce_spliced, ce_original], tokens, n_boot=n_boot, seed=seed, level=level)


def _recovered(l_abl: float, l_splice: float, l_orig: float) -> float:
    den = l_abl - l_orig
    return float("nan") if abs(den) < 1e-12 else (l_abl - l_splice) / den


def _kl_recovered(kl_abl: float, kl_splice: float) -> float:
    """``1 - KL(orig || spliced) / KL(orig || ablated)``: well defined even when ablation barely moves the CE."""
    return float("nan") if kl_abl <= 0 else 1.0 - kl_splice / kl_abl


@torch.no_grad()
def evaluate_transcoders(
    model: torch.nn.Module,
    tokenizer: Any,
    adata: Any,
    tset: TranscoderSet,
    opts: PromptOptions,
    *,
    batch_size: int = 8,
    max_cells: int | None = None,
    accuracy: bool = True,
    n_boot: int = 1000,
    callback: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``tset`` on the held-out cells of ``adata``.

    Parameters
    ----------
    model, tokenizer
        The model the transcoders were trained on, and its tokenizer.
    adata
        The cells; only the held-out ones (every ``opts.holdout_every``-th) are used.
    tset
        Loaded transcoders (:func:`load_transcoders`).
    opts
        Prompt options (``label_key`` is required).
    batch_size
        Prompts per forward pass.
    max_cells
        Evaluate at most this many held-out cells.
    accuracy
        Also score every candidate cell type (original and all spliced).
    n_boot
        Bootstrap resamples of the held-out cells for the 95% intervals of CE recovered
        (``*_ci95``) of CE and KL recovered (0: none). See :func:`bootstrap_interval`.
    callback
        ``callback(stage, done, total)`` for progress.

    Returns
    -------
    dict
        ``original`` {ce, accuracy}, ``layers`` [{layer, fvu, l0, dead_fraction, ce_recovered, ce_recovered_ci95, kl, ...}],
        ``all_layers`` {ce, ce_recovered, kl, accuracy, ...}, plus counts and hashes.
    """
    if opts.label_key is None:
        raise InputError("evaluation needs --label-key (the obs column with cell types)")
    adapter: ArchAdapter = adapter_for(model)
    layers = tset.layers
    for i in layers:
        if i not in tset.out_mean:
            raise InputError(f"{tset.directory}/layer_{i} lacks {STATS_NAME} (needed for mean ablation); retrain it with 'circuitdb train-transcoders'")
    cells = list(iter_cell_prompts(adata, tokenizer, opts, split="heldout", with_answer=True, max_cells=max_cells))
    if not cells:
        raise InputError("no held-out cells with expressed genes; pass a dataset with more cells")
    pad = pad_id_of(tokenizer)
    device = next(model.parameters()).device
    splices = {i: splice_fn(tset.transcoders[i].to(device)) for i in layers}
    zero = lambda x, y: torch.zeros_like(y)  # noqa: E731
    means = {i: tset.out_mean[i].to(device) for i in layers}

    def mean_fn(i: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return lambda x, y: means[i].to(y.dtype).expand_as(y)

    conditions: list[tuple[Any, dict[int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]] = []
    for i in layers:
        conditions += [(("splice", i), {i: splices[i]}), (("zero", i), {i: zero}), (("mean", i), {i: mean_fn(i)})]
    conditions += [("splice_all", splices), ("zero_all", {i: zero for i in layers}), ("mean_all", {i: mean_fn(i) for i in layers})]

    acc = _Acc()
    d_feat = {i: tset.transcoders[i].cfg.d_features for i in layers}
    fired = {i: torch.zeros(d_feat[i], dtype=torch.bool) for i in layers}
    sse = {i: 0.0 for i in layers}
    ysum = {i: torch.zeros(adapter.d_model, dtype=torch.float64) for i in layers}
    ysq = {i: 0.0 for i in layers}
    l0 = {i: 0.0 for i in layers}
    n_rows = 0
    total = len(cells)
    for b0 in range(0, total, batch_size):
        batch = cells[b0 : b0 + batch_size]
        ids, mask = pad_batch(batch, pad)
        ids, mask = ids.to(device), mask.to(device)
        bi, pos, tgt = _answer_targets(batch, ids.shape[1])
        with capture_mlp(adapter, layers) as store:
            logits = model(input_ids=ids, attention_mask=mask).logits
        orig = torch.log_softmax(logits[bi, pos].float().cpu(), -1)
        acc.add("original", orig, tgt, None, bi, len(batch))
        acc.cell_tokens.append(torch.bincount(bi, minlength=len(batch)))
        acc.n += int(tgt.numel())
        valid = mask.bool().cpu()
        for i in layers:
            x = store[i]["in"].cpu()[valid].float()
            y = store[i]["out"].cpu()[valid].float()
            tout = tset.transcoders[i](x.to(tset.transcoders[i].W_enc.dtype))
            a = tout.acts.float()
            sse[i] += float((tout.out.float() - y).pow(2).sum())
            ysum[i] += y.double().sum(0)
            ysq[i] += float(y.double().pow(2).sum())
            active = a > 0
            l0[i] += float(active.sum())
            fired[i] |= active.any(0)
        n_rows += int(valid.sum())
        for key, repl in conditions:
            with replace_mlp(adapter, repl):
                lg = model(input_ids=ids, attention_mask=mask).logits
            acc.add(key, torch.log_softmax(lg[bi, pos].float().cpu(), -1), tgt, orig, bi, len(batch))
        if callback is not None:
            callback("ce", len(batch), total)

    n_tok = max(acc.n, 1)
    ce = {k: v / n_tok for k, v in acc.ce.items()}
    kl = {k: v / n_tok for k, v in acc.kl.items()}
    cell_tokens = torch.cat(acc.cell_tokens).numpy().astype(np.float64)

    def ci(ablated: Any, spliced: Any, what: str = "ce") -> list[float] | None:
        if not n_boot:
            return None
        if what == "ce":
            arrays = [acc.per_cell(ablated), acc.per_cell(spliced), acc.per_cell("original")]
            lo, hi = bootstrap_interval(_recovered_v, arrays, cell_tokens, n_boot=n_boot, seed=0)
        else:
            arrays = [acc.per_cell(ablated, "kl"), acc.per_cell(spliced, "kl")]
            lo, hi = bootstrap_interval(_kl_recovered_v, arrays, cell_tokens, n_boot=n_boot, seed=0)
        return None if np.isnan(lo) else [lo, hi]

    rows = []
    for i in layers:
        var = ysq[i] - float((ysum[i] ** 2).sum()) / max(n_rows, 1)
        train_dead = None
        sp = tset.directory / f"layer_{i}" / STATE_NAME
        if sp.is_file():
            try:
                train_dead = float(torch.load(sp, map_location="cpu", weights_only=False).get("metrics", {}).get("dead", float("nan")))
            except Exception:  # noqa: BLE001 - the training state is optional extra information
                train_dead = None
        rows.append({
            "layer": i,
            "fvu": sse[i] / max(var, 1e-12),
            "l0": l0[i] / max(n_rows, 1),
            "dead_fraction": 1.0 - float(fired[i].float().mean()),
            "train_dead_fraction": train_dead,
            "ce_spliced": ce[("splice", i)],
            "ce_zero_ablated": ce[("zero", i)],
            "ce_mean_ablated": ce[("mean", i)],
            "ce_recovered": _recovered(ce[("zero", i)], ce[("splice", i)], ce["original"]),
            "ce_recovered_ci95": ci(("zero", i), ("splice", i)),
            "ce_recovered_mean_ablation": _recovered(ce[("mean", i)], ce[("splice", i)], ce["original"]),
            "ce_recovered_mean_ablation_ci95": ci(("mean", i), ("splice", i)),
            "kl": kl[("splice", i)],
            "kl_zero_ablated": kl[("zero", i)],
            "kl_recovered": _kl_recovered(kl[("zero", i)], kl[("splice", i)]),
            "kl_recovered_ci95": ci(("zero", i), ("splice", i), "kl"),
        })
    result: dict[str, Any] = {
        "model_hash": tset.manifest.get("model_hash"),
        "transcoder_set_hash": tset.set_hash,
        "n_cells": len(cells),
        "n_answer_tokens": acc.n,
        "n_rows": n_rows,
        "holdout_every": opts.holdout_every,
        "bootstrap": {"resamples": n_boot, "unit": "held-out cell", "level": 0.95, "seed": 0} if n_boot else None,
        "original": {"ce": ce["original"], "accuracy": None},
        "layers": rows,
        "all_layers": {
            "ce": ce["splice_all"],
            "ce_zero_ablated": ce["zero_all"],
            "ce_mean_ablated": ce["mean_all"],
            "ce_recovered": _recovered(ce["zero_all"], ce["splice_all"], ce["original"]),
            "ce_recovered_ci95": ci("zero_all", "splice_all"),
            "ce_recovered_mean_ablation": _recovered(ce["mean_all"], ce["splice_all"], ce["original"]),
            "ce_recovered_mean_ablation_ci95": ci("mean_all", "splice_all"),
            "kl": kl["splice_all"],
            "kl_zero_ablated": kl["zero_all"],
            "kl_recovered": _kl_recovered(kl["zero_all"], kl["splice_all"]),
            "kl_recovered_ci95": ci("zero_all", "splice_all", "kl"),
            "accuracy": None,
        },
    }
    if accuracy:
        candidates = sorted(set(map(str, adata.obs[opts.label_key])))
        truth = torch.tensor([candidates.index(str(c.label)) for c in cells])
        answer = opts.template().answer
        s0 = score_cells(model, tokenizer, cells, candidates, answer=answer, batch_size=batch_size)
        if callback is not None:
            callback("accuracy", total, total)
        with replace_mlp(adapter, splices):
            s1 = score_cells(model, tokenizer, cells, candidates, answer=answer, batch_size=batch_size)
        result["original"]["accuracy"] = float((s0.argmax(1) == truth).float().mean())
        result["all_layers"]["accuracy"] = float((s1.argmax(1) == truth).float().mean())
        result["all_layers"]["agreement_with_original"] = float((s0.argmax(1) == s1.argmax(1)).float().mean())
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """The evaluation as a markdown table (one row per layer, then all layers at once)."""

    def f(v: Any, nd: int = 3) -> str:
        return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    def rec(r: dict[str, Any], key: str) -> str:
        c = r.get(f"{key}_ci95")
        return f(r[key]) + (f" [{f(c[0], 2)}, {f(c[1], 2)}]" if c else "")

    o, a = result["original"], result["all_layers"]
    lines = [
        f"Held-out cells: {result['n_cells']} ({result['n_answer_tokens']} answer tokens, {result['n_rows']} token rows); "
        f"original answer CE {f(o['ce'])}, accuracy {f(o['accuracy'])}.",
        "",
        "| layer | FVU | L0 | dead | CE spliced | CE zero-abl. | CE mean-abl. | CE recovered (zero) | CE recovered (mean) | KL | KL zero-abl. | KL recovered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["layers"]:
        lines.append(
            f"| {r['layer']} | {f(r['fvu'])} | {f(r['l0'], 1)} | {f(r['dead_fraction'])} | {f(r['ce_spliced'])} | {f(r['ce_zero_ablated'])} | "
            f"{f(r['ce_mean_ablated'])} | {rec(r, 'ce_recovered')} | {rec(r, 'ce_recovered_mean_ablation')} | {f(r['kl'], 4)} | "
            f"{f(r['kl_zero_ablated'], 4)} | {rec(r, 'kl_recovered')} |"
        )
    lines.append(
        f"| all | – | – | – | {f(a['ce'])} | {f(a['ce_zero_ablated'])} | {f(a['ce_mean_ablated'])} | {rec(a, 'ce_recovered')} | "
        f"{rec(a, 'ce_recovered_mean_ablation')} | {f(a['kl'], 4)} | {f(a['kl_zero_ablated'], 4)} | {rec(a, 'kl_recovered')} |"
    )
    lines += [
        "",
        "CE recovered = (CE ablated - CE spliced) / (CE ablated - CE original); it is ill-conditioned where ablating "
        "the MLP barely changes the answer CE (small denominators), so KL recovered = 1 - KL(orig||spliced) / KL(orig||zero-ablated) "
        "is shown too. FVU, L0 and dead fraction are over every held-out token; dead = never active on them.",
    ]
    if result.get("bootstrap"):
        b = result["bootstrap"]
        lines.append(f"Brackets: {b['level']:.0%} percentile bootstrap interval over held-out cells ({b['resamples']} resamples, conditions paired).")
    lines += ["", f"Cell-type accuracy: original {f(o['accuracy'])}, all transcoders spliced {f(a['accuracy'])}."]
    return "\n".join(lines) + "\n"
