"""Train the C2S-style demo model from scratch on scanpy's ``pbmc68k_reduced``.

One example per training cell per epoch: the C2S cell-type prompt around the
cell's (augmented) top-k gene sentence, followed by its answer. The loss is the
answer tokens' cross-entropy (the classification task) plus ``lm_weight`` times
the prompt tokens' cross-entropy (language modelling on the cell sentence), so
both C2S tasks share one forward pass.

Cells at obs positions ``0, holdout_every, 2*holdout_every, ...`` are held out:
they enter neither the tokenizer corpus nor any batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from circuitdb.errors import InputError
from circuitdb.loaders.prompts import DEFAULT_ORGANISM, PromptTemplate, build_prompt
from circuitdb.loaders.sentences import CellSentence, SentenceOptions, iter_cell_sentences

META_FILE = "circuitdb.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the demo model (with the data and the thread count).

    Parameters
    ----------
    top_k
        Genes per cell sentence (the model's own top-k; every command defaults to it).
    vocab_size
        BPE vocabulary size.
    n_layers, d_model, n_heads, d_mlp
        GPT-NeoX shape (parallel residual, rotary on ``rotary_pct`` of each head).
    epochs, batch_size, lr, weight_decay, warmup_frac, min_lr_frac
        AdamW with linear warmup and cosine decay to ``min_lr_frac * lr``.
    lm_weight
        Weight of the language-modelling loss on prompt tokens (answer loss weight is 1).
    aug_prob, aug_min_frac, aug_drop
        With probability ``aug_prob`` a training sentence is truncated to a random length
        in ``[aug_min_frac * top_k, top_k]`` and each gene then dropped with ``aug_drop``
        (the ranked order is kept).
    dropout
        Hidden and attention dropout during training.
    resample_ties
        Re-draw the order of equal expression values (the sentence builder's tie seed) every
        epoch, so the model never learns one arbitrary order of tied genes. Held-out and
        predicted sentences use the default tie seed 0.
    holdout_every
        Cells at obs positions divisible by this are held out.
    eval_every
        Held-out accuracy is measured every this many epochs (0: only at the end).
    seed, threads
        The run is deterministic given these.
    """

    top_k: int = 40
    vocab_size: int = 1000
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    rotary_pct: float = 0.25
    epochs: int = 16
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.05
    lm_weight: float = 0.3
    aug_prob: float = 0.5
    aug_min_frac: float = 0.5
    aug_drop: float = 0.1
    dropout: float = 0.0
    resample_ties: bool = True
    holdout_every: int = 5
    eval_every: int = 2
    seed: int = 0
    threads: int = 1
    organism: str = DEFAULT_ORGANISM
    label_key: str = "bulk_labels"

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.epochs < 1 or self.batch_size < 1:
            raise InputError("top_k, epochs and batch_size must be at least 1")
        if self.d_model % self.n_heads:
            raise InputError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; pick matching sizes")
        if self.holdout_every < 2:
            raise InputError(f"--holdout-every must be at least 2, got {self.holdout_every}")
        if not 0.0 < self.aug_min_frac <= 1.0:
            raise InputError("aug_min_frac must lie in (0, 1]")


@dataclass
class TrainResult:
    """What a run produced: where, how well, how long, and on which cells."""

    out: Path
    heldout_accuracy: float
    train_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    train_cell_ids: list[str] = field(default_factory=list)
    seen_cell_ids: set[str] = field(default_factory=set)
    heldout_cell_ids: list[str] = field(default_factory=list)
    n_params: int = 0
    tokens_per_gene: dict[str, Any] = field(default_factory=dict)


def load_pbmc68k() -> Any:
    """scanpy's ``pbmc68k_reduced`` (ships with scanpy; no download)."""
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()


