"""Harvest: rows are the MLP's own input/output at recorded positions of training cells; resume; bad input."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import adapter_for
from circuitdb.transcoder.common import PromptOptions, iter_cell_prompts, load_model
from circuitdb.transcoder.harvest import SEG_ANSWER, SEG_GENE, HarvestConfig, harvest, read_manifest
from tiny_models import LABEL_KEY, TOP_K, cli, gemma2_model, neox_dir, tiny_data  # noqa: F401

OPTS = PromptOptions(top_k=TOP_K, label_key=LABEL_KEY)


def all_rows(directory):
    m = read_manifest(directory)
    parts = [load_file(str(directory / s["file"])) for s in m["shards"]]
    return m, {k: torch.cat([p[k] for p in parts]) for k in parts[0] if not k.startswith("stats.")}


def test_rows_are_mlp_io_of_training_cells_with_positions(neox_dir, tiny_data, tmp_path):
    ad, _, _ = tiny_data
    model, tok = load_model(neox_dir)
    res = harvest(model, tok, ad, tmp_path / "a", HarvestConfig(cells_per_shard=8), OPTS)
    m, rows = all_rows(tmp_path / "a")
    assert m["complete"] and m["rows"] == rows["cell"].numel() and res.shards_written == m["n_shards"] == 4
    assert m["hook_in"] == ["gpt_neox.layers.0.mlp", "gpt_neox.layers.1.mlp"] and m["d_in"] == 32
    cells = set(rows["cell"].tolist())
    assert cells == {i for i in range(40) if i % 5 != 0}  # no held-out cell
    # gene positions agree with gene_token_spans, answer tokens are at the end
    cp = next(iter_cell_prompts(ad, tok, OPTS, split="train"))
    sel = rows["cell"] == cp.index
    assert rows["position"][sel].tolist() == list(range(len(cp.input_ids)))
    ranks = rows["gene_rank"][sel].tolist()
    for r, (s, e) in enumerate(cp.gene_spans):
        assert ranks[s:e] == [r] * (e - s)
    seg = rows["segment"][sel]
    assert int((seg == SEG_ANSWER).sum()) == len(cp.input_ids) - cp.answer_start
    assert int((seg == SEG_GENE).sum()) == sum(e - s for s, e in cp.gene_spans)
    # the stored output is the MLP applied to the stored input (parallel residual: its own ln2(x))
    mlp = adapter_for(model).layer(1).mlp
    x, y = rows["layer_1.in"][:50], rows["layer_1.out"][:50]
    torch.testing.assert_close(mlp(x), y, atol=1e-5, rtol=1e-5)


def test_gene_positions_only_and_gemma2(tiny_data, tmp_path):
    ad, tok, _ = tiny_data
    model = gemma2_model(len(tok))
    harvest(model, tok, ad, tmp_path / "g", HarvestConfig(cells_per_shard=16, positions="genes", layers="1"), OPTS)
    m, rows = all_rows(tmp_path / "g")
    assert m["layers"] == [1] and m["hook_in"] == ["model.layers.1.mlp"]
    assert bool((rows["segment"] == SEG_GENE).all()) and bool((rows["gene_rank"] >= 0).all())
    mlp = adapter_for(model).layer(1).mlp
    torch.testing.assert_close(mlp(rows["layer_1.in"][:20]), rows["layer_1.out"][:20], atol=1e-5, rtol=1e-5)


def test_interrupted_harvest_resumes_without_duplicating(neox_dir, tiny_data, tmp_path):
    ad, _, _ = tiny_data
    model, tok = load_model(neox_dir)
    cfg = HarvestConfig(cells_per_shard=8, batch_size=4)
    harvest(model, tok, ad, tmp_path / "full", cfg, OPTS)
    calls = {"n": 0}

    def boom(cells, tokens):
        calls["n"] += 1
        if calls["n"] == 5:  # in the third shard
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        harvest(model, tok, ad, tmp_path / "part", cfg, OPTS, callback=boom)
    m = read_manifest(tmp_path / "part")
    assert not m["complete"] and len(m["shards"]) == 2
    res = harvest(model, tok, ad, tmp_path / "part", cfg, OPTS)
    assert (res.shards_skipped, res.shards_written) == (2, 2)
    assert sorted(p.name for p in (tmp_path / "part").glob("shard_*.safetensors")) == [f"shard_{i:05d}.safetensors" for i in range(4)]
    assert not list((tmp_path / "part").glob("*.tmp*"))
    m1, r1 = all_rows(tmp_path / "full")
    m2, r2 = all_rows(tmp_path / "part")
    assert m1["acts_hash"] == m2["acts_hash"] and m1["rows"] == m2["rows"]
    for k in r1:
        assert torch.equal(r1[k], r2[k]), k


def test_harvest_into_directory_of_other_model_is_refused(neox_dir, tiny_data, tmp_path):
    ad, tok, _ = tiny_data
    model, _ = load_model(neox_dir)
    harvest(model, tok, ad, tmp_path / "a", HarvestConfig(cells_per_shard=64, max_cells=8), OPTS)
    other = gemma2_model(len(tok))
    with pytest.raises(InputError, match="other settings.*model_hash"):
        harvest(other, tok, ad, tmp_path / "a", HarvestConfig(cells_per_shard=64, max_cells=8), OPTS)


def run_cli(*args):
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "circuitdb", "--hide-progress", *map(str, args)], capture_output=True, text=True, env=env)


def test_cli_layer_out_of_range_exit_2(neox_dir, tiny_data, tmp_path, capsys):
    _, _, h5ad = tiny_data
    code, _, err = cli(capsys, "harvest", "--model", neox_dir, h5ad, "--label-key", LABEL_KEY, "--layers", "0,7", "--out", tmp_path / "x")
    assert code == 2
    assert err.strip().splitlines() == ["error: layer 7 is out of range; the model has layers 0..1"]
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cli_harvest_and_another_models_directory_exit_2(neox_dir, tiny_data, tmp_path, capsys):
    ad, tok, h5ad = tiny_data
    code, _, err = cli(capsys, "harvest", "--model", neox_dir, h5ad, "--label-key", LABEL_KEY, "--max-cells", "6", "--out", tmp_path / "a")
    assert code == 0, err
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["complete"] and m["cells_used"] == 6 and m["sentence_options"]["top_k"] == TOP_K  # the model card's top_k
    from tiny_models import save_model_dir

    other = save_model_dir(gemma2_model(len(tok)), tok, tmp_path / "gemma")
    r = run_cli("harvest", "--model", other, h5ad, "--label-key", LABEL_KEY, "--max-cells", "6", "--out", tmp_path / "a")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "other settings" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_torchrun_two_processes_give_the_same_rows(neox_dir, tiny_data, tmp_path):
    import os

    _, _, h5ad = tiny_data
    args = ["harvest", "--model", neox_dir, h5ad, "--label-key", LABEL_KEY, "--cells-per-shard", "8"]
    r1 = run_cli(*args, "--out", tmp_path / "one")
    assert r1.returncode == 0, r1.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r2 = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
         "-m", "circuitdb", "--hide-progress", *map(str, args), "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env,
    )
    assert r2.returncode == 0, r2.stderr[-2000:]
    m1, a = all_rows(tmp_path / "one")
    m2, b = all_rows(tmp_path / "two")
    assert m1["acts_hash"] == m2["acts_hash"] and m2["complete"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
