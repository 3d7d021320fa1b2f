"""Evaluation on held-out cells, splicing hooks, feature activations as AnnData, and bad input."""

import json

import numpy as np
import pytest
import torch

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import adapter_for
from circuitdb.transcoder.activations import feature_activations, top_genes
from circuitdb.transcoder.common import PromptOptions, iter_cell_prompts, load_model, pad_batch
from circuitdb.transcoder.evaluate import _recovered, bootstrap_recovered, evaluate_transcoders, load_transcoders
from circuitdb.transcoder.hooks import capture_mlp, replace_mlp
from tiny_models import LABEL_KEY, TOP_K, cli, neox_dir, neox_model, neox_pipeline, save_model_dir, tiny_data  # noqa: F401

OPTS = PromptOptions(top_k=TOP_K, label_key=LABEL_KEY)


def test_splice_hook_replaces_only_the_mlp_output(neox_dir, tiny_data):
    ad, _, _ = tiny_data
    model, tok = load_model(neox_dir)
    ad_ = adapter_for(model)
    cells = list(iter_cell_prompts(ad, tok, OPTS, split="heldout", max_cells=3))
    ids, mask = pad_batch(cells, 0)
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=mask).logits
        with replace_mlp(ad_, {0: lambda x, y: y.clone(), 1: lambda x, y: y * 1.0}):
            same = model(input_ids=ids, attention_mask=mask).logits
        with replace_mlp(ad_, {1: lambda x, y: torch.zeros_like(y)}):
            zero = model(input_ids=ids, attention_mask=mask).logits
        after = model(input_ids=ids, attention_mask=mask).logits
        # replacing layer 1's MLP by its own function of the captured input is exact
        with capture_mlp(ad_, [1]) as st, replace_mlp(ad_, {1: lambda x, y: ad_.layer(1).mlp.forward(x)}):
            again = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(same, base)
    torch.testing.assert_close(again, base)
    assert not torch.allclose(zero, base)
    torch.testing.assert_close(after, base)  # hooks were removed
    assert st[1]["in"].shape[-1] == 32


def test_evaluate_held_out(neox_pipeline, tiny_data, capsys, tmp_path):
    model_dir, _, tc_dir = neox_pipeline
    _, _, h5ad = tiny_data
    table = tmp_path / "eval.md"
    code, out, err = cli(capsys, "eval-transcoders", "--model", model_dir, "--transcoders", tc_dir, h5ad, "--label-key", LABEL_KEY, "--json", "--table", table)
    assert code == 0, err
    r = json.loads(out)
    assert r["n_cells"] == 8  # cells 0, 5, ..., 35 of 40
    assert set(r["original"]) >= {"ce", "accuracy"} and set(r["all_layers"]) >= {"ce", "ce_recovered", "kl", "accuracy"}
    assert [row["layer"] for row in r["layers"]] == [0, 1]
    for row in r["layers"]:
        assert set(row) >= {"layer", "fvu", "l0", "dead_fraction", "ce_recovered", "kl"}
        assert 0 <= row["fvu"] < 0.5 and 0 < row["l0"] <= 6 and 0 <= row["dead_fraction"] <= 1 and row["kl"] >= 0
        assert row["kl_recovered"] == pytest.approx(1 - row["kl"] / row["kl_zero_ablated"])
        assert row["ce_recovered"] == pytest.approx(_recovered(row["ce_zero_ablated"], row["ce_spliced"], r["original"]["ce"]))
        assert row["ce_zero_ablated"] != r["original"]["ce"]
        for key in ("ce_recovered", "kl_recovered"):
            lo, hi = row[f"{key}_ci95"]
            assert lo <= hi and lo < row[key] + 1e-9 and hi > row[key] - 1e-9
    assert r["bootstrap"]["resamples"] == 1000 and r["bootstrap"]["unit"] == "held-out cell"
    assert 0 <= r["original"]["accuracy"] <= 1 and 0 <= r["all_layers"]["accuracy"] <= 1
    text = table.read_text()
    assert "| layer | FVU |" in text and "| all |" in text and text.count("\n| ") >= 4
    assert f"{r['layers'][0]['ce_recovered']:.3f} [" in text and "bootstrap interval over held-out cells" in text


def test_bootstrap_interval_of_ce_recovered():
    rng = np.random.default_rng(0)
    n = 200
    tokens = rng.integers(2, 6, n).astype(float)
    orig = rng.uniform(0.1, 0.5, n) * tokens
    abl = orig + rng.uniform(0.5, 1.5, n) * tokens
    # every cell recovers exactly 90%: a degenerate interval at 0.9
    lo, hi = bootstrap_recovered(abl, orig + 0.1 * (abl - orig), orig, tokens, n_boot=300)
    assert lo == pytest.approx(0.9) and hi == pytest.approx(0.9)
    # noisy per-cell recovery: the interval brackets the pooled ratio and narrows with more cells
    spl = orig + rng.uniform(0.0, 0.4, n) * (abl - orig)
    point = _recovered(abl.sum() / tokens.sum(), spl.sum() / tokens.sum(), orig.sum() / tokens.sum())
    lo, hi = bootstrap_recovered(abl, spl, orig, tokens, n_boot=500)
    assert lo < point < hi and hi - lo < 0.1
    lo4, hi4 = bootstrap_recovered(abl[:50], spl[:50], orig[:50], tokens[:50], n_boot=500)
    assert hi4 - lo4 > hi - lo
    assert bootstrap_recovered(abl, spl, orig, tokens, n_boot=500) == (lo, hi)  # seeded
    # ablation that changes nothing: undefined, not a fake interval
    assert all(np.isnan(bootstrap_recovered(orig, spl, orig, tokens, n_boot=100)))


