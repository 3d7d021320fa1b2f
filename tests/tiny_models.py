"""Tiny seeded C2S-style models, tokenizers and data for the transcoder tests (offline, seconds).

* a BPE tokenizer trained on the prompt template and gene symbols (small vocab, so
  many symbols span several tokens, as under Pythia's tokenizer);
* random GPT-NeoX (parallel residual) and Gemma-2 models built from configs;
* ``pbmc68k_reduced`` cut to a few cells, written as ``.h5ad``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# tiny models: one thread is fastest, and avoids OpenMP spin contention on shared CI machines
torch.set_num_threads(1)

LABEL_KEY = "bulk_labels"
TOP_K = 12


def small_adata(n_cells: int = 40):  # type: ignore[no-untyped-def]
    import scanpy as sc

    ad = sc.datasets.pbmc68k_reduced()
    ad = ad[:n_cells].copy()
    return ad


def build_tokenizer(adata, vocab_size: int = 300):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from circuitdb.loaders.prompts import DEFAULT_PROMPT, DEFAULT_ANSWER

    genes = [str(g).upper() for g in adata.raw.var_names]
    labels = sorted(set(map(str, adata.obs[LABEL_KEY])))
    corpus = [DEFAULT_PROMPT.format(n=TOP_K, organism="Homo sapiens", genes=" ".join(genes[i : i + 20])) for i in range(0, len(genes), 20)]
    corpus += [DEFAULT_ANSWER.format(cell_type=lab) for lab in labels] * 5
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|pad|>", "<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def neox_model(vocab_size: int, *, n_layers: int = 2, d: int = 32, seed: int = 0):  # type: ignore[no-untyped-def]
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=d, num_hidden_layers=n_layers, num_attention_heads=4, intermediate_size=4 * d,
        max_position_embeddings=512, rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False,
        pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )
    return GPTNeoXForCausalLM(cfg).eval()


def gemma2_model(vocab_size: int, *, n_layers: int = 2, d: int = 32, seed: int = 0):  # type: ignore[no-untyped-def]
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    cfg = Gemma2Config(
        vocab_size=vocab_size, hidden_size=d, num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, intermediate_size=4 * d, max_position_embeddings=512, pad_token_id=0, eos_token_id=1, bos_token_id=1,
        attn_implementation="eager",
    )
    return Gemma2ForCausalLM(cfg).eval()


def save_model_dir(model, tokenizer, directory: Path, *, top_k: int = TOP_K) -> Path:  # type: ignore[no-untyped-def]
    import json

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "circuitdb.json").write_text(json.dumps({"top_k": top_k, "label_key": LABEL_KEY}))
    return directory


def write_h5ad(adata, path: Path) -> Path:  # type: ignore[no-untyped-def]
    adata.write_h5ad(path)
    return path


def seeded() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


# -- pytest fixtures (import them into a test module to use them) ---------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):  # type: ignore[no-untyped-def]
    """``(adata, tokenizer, h5ad_path)``: 40 pbmc68k cells and a BPE tokenizer trained on them."""
    ad = small_adata(40)
    tok = build_tokenizer(ad)
    path = write_h5ad(ad, tmp_path_factory.mktemp("data") / "cells.h5ad")
    return ad, tok, path


@pytest.fixture(scope="session")
def neox_dir(tiny_data, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A saved tiny random GPT-NeoX (parallel residual) model directory with its tokenizer and card."""
    ad, tok, _ = tiny_data
    return save_model_dir(neox_model(len(tok)), tok, tmp_path_factory.mktemp("models") / "neox")


@pytest.fixture(scope="session")
def neox_pipeline(neox_dir, tiny_data, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Harvest + train (topk, 64 features, k 6) on the tiny NeoX: ``(model_dir, acts_dir, tc_dir)``."""
    from circuitdb.transcoder.common import PromptOptions, load_model
    from circuitdb.transcoder.harvest import HarvestConfig, harvest
    from circuitdb.transcoder.train import TrainConfig, train_transcoders

    ad, _, _ = tiny_data
    model, tok = load_model(neox_dir)
    root = tmp_path_factory.mktemp("pipeline")
    harvest(model, tok, ad, root / "acts", HarvestConfig(cells_per_shard=8), PromptOptions(top_k=TOP_K, label_key=LABEL_KEY))
    train_transcoders(root / "acts", root / "tc", TrainConfig(d_features=64, k=6, batch_size=256, epochs=8, dead_after_rows=3000))
    return neox_dir, root / "acts", root / "tc"


def cli(capsys, *args):  # type: ignore[no-untyped-def]
    """Run ``circuitdb --hide-progress ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    from circuitdb.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--hide-progress", *map(str, args)])
    out, err = capsys.readouterr()
    return exc.value.code, out, err
