"""Benchmark: candidate-answer scoring with a shared prompt cache vs a naive full forward per candidate.

Claim: :func:`circuitdb.loaders.scoring.score_candidates` scores C cell types for a
prompt for little more than one prompt forward, because the prompt's key/value
cache is computed once and shared by all C answers.

Model: the shipped demo model (``circuitdb demo-model path``); prompts: the first
``--cells`` cells of pbmc68k_reduced at the model's top-k; candidates: its cell types.

* ``ours``: ``score_candidates(..., batch_size=32)``.
* ``naive``: for every (prompt, candidate) pair the full prompt+answer sequence,
  right-padded in batches of 32 sequences, log-probs summed over the answer tokens.

Prints seconds for both, the speed ratio, and the largest absolute score difference.

Usage::

    python benchmarks/bench_scoring.py [--cells 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def naive_scores(model, tok, prompts, answers, batch=32):  # type: ignore[no-untyped-def]
    pairs = [(p, a) for p in prompts for a in answers]
    out = []
    for b0 in range(0, len(pairs), batch):
        chunk = pairs[b0 : b0 + batch]
        enc = [(tok(p, add_special_tokens=False)["input_ids"], tok(a, add_special_tokens=False)["input_ids"]) for p, a in chunk]
        n = max(len(p) + len(a) for p, a in enc)
        ids = torch.full((len(enc), n), tok.pad_token_id, dtype=torch.long)
        for i, (p, a) in enumerate(enc):
            ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        lp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
        for i, (p, a) in enumerate(enc):
            out.append(sum(float(lp[i, len(p) - 1 + j, t]) for j, t in enumerate(a)))
    return torch.tensor(out).view(len(prompts), len(answers))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import scanpy as sc

    from circuitdb.demo import model_dir
    from circuitdb.demo.predict import load_model_dir
    from circuitdb.loaders.prompts import PromptTemplate, build_prompt
    from circuitdb.loaders.scoring import score_candidates
    from circuitdb.loaders.sentences import SentenceOptions, iter_cell_sentences

    b = load_model_dir(model_dir())
    ad = sc.datasets.pbmc68k_reduced()[: args.cells].copy()
    cells = list(iter_cell_sentences(ad, SentenceOptions(top_k=b.meta["top_k"])))
    prompts = [build_prompt(c.genes).text for c in cells]
    answers = [PromptTemplate().answer_text(t) for t in b.meta["cell_types"]]
    with torch.inference_mode():
        t0 = time.perf_counter()
        ours = score_candidates(b.model, b.tokenizer, prompts, answers, batch_size=32)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = naive_scores(b.model, b.tokenizer, prompts, answers)
        t_naive = time.perf_counter() - t0
    print(json.dumps({
        "cells": len(prompts), "candidates": len(answers), "threads": args.threads,
        "ours_s": round(t_ours, 3), "naive_s": round(t_naive, 3), "speedup": round(t_naive / t_ours, 2),
        "max_abs_diff": float((ours - ref).abs().max()),
    }, indent=2))


if __name__ == "__main__":
    main()
