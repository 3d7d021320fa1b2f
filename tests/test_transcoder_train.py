"""Training: correct sparse gradients, exact resume after a kill, NaN handling, folded normalisation."""

import json

import pytest
import torch
import torch.nn.functional as F

from circuitdb.transcoder import train as train_mod
from circuitdb.transcoder.model import Transcoder
from circuitdb.transcoder.train import (
    ActivationStore, TrainConfig, TrainingDiverged, TrainingInterrupted, _topk, _topk_loss_and_grads, export_transcoder, init_training, optimizer_step, resample_dead_features, train_transcoders,
)
from tiny_models import cli, neox_dir, neox_pipeline, tiny_data  # noqa: F401


@pytest.mark.parametrize("n,d,f,k,skip,n_dead", [(40, 12, 48, 4, True, 5), (33, 10, 30, 3, False, 9), (64, 16, 96, 5, False, 0), (50, 8, 200, 6, True, 20)])
def test_analytic_topk_gradients_match_dense_autograd(n, d, f, k, skip, n_dead):
    torch.manual_seed(0)
    cfg = TrainConfig(d_features=f, k=k, skip=skip, auxk_alpha=0.1)
    p = {"W_enc": torch.randn(f, d), "b_enc": torch.randn(f), "W_dec": torch.randn(f, d), "b_dec": torch.randn(d)}
    if skip:
        p["W_skip"] = torch.randn(d, d)
    x, y = torch.randn(n, d), torch.randn(n, d)
    dead = torch.zeros(f, dtype=torch.bool)
    dead[torch.randperm(f)[:n_dead]] = True
    loss, metrics, fired, grads = _topk_loss_and_grads(p, x, y, cfg, dead)
    # reference: dense pre-activations, dense TopK and AuxK codes, plain autograd
    q = {name: v.clone().requires_grad_(True) for name, v in p.items()}
    pre = F.linear(x, q["W_enc"], q["b_enc"])
    v, i = pre.topk(k, -1)
    acts = torch.zeros_like(pre).scatter(1, i, torch.relu(v))
    e = y - (acts @ q["W_dec"] + q["b_dec"] + (x @ q["W_skip"].T if skip else 0))
    var = (y - y.mean(0)).pow(2).sum()
    ref = e.pow(2).sum() / var
    fvu = float(ref)
    if n_dead:
        va, ia = pre.masked_fill(~dead, -torch.inf).topk(min(d // 2, n_dead), -1)
        e_hat = torch.zeros_like(pre).scatter(1, ia, torch.relu(va)) @ q["W_dec"]
        ref = ref + 0.1 * min(n_dead / (d // 2), 1.0) * (e_hat - e.detach()).pow(2).sum() / var
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-5) and metrics["fvu"] == pytest.approx(fvu, rel=1e-5)
    assert sorted(grads) == sorted(q)
    for name in q:
        torch.testing.assert_close(grads[name], q[name].grad, msg=name)
    assert torch.equal(fired, (acts > 0).any(0))


@pytest.mark.parametrize("f,k", [(768, 16), (96, 5), (30, 3), (8192, 32)])
def test_two_stage_topk_selects_the_exact_top_k(f, k):
    torch.manual_seed(1)
    pre = torch.randn(300, f)
    pre[:5] = pre[:5].round()  # many exact ties
    v, i = _topk(pre, k)
    ref = pre.topk(k, dim=-1).values
    torch.testing.assert_close(v.sort(-1).values, ref.sort(-1).values, rtol=0, atol=0)
    assert torch.equal(pre.gather(1, i), v) and bool((i.sort(-1).values.diff(dim=-1) > 0).all())


@pytest.mark.parametrize("activation,resample_every", [("topk", 0), ("jumprelu", 0), ("topk", 3)])
def test_resume_after_kill_gives_identical_weights(neox_pipeline, tmp_path, activation, resample_every):
    _, acts, _ = neox_pipeline
    cfg = TrainConfig(d_features=48, k=4, batch_size=128, steps=14, checkpoint_every=5, dead_after_rows=100 if resample_every else 300, activation=activation, buffer_rows=1500,
                      resample_every=resample_every)
    resampled: list[float] = []
    train_transcoders(acts, tmp_path / "full", cfg, layers="1", callback=lambda layer, step, total, m: resampled.append(m.get("resampled", 0.0)))
    assert (sum(resampled) > 0) == bool(resample_every)
    with pytest.raises(TrainingInterrupted):
        train_transcoders(acts, tmp_path / "killed", cfg, layers="1", max_steps_this_run=7)
    assert not (tmp_path / "killed" / "layer_1" / "transcoder.safetensors").exists()
    results, _ = train_transcoders(acts, tmp_path / "killed", cfg, layers="1")
    assert results[0].resumed_from == 7
    a = Transcoder.load(tmp_path / "full" / "layer_1").state_tensors()
    b = Transcoder.load(tmp_path / "killed" / "layer_1").state_tensors()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # a killed run resumed by a callback-raised interrupt, mid-checkpoint interval, too
    def stop(layer, step, total, m):
        if step == 12:
            raise TrainingInterrupted("kill")
    with pytest.raises(TrainingInterrupted):
        train_transcoders(acts, tmp_path / "cb", cfg, layers="1", callback=stop)
    res, _ = train_transcoders(acts, tmp_path / "cb", cfg, layers="1")
    assert res[0].resumed_from == 10
    c = Transcoder.load(tmp_path / "cb" / "layer_1").state_tensors()
    assert all(torch.equal(a[k], c[k]) for k in a)
    # a finished layer is skipped on rerun
    res, manifest = train_transcoders(acts, tmp_path / "cb", cfg, layers="1")
    assert res[0].skipped and manifest["layers"] == [1]


@pytest.mark.parametrize("activation", ["topk", "relu"])
def test_resampling_revives_planted_dead_features(activation):
    torch.manual_seed(0)
    d, f, k, n, batch = 16, 64, 4, 4096, 256
    x = torch.randn(n, d) @ torch.randn(d, d) / 4
    y = torch.tanh(x @ torch.randn(d, d))
    planted = torch.arange(0, f, 4)

    def train(resample: bool) -> tuple[float, float]:
        cfg = TrainConfig(d_features=f, k=k, activation=activation, l1_coeff=1e-4, batch_size=batch, auxk_alpha=0.0, dead_after_rows=4 * batch,
                          lr=3e-3, lr_warmup_steps=0, lr_decay=False)
        p, opt, since = init_training(cfg, d, d, 0, y.mean(0), x.mean(0))
        with torch.no_grad():  # planted dead: these features can never fire
            p["b_enc"][planted] = -1e3
        for step in range(90):
            rows = torch.arange(step * batch, (step + 1) * batch) % n
            optimizer_step(p, opt, x[rows], y[rows], cfg, since)
            if resample and (step + 1) % 30 == 0:
                resample_dead_features(p, opt, x[rows], y[rows], cfg, since, torch.Generator().manual_seed(step))
        with torch.no_grad():
            pre = F.linear(x, p["W_enc"], p["b_enc"])
            if activation == "topk":
                v, i = pre.topk(k, -1)
                acts = torch.zeros_like(pre).scatter(1, i, torch.relu(v))
            else:
                acts = torch.relu(pre)
        alive = (acts[:, planted] > 0).any(0).float().mean()
        fvu = float((acts @ p["W_dec"] + p["b_dec"] - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
        return float(alive), fvu

    alive_off, fvu_off = train(False)
    alive_on, fvu_on = train(True)
    assert alive_off == 0.0
    assert alive_on >= 0.75
    assert fvu_on < 1.0 and fvu_on <= fvu_off * 1.1


def test_training_learns_and_saved_transcoder_maps_raw_io(neox_pipeline):
    _, acts, tc_dir = neox_pipeline
    store = ActivationStore(acts)
    x, y = store.load([0, 1], 0, "all")
    tc = Transcoder.load(tc_dir / "layer_0")
    out = tc(x)
    fvu = float((out.out - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    assert fvu < 0.2
    assert torch.all((out.acts > 0).sum(-1) <= 6)
    manifest = json.loads((tc_dir / "transcoders.json").read_text())
    assert manifest["layers"] == [0, 1] and manifest["model_hash"] == store.manifest["model_hash"]
    assert len(manifest["transcoder_set_hash"]) == 16
    assert tc.cfg.data_hash == store.manifest["acts_hash"] and tc.cfg.hook_in == "gpt_neox.layers.0.mlp"


def test_folding_the_scales_is_exact():
    torch.manual_seed(0)
    cfg = TrainConfig(d_features=20, k=5, skip=True)
    p = {"W_enc": torch.randn(20, 8), "b_enc": torch.randn(20), "W_dec": torch.randn(20, 8), "b_dec": torch.randn(8), "W_skip": torch.randn(8, 8)}
    s_in, s_out = 3.0, 0.25
    tc = export_transcoder(p, cfg, (s_in, s_out), d_in=8, d_out=8, layer=0, meta={})
    x = torch.randn(10, 8)
    pre = F.linear(x * s_in, p["W_enc"], p["b_enc"])
    v, i = pre.topk(5, -1)
    y_norm = F.embedding_bag(i, p["W_dec"], per_sample_weights=torch.relu(v), mode="sum") + p["b_dec"] + (x * s_in) @ p["W_skip"].T
    torch.testing.assert_close(tc(x).out, y_norm / s_out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "jumprelu"])
def test_other_activations_train(neox_pipeline, tmp_path, activation):
    _, acts, _ = neox_pipeline
    cfg = TrainConfig(d_features=48, activation=activation, l1_coeff=1e-3, batch_size=256, epochs=4)
    res, _ = train_transcoders(acts, tmp_path / activation, cfg, layers="0")
    assert res[0].metrics["fvu"] < 0.5 and res[0].metrics["l0"] > 0
    tc = Transcoder.load(tmp_path / activation / "layer_0")
    assert tc.cfg.activation == activation and (tc.threshold is not None) == (activation == "jumprelu")


def test_nan_loss_stops_keeps_last_checkpoint_exit_2(neox_pipeline, tmp_path, monkeypatch, capsys):
    _, acts, _ = neox_pipeline
    real = train_mod.iter_batches

    def poisoned(*args, **kwargs):  # the 9th batch holds a NaN: the loss becomes NaN at step 8
        for step, x, y in real(*args, **kwargs):
            yield step, (x * float("nan") if step == 8 else x), y

    monkeypatch.setattr(train_mod, "iter_batches", poisoned)
    code, _, err = cli(capsys, "train-transcoders", "--acts", acts, "--layers", "0", "--features", "32", "--k", "4",
                       "--batch-size", "128", "--steps", "20", "--checkpoint-every", "5", "--out", tmp_path / "o")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "nan" in lines[0] and "last good checkpoint (step 5)" in lines[0]
    state = torch.load(tmp_path / "o" / "layer_0" / "train_state.pt", weights_only=False)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in state["params"].values())


def test_bad_training_input(neox_pipeline, tmp_path, capsys):
    _, acts, _ = neox_pipeline
    code, _, err = cli(capsys, "train-transcoders", "--acts", acts, "--layers", "3", "--out", tmp_path / "o")
    assert code == 2 and "layer 3 is out of range" in err
    code, _, err = cli(capsys, "train-transcoders", "--acts", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "not an activations directory" in err
    code, _, err = cli(capsys, "train-transcoders", "--acts", acts, "--features", "8", "--k", "9", "--out", tmp_path / "o")
    assert code == 2 and "--k must be in 1..8" in err
    code, _, err = cli(capsys, "train-transcoders", "--acts", acts, "--resample-every", "-5", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--resample-every must be 0 (off)" in err
    with pytest.raises(TrainingInterrupted):
        train_transcoders(acts, tmp_path / "r", TrainConfig(d_features=16, k=2, steps=3, batch_size=64), layers="0", max_steps_this_run=1)
    with pytest.raises(Exception, match="other settings"):
        train_transcoders(acts, tmp_path / "r", TrainConfig(d_features=24, k=2, steps=3, batch_size=64), layers="0")


def test_diverged_is_input_error():
    assert issubclass(TrainingDiverged, Exception) and TrainingDiverged("x").exit_code == 2


def test_export_set_to_float16(neox_pipeline, tmp_path):
    from circuitdb.transcoder.evaluate import load_transcoders
    from circuitdb.transcoder.train import export_set

    _, acts, tc_dir = neox_pipeline
    m = export_set(tc_dir, tmp_path / "half")
    assert m["weights_dtype"] == "float16" and not (tmp_path / "half" / "layer_0" / "train_state.pt").exists()
    a, b = load_transcoders(tc_dir), load_transcoders(tmp_path / "half")
    assert b.set_hash != a.set_hash and b.out_mean[1].shape == (32,)
    x, _ = ActivationStore(acts).load([0], 1, "all")
    torch.testing.assert_close(b.transcoders[1](x).out, a.transcoders[1](x).out, atol=2e-2, rtol=2e-2)