def split_positions(n_obs: int, holdout_every: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_positions, heldout_positions)``; held out are ``0, k, 2k, ...``."""
    pos = np.arange(n_obs)
    held = pos % holdout_every == 0
    return pos[~held], pos[held]


def _augment(genes: tuple[str, ...], rng: np.random.Generator, cfg: TrainConfig) -> tuple[str, ...]:
    if rng.random() >= cfg.aug_prob or len(genes) < 2:
        return genes
    lo = max(1, int(math.ceil(cfg.aug_min_frac * len(genes))))
    k = int(rng.integers(lo, len(genes) + 1))
    keep = [g for g in genes[:k] if rng.random() >= cfg.aug_drop]
    return tuple(keep) if keep else genes[:1]


def _epoch_sentences(adata: Any, train_cells: Sequence[CellSentence], cfg: TrainConfig, epoch: int) -> list[CellSentence]:
    """The training cells' sentences for one epoch: with ``resample_ties``, equal expression values
    are re-ordered by a fresh tie seed each epoch (they are exchangeable; in log-normalised
    counts most of a top-k list is ties), otherwise the evaluation sentences themselves."""
    if not cfg.resample_ties:
        return list(train_cells)
    tie_seed = 1 + cfg.seed * 100_003 + epoch  # never 0, the evaluation seed
    by_index = {
        c.index: c
        for c in iter_cell_sentences(adata, SentenceOptions(top_k=cfg.top_k, label_key=cfg.label_key, seed=tie_seed))
    }
    return [by_index[c.index] for c in train_cells]


def _encode(tokenizer: Any, prompts: Sequence[str], answers: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and per-token loss targets split into (prompt, answer) masks."""
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    seqs = [p + a for p, a in zip(p_ids, a_ids)]
    n = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    kind = torch.zeros((len(seqs), n), dtype=torch.long)  # 0 pad, 1 prompt, 2 answer
    for i, (p, a) in enumerate(zip(p_ids, a_ids)):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        kind[i, : len(p)] = 1
        kind[i, len(p) : len(p) + len(a)] = 2
    return ids, kind, torch.tensor([len(s) for s in seqs])


