"""The demo-model tokenizer and training loop, on tiny data and a tiny model."""

import json

import pytest
import torch

from circuitdb.demo.tokenizer import tokens_per_gene, train_bpe
from circuitdb.demo.train import TrainConfig, split_positions, train
from circuitdb.errors import InputError
from circuitdb.loaders.sentences import SentenceOptions, iter_cell_sentences

TINY = dict(top_k=8, vocab_size=300, n_layers=1, d_model=32, n_heads=2, d_mlp=64, epochs=2, batch_size=8,
            eval_every=1, threads=1)


@pytest.fixture(scope="module")
def adata40():
    import scanpy as sc

    return sc.datasets.pbmc68k_reduced()[:40].copy()


def test_split_is_every_fifth_position():
    train_pos, held = split_positions(700, 5)
    assert len(held) == 140 and held[:3].tolist() == [0, 5, 10]
    assert set(train_pos.tolist()).isdisjoint(held.tolist()) and len(train_pos) == 560


def test_tokenizer_splits_many_genes_into_several_tokens(adata40):
    cells = list(iter_cell_sentences(adata40, SentenceOptions(top_k=100)))
    tok = train_bpe([c.sentence for c in cells], vocab_size=400)
    assert tok.is_fast and len(tok) <= 400
    tpg = tokens_per_gene(tok, [g for c in cells for g in c.genes])
    assert tpg.frac_multi > 0.5 and tpg.mean > 1.5
    assert sum(tpg.histogram.values()) == tpg.n_genes
    # round trip: decoding a sentence gives it back
    s = cells[0].sentence
    assert tok.decode(tok(s)["input_ids"]) == s


def test_tiny_training_run_never_sees_heldout_cells(adata40, tmp_path):
    res = train(TrainConfig(**TINY), tmp_path / "m", adata=adata40)
    held_ids = {str(adata40.obs_names[i]) for i in range(0, 40, 5)}
    assert set(res.heldout_cell_ids) == held_ids
    assert res.seen_cell_ids, "the loop fed no cells"
    assert res.seen_cell_ids.isdisjoint(held_ids)
    assert res.seen_cell_ids == set(res.train_cell_ids)  # every training cell was used in 2 epochs
    assert len(res.history) == 2 and 0.0 <= res.heldout_accuracy <= 1.0

    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tmp_path / "m"
    meta = json.loads((d / "circuitdb.json").read_text())
    assert meta["top_k"] == 8 and meta["holdout_every"] == 5 and meta["label_key"] == "bulk_labels"
    assert meta["cell_types"] == sorted(set(adata40.obs["bulk_labels"].astype(str)))
    assert (d / "model.safetensors").is_file() and (d / "README.md").read_text().startswith("# circuitdb demo model")
    model = AutoModelForCausalLM.from_pretrained(d, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    assert tok.is_fast and model.config.use_parallel_residual and not model.config.tie_word_embeddings
    assert model.config.num_hidden_layers == 1


def test_training_is_deterministic_given_seed(adata40, tmp_path):
    from safetensors.torch import load_file

    cfg = TrainConfig(**{**TINY, "epochs": 1, "eval_every": 0})
    train(cfg, tmp_path / "a", adata=adata40, max_steps=2)
    train(cfg, tmp_path / "b", adata=adata40, max_steps=2)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_refuses_non_empty_out(adata40, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        train(TrainConfig(**TINY), tmp_path / "x", adata=adata40, max_steps=1)
    assert (tmp_path / "x" / "f").read_text() == "keep"


@pytest.mark.slow
def test_cli_train_tiny_model(tmp_path):
    from click.testing import CliRunner

    from circuitdb.cli import cli

    out = tmp_path / "cli-model"
    r = CliRunner().invoke(cli, ["--hide-progress", "demo-model", "train", "--out", str(out), "--epochs", "1",
                                 "--layers", "1", "--d-model", "32", "--heads", "2", "--top-k", "6",
                                 "--eval-every", "0", "--threads", "1"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "circuitdb.json").read_text())
    assert meta["top_k"] == 6 and meta["n_train_cells"] == 560 and meta["n_heldout_cells"] == 140
    assert meta["train_config"]["d_model"] == 32
