"""Faithfulness statistics (hand-checkable fake runner) and the ablation hooks (tiny real model)."""

from __future__ import annotations

import pytest
import torch

from circuitdb.attribution.faithfulness import (
    Scores,
    ablate_features,
    ablation_runner,
    active_feature_pool,
    by_layer,
    evaluate_faithfulness,
    random_feature_sets,
    top_features,
)


def linear_runner(weights: dict[tuple[int, int], float], base: float = 10.0, n_cells: int = 4, threshold: float = 5.0):
    """Target logit = base - sum of the ablated features' weights; correct when above threshold."""
    calls = []

    def run(feats):
        calls.append(feats)
        drop = sum(weights.get((layer, i), 0.0) for layer, idx in (feats or {}).items() for i in idx)
        logit = torch.full((n_cells,), base - drop)
        return Scores(logit, logit > threshold)

    return run, calls


CIRCUIT = [(1, 0), (1, 1), (0, 5)]
POOL = [(0, i) for i in range(10, 20)] + [(1, i) for i in range(10, 20)]


def test_hand_computed_drops_and_ratio():
    weights = {f: 3.0 for f in CIRCUIT} | {f: 1.0 for f in POOL}
    run, calls = linear_runner(weights)
    ticks = []
    rows = evaluate_faithfulness(run, CIRCUIT, POOL, cell_type="T", sizes=(2, 5), n_random=20, callback=ticks.append)
    assert len(calls) == len(ticks) == 1 + 2 * 21
    r2, r5 = rows
    assert (r2.n, r2.n_ablated, r2.n_cells) == (2, 2, 4)
    assert r2.circuit_logit_drop == pytest.approx(6.0)
    assert r2.random_logit_drop_mean == pytest.approx(2.0) and r2.random_logit_drop_std == pytest.approx(0.0)
    assert r2.ratio == pytest.approx(3.0)
    assert r2.circuit_acc_drop == pytest.approx(1.0) and r2.random_acc_drop_mean == pytest.approx(0.0)
    assert r2.frac_random_ge == 0.0 and r2.beats_random
    assert r2.baseline_logit == 10.0 and r2.baseline_acc == 1.0
    # n larger than the circuit: capped at its 3 features, random sets of 3 too
    assert r5.n_ablated == 3 and r5.circuit_logit_drop == pytest.approx(9.0)
    assert r5.random_logit_drop_mean == pytest.approx(3.0)
    assert calls[0] is None and calls[1] == {1: [0, 1]}


def test_ratio_none_when_random_does_nothing_and_row_serialises():
    run, _ = linear_runner({f: 1.0 for f in CIRCUIT})
    (row,) = evaluate_faithfulness(run, CIRCUIT, POOL, cell_type="T", sizes=(3,), n_random=5)
    assert row.ratio is None and row.beats_random and row.random_logit_drop_mean == 0.0
    assert set(row.to_dict()) >= {"cell_type", "n", "circuit_logit_drop", "random_logit_drop_mean", "ratio",
                                   "circuit_acc_drop", "random_acc_drop_mean"}


def test_random_sets_deterministic_distinct_and_capped():
    a = random_feature_sets(POOL, 4, 20, seed=7)
    assert a == random_feature_sets(list(reversed(POOL)), 4, 20, seed=7)
    assert all(len(set(s)) == 4 and set(s) <= set(POOL) for s in a)
    assert len({tuple(sorted(s)) for s in a}) > 1
    assert a != random_feature_sets(POOL, 4, 20, seed=8)
    assert all(len(s) == 3 for s in random_feature_sets(POOL[:3], 10, 2, seed=0))


def test_helpers():
    assert by_layer([(1, 3), (0, 2), (1, 1), (1, 3)]) == {0: [2], 1: [1, 3]}
    assert active_feature_pool([[(1, 2), (0, 1)], [(0, 1), (2, 0)]]) == [(0, 1), (1, 2), (2, 0)]