def build_model(cfg: TrainConfig, tokenizer: Any, max_len: int) -> Any:
    """A randomly initialised GPT-NeoX (Pythia-style: parallel residual, rotary, untied)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    hf = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        intermediate_size=cfg.d_mlp,
        hidden_act="gelu",
        rotary_pct=cfg.rotary_pct,
        max_position_embeddings=max(512, 1 << (max_len - 1).bit_length()),
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_dropout=cfg.dropout,
        hidden_dropout=cfg.dropout,
        initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPTNeoXForCausalLM(hf)


def heldout_eval(
    model: Any,
    tokenizer: Any,
    cells: Sequence[CellSentence],
    cell_types: Sequence[str],
    cfg: TrainConfig,
    *,
    batch_size: int = 32,
) -> float:
    """Accuracy of candidate-answer ranking on ``cells`` (full top-k sentences)."""
    from circuitdb.loaders.scoring import score_candidates

    if not cells:
        return float("nan")
    template = PromptTemplate()
    prompts = [build_prompt(c.genes, organism=cfg.organism, template=template).text for c in cells]
    answers = [template.answer_text(t) for t in cell_types]
    was_training = model.training
    model.eval()
    scores = score_candidates(model, tokenizer, prompts, answers, batch_size=batch_size)
    model.train(was_training)
    pred = scores.argmax(-1).numpy()
    truth = np.array([list(cell_types).index(c.label) for c in cells])
    return float((pred == truth).mean())


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def train(
    cfg: TrainConfig,
    out: Path | str,
    *,
    adata: Any | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train tokenizer and model from scratch and save both (plus card and metadata) to ``out``.

    Parameters
    ----------
    cfg
        The run's configuration.
    out
        Target directory; written to a temporary sibling first, then renamed into place.
    adata
        The AnnData (``.raw`` is used, labels ``cfg.label_key``); default ``pbmc68k_reduced``.
    callback
        Called after every optimiser step with ``{"epoch", "step", "total", "loss", "heldout_acc"}``.
    max_steps
        Stop after this many optimiser steps (for tests).

    Returns
    -------
    TrainResult
    """
    from circuitdb.demo.tokenizer import tokens_per_gene, train_bpe

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; pass a new --out directory")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)

    adata = load_pbmc68k() if adata is None else adata
    # the evaluation sentences use the default tie seed, exactly as `circuitdb predict` builds them
    cells = list(iter_cell_sentences(adata, SentenceOptions(top_k=cfg.top_k, label_key=cfg.label_key)))
    cells = [c for c in cells if c.genes]
    train_pos, held_pos = split_positions(adata.n_obs, cfg.holdout_every)
    held_set = set(held_pos.tolist())
    train_cells = [c for c in cells if c.index not in held_set]
    held_cells = [c for c in cells if c.index in held_set]
    if not train_cells:
        raise InputError("no training cells left after the held-out split; use a larger dataset")
    cell_types = sorted({str(c.label) for c in cells})
    template = PromptTemplate()

    corpus = [c.sentence for c in train_cells] + [
        build_prompt(c.genes, organism=cfg.organism, template=template).text + template.answer_text(str(c.label))
        for c in train_cells
    ]
    tokenizer = train_bpe(corpus, vocab_size=cfg.vocab_size)
    tpg = tokens_per_gene(tokenizer, [g for c in cells for g in c.genes])

    max_len = max(
        len(tokenizer(build_prompt(c.genes, organism=cfg.organism).text + template.answer_text(str(c.label)))["input_ids"])
        for c in cells
    )
    model = build_model(cfg, tokenizer, max_len)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    steps_per_epoch = math.ceil(len(train_cells) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if max_steps is not None:
        total = min(total, max_steps)
    seen: set[str] = set()
    history: list[dict[str, float]] = []
    step = 0
    last_acc = float("nan")
    model.train()
    done = False
    for epoch in range(cfg.epochs):
        epoch_cells = _epoch_sentences(adata, train_cells, cfg, epoch)
        order = rng.permutation(len(train_cells))
        ep_loss, ep_n = 0.0, 0
        for b0 in range(0, len(order), cfg.batch_size):
            batch = [epoch_cells[i] for i in order[b0 : b0 + cfg.batch_size]]
            seen.update(c.cell_id for c in batch)
            genes = [_augment(c.genes, rng, cfg) for c in batch]
            prompts = [build_prompt(g, organism=cfg.organism, template=template).text for g in genes]
            answers = [template.answer_text(str(c.label)) for c in batch]
            ids, kind, _ = _encode(tokenizer, prompts, answers)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg)
            logits = model(input_ids=ids).logits[:, :-1, :]
            tgt, tkind = ids[:, 1:], kind[:, 1:]
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view_as(tgt)
            ans_m, lm_m = (tkind == 2).float(), (tkind == 1).float()
            loss_ans = (ce * ans_m).sum() / ans_m.sum().clamp(min=1)
            loss_lm = (ce * lm_m).sum() / lm_m.sum().clamp(min=1)
            loss = loss_ans + cfg.lm_weight * loss_lm
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            la, ll = loss_ans.item(), loss_lm.item()
            ep_loss += la * len(batch)
            ep_n += len(batch)
            if callback is not None:
                callback({"epoch": epoch, "step": step, "total": total, "loss": la, "lm_loss": ll, "heldout_acc": last_acc})
            if step >= total:
                done = True
                break
        is_last = done or epoch == cfg.epochs - 1
        evaluated = is_last or bool(cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)
        if evaluated:
            last_acc = heldout_eval(model, tokenizer, held_cells, cell_types, cfg)
        history.append({"epoch": epoch + 1, "answer_loss": ep_loss / max(1, ep_n),
                        "heldout_acc": last_acc if evaluated else None, "wall_s": time.perf_counter() - wall0})
        if callback is not None:
            callback({"epoch": epoch + 1, "step": step, "total": total, "loss": ep_loss / max(1, ep_n), "heldout_acc": last_acc})
        if done:
            break

    model.eval()
    heldout_acc = last_acc
    train_acc = heldout_eval(model, tokenizer, train_cells, cell_types, cfg)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result = TrainResult(
        out=out,
        heldout_accuracy=heldout_acc,
        train_accuracy=train_acc,
        history=history,
        wall_s=wall,
        cpu_s=cpu,
        train_cell_ids=[c.cell_id for c in train_cells],
        seen_cell_ids=seen,
        heldout_cell_ids=[c.cell_id for c in held_cells],
        n_params=n_params,
        tokens_per_gene=asdict(tpg),
    )
    meta = {
        "format": "circuitdb-demo-model/1",
        "top_k": cfg.top_k,
        "organism": cfg.organism,
        "label_key": cfg.label_key,
        "holdout_every": cfg.holdout_every,
        "cell_types": cell_types,
        "prompt_template": template.prompt,
        "answer_template": template.answer,
        "dataset": "scanpy.datasets.pbmc68k_reduced (.raw)" if adata is None or adata.n_obs == 700 else f"AnnData {adata.n_obs} cells",
        "n_train_cells": len(train_cells),
        "n_heldout_cells": len(held_cells),
        "heldout_accuracy": heldout_acc,
        "train_accuracy": train_acc,
        "n_params": n_params,
        "tokens_per_gene": asdict(tpg),
        "train_config": asdict(cfg),
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "history": history,
        "torch": torch.__version__,
    }
    _save(model, tokenizer, meta, out)
    return result


def _save(model: Any, tokenizer: Any, meta: dict[str, Any], out: Path) -> None:
    """Write weights, tokenizer, metadata and card to a temp dir, then rename into ``out``."""
    from circuitdb.demo.card import model_card
    from circuitdb.demo.predict import tokenizer_fingerprint

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        meta = {**meta, "tokenizer_sha256": tokenizer_fingerprint(tmp)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(meta, model.config))
        if out.exists():
            out.rmdir()  # empty (checked at the start)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
