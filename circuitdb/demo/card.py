"""The demo model's card (README.md), written from the run's own metadata."""

from __future__ import annotations

from typing import Any


def model_card(meta: dict[str, Any], config: Any) -> str:
    """Render the model card from ``circuitdb.json`` metadata and the HF config."""
    tc = meta["train_config"]
    tpg = meta["tokens_per_gene"]
    hist = " | ".join(f"{k}: {v}" for k, v in tpg["histogram"].items())
    curve = "\n".join(
        f"| {h['epoch']} | {h['answer_loss']:.3f} | {h['heldout_acc']:.3f} | {h['wall_s']:.0f} |"
        for h in meta["history"]
        if h["heldout_acc"] is not None  # epochs without an evaluation have none
    )
    types = ", ".join(f"`{t}`" for t in meta["cell_types"])
    return f"""# circuitdb demo model: a C2S-style GPT-NeoX trained from scratch on pbmc68k_reduced

A small cell2sentence (C2S) style causal language model, trained by circuitdb's own
code (`circuitdb/demo/train.py`) so that the transcoder, attribution and graph stages
have a real trained model to trace. It is **not** a C2S release and was never trained
on anything but the 560 training cells below.

## Data and split
- Data: {meta['dataset']}: 700 PBMCs x 765 genes, log-normalised `.raw`, labels `obs["{meta['label_key']}"]` ({len(meta['cell_types'])} types: {types}).
- Cell sentence: the cell's expressed genes by descending expression, ties broken by seed, upper-cased, **top {meta['top_k']}** (`circuitdb.loaders.sentences`).
- **Held-out split (fixed):** obs positions 0, {meta['holdout_every']}, {2 * meta['holdout_every']}, ... ({meta['n_heldout_cells']} cells) are used for nothing but evaluation: not in the tokenizer corpus, not in any batch. {meta['n_train_cells']} cells train.

## Tokenizer
Byte-level BPE (GPT-2 / Pythia pre-tokenizer regex), vocabulary {len_vocab(config)}, trained on the training
cells' sentences and rendered prompts + answers. As under Pythia's tokenizer, most gene symbols span several tokens.

Tokens per gene (over the {tpg['n_genes']} distinct genes in the top-{meta['top_k']} sentences, each as `" SYMBOL"`):
mean **{tpg['mean']:.2f}**, median {tpg['median']:.0f}, max {tpg['max']}, {100 * tpg['frac_multi']:.0f}% span more than one token.
Histogram (tokens: genes): {hist}.

## Model
GPT-NeoX (`GPTNeoXForCausalLM`), Pythia-style: parallel residual, rotary on {tc['rotary_pct']:.0%} of each head, untied embeddings.
{config.num_hidden_layers} layers, d_model {config.hidden_size}, {config.num_attention_heads} heads, d_mlp {config.intermediate_size}, {meta['n_params']:,} parameters, float32 safetensors.

## Training
- Tasks, as C2S: each example is the C2S cell-type prompt around the cell's sentence, then the answer `" {{cell_type}}."`.
  Loss = answer-token cross-entropy + {tc['lm_weight']} x cross-entropy of the prompt tokens (language modelling on the cell sentence).
- Ties: most of a top-k list in log-normalised counts is ties (equal values), ordered by the sentence builder's seeded tie key.
  {"Each epoch re-draws that tie order with a fresh tie seed, so no arbitrary order is memorised; held-out and predicted sentences use tie seed 0." if tc.get('resample_ties') else "Training uses tie seed 0, as evaluation does."}
- Augmentation: with probability {tc['aug_prob']}, the ranked list is truncated to a random length in [{tc['aug_min_frac']} x top-k, top-k] and each gene then dropped with probability {tc['aug_drop']} (order kept).
- AdamW lr {tc['lr']} (warmup {tc['warmup_frac']}, cosine to {tc['min_lr_frac']} x lr), weight decay {tc['weight_decay']}, batch {tc['batch_size']}, {tc['epochs']} epochs, dropout {tc['dropout']}, seed {tc['seed']}, {tc['threads']} CPU thread(s).
- This run: {meta['train_wall_s']:.0f} s wall, {meta['train_cpu_s']:.0f} s CPU (torch {meta['torch']}). Wall time depends on how busy the
  machine is; with {tc['threads']} thread(s) the CPU time is about the wall time on an idle machine.

## Accuracy
Scored by ranking the {len(meta['cell_types'])} candidate answers by summed answer-token log-probability (no free generation):

- **held-out accuracy: {meta['heldout_accuracy']:.3f}** ({meta['n_heldout_cells']} cells)
- training-cell accuracy: {meta['train_accuracy']:.3f}
- references on the same split: logistic regression on the full expression 0.78; majority class 0.39.

| epoch | answer loss | held-out acc | wall s |
|---|---|---|---|
{curve}

## Use
```bash
circuitdb predict --model "$(circuitdb demo-model path)" pbmc68k.h5ad --label-key bulk_labels --json
```
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from circuitdb.demo import model_dir
model = AutoModelForCausalLM.from_pretrained(model_dir()); tok = AutoTokenizer.from_pretrained(model_dir())
```
`circuitdb.json` holds top-k, organism, label key, held-out rule, cell types and this run's numbers.

## Retrain
```bash
circuitdb demo-model train --out my-model --seed {tc['seed']} --threads {tc['threads']}
```
Deterministic given seed and thread count.
"""


def len_vocab(config: Any) -> int:
    return int(config.vocab_size)