def test_evaluate_matches_a_manual_ce(neox_pipeline, tiny_data):
    model_dir, _, tc_dir = neox_pipeline
    ad, _, _ = tiny_data
    model, tok = load_model(model_dir)
    tset = load_transcoders(tc_dir, model=model)
    r = evaluate_transcoders(model, tok, ad, tset, OPTS, max_cells=3, accuracy=False)
    cells = list(iter_cell_prompts(ad, tok, OPTS, split="heldout", max_cells=3))
    tot, n = 0.0, 0
    with torch.no_grad():
        for c in cells:
            lp = torch.log_softmax(model(input_ids=torch.tensor([c.input_ids])).logits[0], -1)
            for t in range(c.answer_start, len(c.input_ids)):
                tot -= float(lp[t - 1, c.input_ids[t]])
                n += 1
    assert r["original"]["ce"] == pytest.approx(tot / n, rel=1e-5)
    assert r["n_answer_tokens"] == n


def test_feature_activations_anndata(neox_pipeline, tiny_data):
    model_dir, _, tc_dir = neox_pipeline
    ad, _, _ = tiny_data
    model, tok = load_model(model_dir)
    tset = load_transcoders(tc_dir, model=model)
    fa = feature_activations(model, tset, ad, OPTS, tokenizer=tok, reduce="max", gene_mass=True, max_cells=5)
    assert fa.shape == (5, 128) and fa.obs_names[0] == ad.obs_names[0]
    assert list(fa.var.columns) == ["layer", "feature"] and fa.var_names[64] == "L1/0"
    assert LABEL_KEY in fa.obs and fa.obs["heldout"].iloc[0]
    # X equals the max over the cell's gene tokens of the encoded MLP input
    c = next(iter_cell_prompts(ad, tok, OPTS, split="all", with_answer=False))
    with torch.no_grad(), capture_mlp(adapter_for(model), [1], outputs=False) as st:
        model(input_ids=torch.tensor([c.input_ids]))
    acts = tset.transcoders[1].encode(st[1]["in"][0]).detach()
    gpos = [t for t, r in enumerate(c.gene_rank) if r >= 0]
    np.testing.assert_allclose(fa.X[0, 64:].toarray()[0], acts[gpos].max(0).values.numpy(), rtol=1e-5, atol=1e-6)
    from circuitdb.loaders.model import load_model as load_loaded

    # a LoadedModel and the directory; the options default to the harvest's
    mean = feature_activations(load_loaded(model_dir), tc_dir, ad, reduce="mean", max_cells=1)
    assert mean.uns["transcoders"]["params"]["top_k"] == TOP_K
    np.testing.assert_allclose(mean.X[0, 64:].toarray()[0], acts[gpos].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    gm = fa.uns["gene_mass"]
    assert list(gm.columns) == ["layer", "feature", "gene", "mass", "n_cells"] and (gm["mass"] > 0).all()
    f = int(gm.iloc[0]["feature"])
    tg = top_genes(gm, int(gm.iloc[0]["layer"]), f, n=3)
    assert tg["mass"].is_monotonic_decreasing and len(tg) <= 3


def test_transcoders_of_another_width_exit_2(neox_pipeline, tiny_data, tmp_path, capsys):
    _, _, tc_dir = neox_pipeline
    ad, tok, h5ad = tiny_data
    wide = save_model_dir(neox_model(len(tok), d=48), tok, tmp_path / "wide")
    code, _, err = cli(capsys, "eval-transcoders", "--model", wide, "--transcoders", tc_dir, h5ad, "--label-key", LABEL_KEY)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "maps 32 -> 32 but the model's MLP is 48 -> 48" in err


def test_transcoders_of_another_model_and_bad_layer_exit_2(neox_pipeline, tiny_data, tmp_path, capsys):
    _, _, tc_dir = neox_pipeline
    ad, tok, h5ad = tiny_data
    other = save_model_dir(neox_model(len(tok), seed=1), tok, tmp_path / "other")
    code, _, err = cli(capsys, "eval-transcoders", "--model", other, "--transcoders", tc_dir, h5ad, "--label-key", LABEL_KEY)
    assert code == 2 and "were trained on model" in err and len(err.strip().splitlines()) == 1
    model_dir = neox_pipeline[0]
    code, _, err = cli(capsys, "eval-transcoders", "--model", model_dir, "--transcoders", tc_dir, h5ad, "--label-key", LABEL_KEY, "--layers", "2")
    assert code == 2 and "layer 2 is out of range" in err
    with pytest.raises(InputError, match="not a transcoder directory"):
        load_transcoders(tmp_path)