def test_top_features_ranks_by_influence():
    from circuitdb.attribution.aggregate import make_provenance
    from circuitdb.attribution.circuit import Circuit, CircuitNode

    prov = make_provenance(cell_type="T", cells=["a"], method="influence", thresholds={}, model="m", model_hash="h",
                           transcoders="t", transcoder_hash="th", dataset="d", dataset_id="d", version="0")
    nodes = [CircuitNode("target:T", "target", influence=0.0), CircuitNode("gene:CD3E", "gene", gene="CD3E", influence=9.0),
             CircuitNode("feat:1:4", "feature", layer=1, index=4, influence=0.2),
             CircuitNode("feat:0:9", "feature", layer=0, index=9, influence=0.5),
             CircuitNode("feat:1:2", "feature", layer=1, index=2, influence=0.2)]
    c = Circuit(prov, nodes, [])
    assert top_features(c) == [(0, 9), (1, 2), (1, 4)]
    assert top_features(c, 2) == [(0, 9), (1, 2)]


@pytest.fixture(scope="module")
def tiny():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from circuitdb.transcoder.model import Transcoder, TranscoderConfig
    from loaders.adapters import adapter_for

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=32, use_parallel_residual=True)
    model = GPTNeoXForCausalLM(cfg).eval()
    ad = adapter_for(model)
    g = torch.Generator().manual_seed(1)
    tcs = {}
    for layer in range(2):
        tc = Transcoder(TranscoderConfig(d_in=32, d_features=16, activation="relu", k=None))
        tc.reset_parameters(generator=g)
        tcs[layer] = tc
    mlps = {i: ad.layer(i).mlp for i in range(2)}
    ids = torch.randint(0, 40, (3, 7), generator=g)
    return model, mlps, tcs, ids


def test_hook_subtracts_exactly_the_ablated_decoder_rows(tiny):
    model, mlps, tcs, ids = tiny
    seen = {}

    def capture(name):
        def fn(mod, inp, out):
            seen[name] = (inp[0].detach().clone(), out.detach().clone())
        return fn

    with torch.no_grad():
        h = mlps[0].register_forward_hook(capture("clean"))
        clean = model(input_ids=ids).logits
        h.remove()
        x0, out_clean = seen["clean"]
        acts = tcs[0].encode(x0)
        active = sorted(set(torch.nonzero(acts.flatten(0, 1).sum(0)).flatten().tolist()))
        assert len(active) >= 3
        feats = {0: active[:3]}
        with ablate_features(mlps, tcs, feats):
            h = mlps[0].register_forward_hook(capture("ablated"))
            ablated = model(input_ids=ids).logits
            h.remove()
        _, out_abl = seen["ablated"]
        expected = out_clean - acts[..., active[:3]] @ tcs[0].W_dec[active[:3]]
        assert torch.allclose(out_abl, expected, atol=1e-5)
        assert not torch.allclose(clean, ablated)
        # hooks are gone after the block, and features that never fire change nothing
        assert torch.equal(model(input_ids=ids).logits, clean)
        dead = [i for i in range(16) if i not in active]
        if dead:
            with ablate_features(mlps, tcs, {0: dead}):
                assert torch.allclose(model(input_ids=ids).logits, clean, atol=1e-6)


def test_ablation_runner_end_to_end(tiny):
    model, mlps, tcs, ids = tiny
    target = torch.tensor([3, 5, 7])

    def evaluate():
        logits = model(input_ids=ids).logits[:, -1]
        return Scores(logits[torch.arange(3), target], logits.argmax(-1) == target)

    runner = ablation_runner(mlps, tcs, evaluate)
    base = runner(None)
    all_feats = {0: list(range(16)), 1: list(range(16))}
    rows = evaluate_faithfulness(runner, [(1, i) for i in range(16)], [(0, i) for i in range(16)], cell_type="x",
                                 sizes=(4,), n_random=3)
    assert rows[0].n_cells == 3
    assert torch.equal(runner(None).target_logit, base.target_logit)
    assert not torch.allclose(runner(all_feats).target_logit, base.target_logit)


def test_answer_scores_right_padding_matches_single_prompts(tiny):
    from circuitdb.attribution.faithfulness import answer_scores

    model, _, _, ids = tiny

    class Tok:
        pad_token_id = 0

    prompts = [ids[0, :7].tolist(), ids[1, :4].tolist(), ids[2, :6].tolist()]
    with torch.no_grad():
        s = answer_scores(model, Tok(), prompts, target_token=5, competitors=[3, 5, 9], batch_size=2)
        for i, p in enumerate(prompts):
            logits = model(input_ids=torch.tensor([p])).logits[0, -1]
            assert s.target_logit[i].item() == pytest.approx(logits[5].item(), abs=1e-5)
            assert bool(s.correct[i]) == bool(logits[5] > logits[3] and logits[5] > logits[9])
