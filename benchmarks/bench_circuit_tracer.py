"""Side by side against circuit-tracer: seconds and peak memory of one attribution graph.

Claim (issue 6): on the same model, transcoders and feature budget, circuitdb's
``attribute()`` is at least 5x faster than circuit-tracer at 450 tokens, with peak
memory at most 4 GiB (and at least 10x the straightforward baseline).

Setting (identical for both engines, built offline from a config, seeded):

* a random GPT-NeoX model as C2S-Pythia (parallel residual, LayerNorm with bias,
  rotary on 25% of the head dims): 4 layers, d_model 256, 4 heads, d_mlp 1024,
  vocab 50304. Weights ~ N(0, 1/d_model), LayerNorm weights 1 + N(0, 0.1^2) and all
  biases random (so both engines must handle them); the unembedding is centred over
  the vocabulary (see "conventions" below);
* one random ReLU transcoder per layer, 16,384 features, reading the MLP input
  (after ``post_attention_layernorm``) and writing the MLP output: unit-norm decoder
  rows, encoder = decoder transposed, and one encoder bias per layer calibrated on a
  separate random prompt so that about 44 features are active per position;
* prompts of random token ids starting with a special token (id 0), so
  circuit-tracer does not prepend its own BOS and both see the same tokens;
* one attribution target, the model's top next-token logit;
  ``max_feature_nodes=2000``; 2 threads.

The model is saved with ``save_pretrained`` and the transcoders with circuitdb's
``Transcoder.save`` (circuit-tracer's keys ``W_enc``/``W_dec``/``b_enc``/``b_dec``).
circuitdb loads them with its own loaders; the circuit-tracer worker rebuilds the
same Hugging Face model (its transformers version) from the same weights, converts
it with TransformerLens' ``convert_neox_weights`` into a ``HookedTransformer`` with
the matching ``HookedTransformerConfig`` (parallel attention/MLP, LN, rotary), and
builds a ``TranscoderSet`` of ``SingleLayerTranscoder`` in memory
(``feature_input_hook="mlp.hook_in"``, ``feature_output_hook="mlp.hook_out"``).

Each engine runs in a fresh subprocess (ours at every length first, then circuit-tracer), so peak RSS is its own; seconds are wall
clock, ``cpu`` the process CPU time (less sensitive to a shared machine); ``peak`` is the
process's ``ru_maxrss`` (everything, set-up included); ``attr`` is the RSS sampled
every 5 ms during the attribution call alone.

**circuit-tracer venv.** circuit-tracer v0.4.1 (decoderesearch/circuit-tracer, tag
v0.4.1) is not on PyPI (the PyPI name ``circuit-tracer`` holds a fork at 0.5.0) and
pins ``transformers<=4.57.3``, which conflicts with circuitdb's transformers 5, so it
is not an extra of this project: it lives in its own venv that reuses the system
torch::

    python3 -m venv --system-site-packages /work/ctvenv
    /work/ctvenv/bin/pip install "transformers==4.57.3" "huggingface_hub<1.0" "datasets==4.0.0" wandb
    /work/ctvenv/bin/pip install --no-deps "transformer-lens==2.16.1" "beartype==0.14.1" \\
        "better-abc==0.0.3" fancy-einsum jaxtyping wadler-lindig typeguard
    /work/ctvenv/bin/pip install --no-deps <a checkout of circuit-tracer at tag v0.4.1>

(``--no-deps`` because transformer-lens 2.16 pins numpy<2 and circuit-tracer pins
nnsight, neither needed here: the TransformerLens backend runs fine on numpy 2.)
Pass its python with ``--ct-python`` (default ``/work/ctvenv/bin/python``).

**Conventions (checked by ``--check``).** circuit-tracer (a) zeroes every feature
at position 0 (its BOS position; their activity goes into its error nodes) and (b)
attributes *demeaned* logits, ``logit[t] - mean(logits)``. circuitdb keeps
position-0 features and attributes the raw logit. With the centred unembedding used
here the mean logit is exactly 0, so (b) vanishes; the check compares edges between
nodes at positions >= 1. circuit-tracer has no bias nodes (biases are constants in
its graph); circuitdb has them.

Also in the run: the straightforward baseline (``--baseline-rows``: one forward of
circuitdb's frozen model with autograd, one ``autograd.grad`` per graph row, timed on
every row by default (a few expensive deep rows make a sample's mean noisy); its edges
are checked against ``attribute()``'s).
circuitdb runs with ``heads=False, pairs=False`` by default, as circuit-tracer computes
neither per-head splits nor feature-pair virtual weights; ``--heads``/``--pairs`` add them.

Memory: circuit-tracer's forward on ``batch_size`` copies of the prompt dominates its
peak (about 20 GiB at 450 tokens with its default 512), so at >= 400 tokens it runs only
when ``--min-free-gib`` is available, and every worker is killed if the machine's
available memory falls below ``--guard-gib``. ``--ct-batch-size 256`` roughly halves it.

Usage::

    python benchmarks/bench_circuit_tracer.py --check             # agreement on a small prompt
    python benchmarks/bench_circuit_tracer.py --check --raw-unembed   # shows the demeaned-logit convention
    flock /work/bench.lock python benchmarks/bench_circuit_tracer.py --tokens 100,200
    flock /work/bench.lock python benchmarks/bench_circuit_tracer.py --tokens 450   # needs ~21 GiB available
    flock /work/bench.lock python benchmarks/bench_circuit_tracer.py --tokens 450 --ct-batch-size 256 --min-free-gib 14
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakRSS, rss_now  # noqa: E402  (benchmarks/ is not a package)

GIB = 1 << 30
#: the comparison setting of issue 6 (a C2S-Pythia-shaped NeoX model, GPT-2-small-sized transcoders)
SETTING: dict[str, Any] = {
    "n_layers": 4, "d_model": 256, "n_heads": 4, "d_mlp": 1024, "vocab": 50304, "max_positions": 2048,
    "rotary_pct": 0.25, "features": 16384, "active_per_position": 44.0, "seed": 0,
}
BOS_ID = 0  # a special token: circuit-tracer keeps it as the first token instead of prepending one
CT_PYTHON = "/work/ctvenv/bin/python"


# =========================================================================== memory
def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# =========================================================================== the setting (circuitdb's venv)
def prompt_ids(n_tokens: int, vocab: int, seed: int) -> list[int]:
    """``n_tokens`` random token ids, the first one the special token ``BOS_ID``."""
    import torch

    g = torch.Generator().manual_seed(10_000 + seed)
    return [BOS_ID] + torch.randint(2, vocab, (n_tokens - 1,), generator=g).tolist()


def _neox_fields(cfg: Any) -> dict[str, Any]:
    """The config values a re-implementation needs (transformers 5 keeps rotary settings in ``rope_parameters``)."""
    rope = getattr(cfg, "rope_parameters", None) or {}
    rotary_pct = rope.get("partial_rotary_factor", getattr(cfg, "rotary_pct", None))
    theta = rope.get("rope_theta", getattr(cfg, "rotary_emb_base", getattr(cfg, "rope_theta", None)))
    return {"hidden_act": cfg.hidden_act, "layer_norm_eps": float(cfg.layer_norm_eps), "rotary_pct": float(rotary_pct),
            "rope_theta": float(theta), "use_parallel_residual": bool(cfg.use_parallel_residual),
            "attention_bias": bool(getattr(cfg, "attention_bias", True))}


def build_setting(out_dir: str | Path, *, n_layers: int = 4, d_model: int = 256, n_heads: int = 4, d_mlp: int = 1024,
                  vocab: int = 50304, max_positions: int = 2048, rotary_pct: float = 0.25, features: int = 16384,
                  active_per_position: float = 44.0, seed: int = 0, calib_tokens: int = 128,
                  centre_unembed: bool = True) -> dict[str, Any]:
    """Build and save the comparison model and transcoders under ``out_dir``.

    Writes ``model/`` (Hugging Face ``save_pretrained``), ``transcoders/layer_{i}/``
    (circuitdb ``Transcoder.save``) and ``setting.json`` (shapes, config values and the
    measured active features per position on the calibration prompt).

    Parameters
    ----------
    out_dir
        Directory to write into (created).
    n_layers, d_model, n_heads, d_mlp, vocab, max_positions, rotary_pct
        The GPT-NeoX config (parallel residual, LayerNorm with bias).
    features, active_per_position
        Transcoder width, and the mean number of active ReLU features per position the
        per-layer encoder bias is calibrated to.
    seed
        Seeds the weights and the calibration prompt.
    calib_tokens
        Length of the calibration prompt.
    centre_unembed
        Centre the unembedding over the vocabulary, so the mean logit is 0 and
        circuit-tracer's demeaned logit equals the raw logit.

    Returns
    -------
    dict
        The contents of ``setting.json``.
    """
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from circuitdb.loaders.adapters import adapter_for
    from circuitdb.transcoder.hooks import capture_mlp
    from circuitdb.transcoder.model import Transcoder, TranscoderConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                        intermediate_size=d_mlp, rotary_pct=rotary_pct, max_position_embeddings=max_positions,
                        use_parallel_residual=True, tie_word_embeddings=False, attention_bias=True,
                        initializer_range=d_model ** -0.5, attn_implementation="eager")
    model = GPTNeoXForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        W_U = model.get_output_embeddings().weight  # (vocab, d): centred over the vocabulary -> the mean logit is 0
        if centre_unembed:
            W_U.sub_(W_U.mean(0, keepdim=True))
    model.save_pretrained(out / "model")

    # calibrate one encoder bias per layer on a separate prompt
    calib = torch.tensor(prompt_ids(calib_tokens, vocab, seed=10_000 + seed))
    with capture_mlp(adapter_for(model), list(range(n_layers)), outputs=False) as captured, torch.no_grad():
        model(calib[None])
    mlp_in = {i: c["in"][0] for i, c in captured.items()}
    q = 1.0 - active_per_position / features
    active = []
    for layer in range(n_layers):
        tc = Transcoder(TranscoderConfig(d_in=d_model, d_features=features, activation="relu", k=None, layer=layer,
                                         hook_in=f"gpt_neox.layers.{layer}.mlp", hook_out=f"gpt_neox.layers.{layer}.mlp"))
        tc.reset_parameters(g)
        with torch.no_grad():
            pre = mlp_in[layer] @ tc.W_enc
            thr = torch.quantile(pre.flatten()[torch.randperm(pre.numel(), generator=g)[: 1 << 24]], q)
            tc.b_enc.fill_(-float(thr))
            tc.b_dec.copy_(0.05 * torch.randn(d_model, generator=g))
            active.append(float((tc.encode(mlp_in[layer]) > 0).sum(-1).float().mean()))
        tc.save(out / "transcoders" / f"layer_{layer}")
    info = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_mlp": d_mlp, "vocab": vocab,
            "max_positions": max_positions, "features": features, "seed": seed, "centre_unembed": centre_unembed,
            **_neox_fields(model.config),
            "active_per_position_calibration": active}
    (out / "setting.json").write_text(json.dumps(info, indent=2))
    return info


# =========================================================================== circuitdb worker
def _worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from circuitdb.attribution.attribute import attribute
    from circuitdb.attribution.replacement import ReplacementModel, load_transcoders

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    d = Path(args.setting)
    info = json.loads((d / "setting.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(d / "model", local_files_only=True, dtype=torch.float32).eval()
    rm = ReplacementModel(model, load_transcoders(d / "transcoders"))
    ids = torch.tensor(prompt_ids(args.n_tokens, info["vocab"], args.prompt_seed))
    logits = model(ids[None]).logits[0, -1]
    mfn = None if args.max_feature_nodes <= 0 else args.max_feature_nodes
    base = rss_now()
    secs = cpu = float("inf")
    with PeakRSS() as mem:
        for _ in range(max(1, args.repeat)):  # best of --repeat (the first call in a process also pays one-time set-up)
            g = None
            t0, c0 = time.perf_counter(), time.process_time()
            g = attribute(ids, rm, target="top", max_feature_nodes=mfn, heads=args.heads, pairs=args.pairs)
            secs, cpu = min(secs, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    res: dict[str, Any] = {"seconds": secs, "cpu_seconds": cpu, "peak_rss": _max_rss(), "attr_peak_rss": mem.peak, "model_rss": base,
                           "tokens": int(ids.numel()), "active": int(g.metadata.get("n_active_features", -1)),
                           "kept": sum(1 for nd in g.nodes if nd.kind == "feature"),
                           "target_token": int(g.metadata["target"]["token_id"])}
    if args.baseline_rows != 0:  # after the peak above was read
        res["baseline"] = _baseline(rm, ids, g, args.baseline_rows, args.repeat)
    if args.dump:
        feats = [(i, nd) for i, nd in enumerate(g.nodes) if nd.kind == "feature"]
        tnode = int(g.indices("target")[0])
        rows = [i for i, _ in feats] + [tnode]
        torch.save({"logits": logits.detach(), "features": torch.tensor([[nd.layer, nd.pos, nd.index] for _, nd in feats]),
                    "activations": torch.tensor([nd.activation for _, nd in feats]),
                    "adjacency": g.adjacency[rows][:, [i for i, _ in feats]].clone(),
                    "target_token": res["target_token"]}, args.dump)
    return res


def _baseline(rm: Any, ids: Any, g: Any, n_rows: int, repeat: int = 1) -> dict[str, Any]:
    """The straightforward baseline: one autograd pass per graph row, timed on ``n_rows`` of them.

    One forward of the frozen model (``FrozenRun.linear_forward``) with autograd from
    leaves at every source (feature activations, errors, embeddings), then one
    ``torch.autograd.grad`` per row: the target logit, and every kept feature (``n_rows < 0``) or an
    even sample of ``n_rows - 1`` of them (best of ``repeat``). Seconds for the whole graph = forward
    + target row + mean feature row x kept features. Its feature -> row edges are checked against
    ``attribute()``'s on an even sample of at most ~32 rows.
    """
    import torch

    tok = int(g.metadata["target"]["token_id"])
    with torch.enable_grad():
        t0, c0 = time.perf_counter(), time.process_time()
        run = rm.run(ids, all_logits=False)  # the target needs only the last position's logits
        acts = [L.feat_act.clone().requires_grad_(True) for L in run.layers]
        for L in run.layers:
            L.error = L.error.clone().requires_grad_(True)
        run.x0 = run.x0.clone().requires_grad_(True)
        leaves = acts + [L.error for L in run.layers] + [run.x0]
        resid, mlp_ins, _ = run.linear_forward(acts)
        fn = run.final_norm
        y = fn.apply(resid[-1])[-1] + (fn.bias if fn.bias is not None else 0)
        target = y @ run.W_U[:, tok] + (run.b_U[tok] if run.b_U is not None else 0)
        fwd, fwd_cpu = time.perf_counter() - t0, time.process_time() - c0
        where = [{(p, i): j for j, (p, i) in enumerate(zip(L.feat_pos.tolist(), L.feat_idx.tolist()))} for L in run.layers]
        feats = [(k, nd) for k, nd in enumerate(g.nodes) if nd.kind == "feature"]
        tnode = int(g.indices("target")[0])
        stride = max(1, len(feats) // max(1, n_rows - 1))
        rows = []
        for k, nd in (feats if n_rows < 0 else feats[::stride][: n_rows - 1]):
            L = run.layers[nd.layer]
            rows.append((k, mlp_ins[nd.layer][nd.pos] @ L.W_enc[:, nd.index] + L.b_enc[nd.index]))
        t_target = c_target = t_feat = c_feat = float("inf")
        every = max(1, (len(rows) + 1) // 32)  # edges checked on an even sample of at most ~32 rows; the other
        for _ in range(max(1, repeat)):  # rows' gradients are dropped as they come (best of --repeat, as for attribute())
            t1, c1 = time.perf_counter(), time.process_time()
            check = [((tnode, None), torch.autograd.grad(target, leaves, retain_graph=True, allow_unused=True))]
            t_target, c_target = min(t_target, time.perf_counter() - t1), min(c_target, time.process_time() - c1)
            t2, c2 = time.perf_counter(), time.process_time()
            for j, row in enumerate(rows, 1):
                gr = torch.autograd.grad(row[1], leaves, retain_graph=True, allow_unused=True)
                if j % every == 0:
                    check.append((row, gr))
            t_feat = min(t_feat, (time.perf_counter() - t2) / max(1, len(rows)))
            c_feat = min(c_feat, (time.process_time() - c2) / max(1, len(rows)))
    diff = scale = 0.0
    for (k, _), gr in check:
        for src, nd in feats:
            gl = gr[nd.layer]
            j = where[nd.layer][(nd.pos, nd.index)]
            e = float(gl[j] * acts[nd.layer][j]) if gl is not None else 0.0
            diff, scale = max(diff, abs(e - float(g.adjacency[k, src]))), max(scale, abs(e))
    return {"forward_s": fwd, "target_row_s": t_target, "feature_row_s": t_feat, "rows_timed": len(rows) + 1,
            "seconds": fwd + t_target + t_feat * len(feats), "cpu_seconds": fwd_cpu + c_target + c_feat * len(feats),
            "max_edge_diff": diff, "max_edge": scale}


# =========================================================================== circuit-tracer worker (its venv)
def _ct_model(setting: Path):  # noqa: ANN202
    """The circuit-tracer replacement model of the setting (runs under circuit-tracer's transformers)."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet

    info = json.loads((setting / "setting.json").read_text())
    L, d, H, V = info["n_layers"], info["d_model"], info["n_heads"], info["vocab"]
    hf_cfg = GPTNeoXConfig(vocab_size=V, hidden_size=d, num_hidden_layers=L, num_attention_heads=H,
                           intermediate_size=info["d_mlp"], rotary_pct=info["rotary_pct"], rotary_emb_base=info["rope_theta"],
                           max_position_embeddings=info["max_positions"], layer_norm_eps=info["layer_norm_eps"],
                           hidden_act=info["hidden_act"], use_parallel_residual=True, tie_word_embeddings=False,
                           attention_bias=info["attention_bias"], attn_implementation="eager")
    hf = GPTNeoXForCausalLM(hf_cfg).eval()
    sd = load_file(str(setting / "model" / "model.safetensors"))
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if "rotary" not in k and "masked_bias" not in k and not k.endswith(".bias_mask")]:
        raise SystemExit(f"weights do not match the HF model: missing {missing}, unexpected {unexpected}")
    d_head = d // H
    tl_cfg = HookedTransformerConfig(
        d_model=d, d_head=d_head, n_heads=H, d_mlp=info["d_mlp"], n_layers=L, n_ctx=info["max_positions"],
        eps=info["layer_norm_eps"], d_vocab=V, d_vocab_out=V, act_fn=info["hidden_act"], use_attn_scale=True,
        use_local_attn=False, scale_attn_by_inverse_layer_idx=False, parallel_attn_mlp=True,
        positional_embedding_type="rotary", rotary_adjacent_pairs=False, rotary_dim=round(info["rotary_pct"] * d_head),
        rotary_base=int(info["rope_theta"]), normalization_type="LN", original_architecture="GPTNeoXForCausalLM",
        model_name="neox-random", tokenizer_name=None, default_prepend_bos=False, device="cpu", dtype=torch.float32,
        init_weights=False,
    )
    tl_sd = {k: v.detach().clone() for k, v in convert_neox_weights(hf, tl_cfg).items()}

    tcs = {}
    for layer in range(L):
        t = load_file(str(setting / "transcoders" / f"layer_{layer}" / "transcoder.safetensors"))
        tc = SingleLayerTranscoder(d, t["W_enc"].shape[1], torch.nn.ReLU(), layer, device=torch.device("cpu"), dtype=torch.float32)
        with torch.no_grad():
            tc.W_enc.copy_(t["W_enc"].T)  # circuit-tracer keeps W_enc as (d_transcoder, d_model) in memory
            tc.W_dec.copy_(t["W_dec"])
            tc.b_enc.copy_(t["b_enc"])
            tc.b_dec.copy_(t["b_dec"])
        tcs[layer] = tc
    tset = TranscoderSet(tcs, feature_input_hook="mlp.hook_in", feature_output_hook="mlp.hook_out")

    # what TransformerLensReplacementModel.from_config does, with the converted weights loaded in between
    model = TransformerLensReplacementModel(tl_cfg)
    missing, unexpected = model.load_state_dict(tl_sd, strict=False)
    bad = [k for k in missing if not k.split(".")[-1] in ("IGNORE", "mask", "rotary_sin", "rotary_cos")]
    if unexpected or bad:
        raise SystemExit(f"TransformerLens weights do not match: missing {bad}, unexpected {unexpected}")
    model._configure_replacement_model(tset)
    vocab = {"<|endoftext|>": BOS_ID, "<unk>": 1, **{f"t{i}": i for i in range(2, V)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    model.tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                              pad_token="<|endoftext|>", unk_token="<unk>")
    return model, hf, info


def _ct_checks(model: Any, graph: Any, n_feature_samples: int) -> dict[str, Any]:
    """circuit-tracer's own edge checks (its test-suite's criteria), run on this NeoX model.

    For error and token nodes (positions >= 1) and a sample of feature nodes: perturb the
    node in the frozen model (attention patterns, LayerNorm scales and transcoder
    outputs frozen, circuit-tracer's ``setup_intervention_with_freeze`` /
    ``feature_intervention``) and compare the change in every active feature's
    pre-activation and in each demeaned target logit with the graph's column.
    Returns the worst errors and how many columns passed within circuit-tracer's
    tolerances (activations 1e-3 / 5e-4 abs, logits 1e-5 abs + 1e-3 rel).
    """
    import torch

    s = graph.input_tokens
    adj = graph.adjacency_matrix
    af = graph.active_features
    n_f = af.shape[0]
    logit_tokens = graph.logit_token_ids
    ctx = model.setup_attribution(s)
    err_vecs, tok_vecs = ctx.error_vectors, ctx.token_vectors
    logits, cache = model.get_activations(s, apply_activation_function=False)
    logits = logits.squeeze(0)
    acts0 = cache[af[:, 0], af[:, 1], af[:, 2]]
    lg0 = logits[-1, logit_tokens] - logits[-1].mean()
    _, freeze = model.setup_intervention_with_freeze(s, constrained_layers=range(model.cfg.n_layers))
    worst = {"act": 0.0, "logit": 0.0}
    counts = {"checked": 0, "passed": 0}

    def compare(new_logits: torch.Tensor, new_cache: torch.Tensor, col: torch.Tensor, act_atol: float, act_rtol: float) -> None:
        new_logits = new_logits.squeeze(0)
        acts = new_cache[af[:, 0], af[:, 1], af[:, 2]]
        lg = new_logits[-1, logit_tokens] - new_logits[-1].mean()
        exp_a, exp_l = acts0 + col[:n_f], lg0 + col[-len(logit_tokens):]
        worst["act"] = max(worst["act"], float((acts - exp_a).abs().max()) if n_f else 0.0)
        worst["logit"] = max(worst["logit"], float((lg - exp_l).abs().max()))
        ok = torch.allclose(acts, exp_a, atol=act_atol, rtol=act_rtol) and torch.allclose(lg, exp_l, atol=1e-5, rtol=1e-3)
        counts["checked"] += 1
        counts["passed"] += int(ok)

    def run_with(hook_name: str, pos: int, vec: torch.Tensor, col: torch.Tensor) -> None:
        new_cache, cache_hooks = model._get_activation_caching_hooks(apply_activation_function=False)

        def add(acts: torch.Tensor, hook: Any) -> torch.Tensor:
            out = acts.clone()
            out[:, pos] += vec
            return out

        new_logits = model.run_with_hooks(s, fwd_hooks=[*freeze, (hook_name, add), *cache_hooks])
        compare(new_logits, torch.stack(new_cache), col, 1e-3, 1e-3)

    P = err_vecs.shape[1]
    for layer in range(err_vecs.shape[0]):
        for pos in range(1, P):
            run_with(f"blocks.{layer}.{model.feature_output_hook}", pos, err_vecs[layer, pos], adj[:, n_f + layer * P + pos])
    n_err = err_vecs.shape[0] * P
    for pos in range(1, tok_vecs.shape[0]):
        run_with("hook_embed", pos, tok_vecs[pos], adj[:, n_f + n_err + pos])
    g = torch.Generator().manual_seed(0)
    for j in torch.randperm(n_f, generator=g)[:n_feature_samples].tolist():
        layer, pos, idx = af[j].tolist()
        new_logits, new_cache = model.feature_intervention(s, [(layer, pos, idx, cache[layer, pos, idx] * 2)],
                                                           constrained_layers=range(model.cfg.n_layers),
                                                           apply_activation_function=False)
        compare(new_logits, new_cache, adj[:, j], 5e-4, 1e-5)
    return {"max_act_err": worst["act"], "max_logit_err": worst["logit"], **counts}


def _worker_ct(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from circuit_tracer.attribution.attribute_transformerlens import attribute

    torch.set_num_threads(args.threads)
    setting = Path(args.setting)
    model, hf, info = _ct_model(setting)
    ids = torch.tensor(prompt_ids(args.n_tokens, info["vocab"], args.prompt_seed))
    with torch.no_grad():
        tl_logits = model(ids[None])[0, -1]
        hf_logits = hf(ids[None]).logits[0, -1]
    del hf
    target = int(tl_logits.argmax())
    mfn = None if args.max_feature_nodes <= 0 else args.max_feature_nodes
    base = rss_now()
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        graph = attribute(ids, model, attribution_targets=torch.tensor([target]), max_feature_nodes=mfn,
                          batch_size=args.ct_batch_size)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    res: dict[str, Any] = {"seconds": secs, "cpu_seconds": cpu, "peak_rss": _max_rss(), "attr_peak_rss": mem.peak, "model_rss": base,
                           "tokens": int(ids.numel()), "active": int(graph.active_features.shape[0]),
                           "kept": int(graph.selected_features.numel()), "target_token": target,
                           "hf_vs_tl_logit_diff": float((tl_logits - hf_logits).abs().max())}
    if args.dump:
        n_sel = int(graph.selected_features.numel())
        sel = graph.selected_features
        rows = list(range(n_sel)) + [graph.adjacency_matrix.shape[0] - 1]
        torch.save({"logits": tl_logits, "features": graph.active_features[sel],
                    "activations": graph.activation_values[sel],
                    "adjacency": graph.adjacency_matrix[rows][:, :n_sel].clone(), "target_token": target}, args.dump)
    if args.ct_checks >= 0:
        res["checks"] = _ct_checks(model, graph, args.ct_checks)
    return res


# =========================================================================== driver
def _sub(python: str, args: argparse.Namespace, role: str, n_tokens: int, *, dump: str | None = None,
         max_feature_nodes: int | None = None, ct_checks: int = -1) -> dict[str, Any]:
    cmd = [python, os.path.abspath(__file__), "--worker", role, "--setting", args.setting, "--n-tokens", str(n_tokens),
           "--threads", str(args.threads), "--prompt-seed", str(args.prompt_seed), "--ct-batch-size", str(args.ct_batch_size),
           "--max-feature-nodes", str(args.max_feature_nodes if max_feature_nodes is None else max_feature_nodes),
           "--ct-checks", str(ct_checks), "--baseline-rows", str(args.baseline_rows if role == "ours" else 0)]
    if role == "ours":
        cmd += ["--repeat", str(args.repeat)]
    if args.heads:
        cmd.append("--heads")
    if args.pairs:
        cmd.append("--pairs")
    if dump:
        cmd += ["--dump", dump]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, text=True, env=env)
        guarded = False
        while proc.poll() is None:  # memory guard: the machine is shared, never let a worker run it out of memory
            if _free_gib() < args.guard_gib:
                proc.kill()
                guarded = True
            time.sleep(0.2)
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if guarded:
        raise SystemExit(f"{role} worker ({n_tokens} tokens) killed: less than {args.guard_gib} GiB of memory left on the machine")
    if proc.returncode != 0:
        raise SystemExit(f"{role} worker failed ({n_tokens} tokens):\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def compare_dumps(ours_path: str, ct_path: str, top: int = 50) -> dict[str, Any]:
    """Agreement of two dumped graphs on features at positions >= 1 (see the conventions above)."""
    import torch

    a, b = torch.load(ours_path), torch.load(ct_path)
    res: dict[str, Any] = {"logit_max_abs_diff": float((a["logits"] - b["logits"]).abs().max()),
                           "same_target": a["target_token"] == b["target_token"]}
    key_a = {tuple(f): i for i, f in enumerate(a["features"].tolist()) if f[1] >= 1}
    key_b = {tuple(f): i for i, f in enumerate(b["features"].tolist()) if f[1] >= 1}
    common = sorted(set(key_a) & set(key_b))
    res["features_ours_pos>=1"], res["features_ct_pos>=1"], res["features_common"] = len(key_a), len(key_b), len(common)
    ia = torch.tensor([key_a[k] for k in common])
    ib = torch.tensor([key_b[k] for k in common])
    res["activation_max_abs_diff"] = float((a["activations"][ia] - b["activations"][ib]).abs().max())
    # feature -> logit (last row) and feature -> feature, on the common features
    la, lb = a["adjacency"][-1, ia], b["adjacency"][-1, ib]
    ff_a, ff_b = a["adjacency"][ia][:, ia], b["adjacency"][ib][:, ib]
    for name, x, y in (("feature_to_logit", la, lb), ("feature_to_feature", ff_a.flatten(), ff_b.flatten())):
        scale = float(y.abs().max())
        res[f"{name}_max_abs_diff"] = float((x - y).abs().max())
        res[f"{name}_max_abs"] = scale
        k = min(top, int((y != 0).sum()))
        ta, tb = set(x.abs().topk(k).indices.tolist()), set(y.abs().topk(k).indices.tolist())
        res[f"{name}_top{k}_overlap"] = len(ta & tb) / max(1, k)
    return res


def _free_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="100,200", help="comma list of prompt lengths (450 needs ~21 GiB available)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-feature-nodes", type=int, default=2000)
    ap.add_argument("--ct-python", default=CT_PYTHON, help="python of the circuit-tracer venv")
    ap.add_argument("--ct-batch-size", type=int, default=512, help="circuit-tracer's batch_size (its default)")
    ap.add_argument("--engines", default="ours,ct", help="comma list: ours, ct")
    ap.add_argument("--heads", action="store_true", help="ours: also split edges per attention head (circuit-tracer does not)")
    ap.add_argument("--pairs", action="store_true", help="ours: also compute feature-pair virtual weights")
    ap.add_argument("--repeat", type=int, default=3,
                    help="ours and the baseline: time this many times in one process and keep the best (the first call also pays one-time set-up)")
    ap.add_argument("--baseline-rows", type=int, default=-1,
                    help="rows the one-backward-per-row baseline is timed on, then scaled to the graph (-1: every row, the default; 0: skip)")
    ap.add_argument("--check", action="store_true", help="agreement check on a small prompt instead of timing")
    ap.add_argument("--check-tokens", type=int, default=16)
    ap.add_argument("--raw-unembed", action="store_true",
                    help="do not centre the unembedding (shows circuit-tracer's demeaned-logit convention in --check)")
    ap.add_argument("--check-features", type=int, default=100, help="feature columns circuit-tracer's checks perturb")
    ap.add_argument("--min-free-gib", type=float, default=21.0, help="skip circuit-tracer at >= 400 tokens below this")
    ap.add_argument("--guard-gib", type=float, default=1.5, help="kill a worker when the machine has less memory available than this")
    ap.add_argument("--setting", default=None, help="reuse a built setting directory")
    ap.add_argument("--prompt-seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-tokens", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ct-checks", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        if args.worker == "build":
            res = build_setting(args.setting, **SETTING, centre_unembed=not args.raw_unembed)
        else:
            res = _worker_ours(args) if args.worker == "ours" else _worker_ct(args)
        sys.stdout.write(json.dumps(res) + "\n")
        return

    tmp = tempfile.TemporaryDirectory(prefix="bench_ct_")
    if args.setting is None:
        args.setting = tmp.name
        t0 = time.perf_counter()
        # in a subprocess: this driver stays small while the workers run
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "build", "--setting", args.setting]
        out = subprocess.run(cmd + (["--raw-unembed"] if args.raw_unembed else []), capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"building the setting failed:\n{out.stderr[-4000:]}")
        info = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"setting built in {time.perf_counter() - t0:.1f}s: {info['n_layers']} layers, d_model {info['d_model']}, "
              f"{info['features']} ReLU features/layer, active per position (calibration) "
              f"{', '.join(f'{a:.1f}' for a in info['active_per_position_calibration'])}", flush=True)

    if args.check:
        po, pc = os.path.join(tmp.name, "ours.pt"), os.path.join(tmp.name, "ct.pt")
        args.baseline_rows = 0
        ours = _sub(sys.executable, args, "ours", args.check_tokens, dump=po, max_feature_nodes=0)
        ct = _sub(args.ct_python, args, "ct", args.check_tokens, dump=pc, max_feature_nodes=0, ct_checks=args.check_features)
        res = {"tokens": args.check_tokens, "ct_checks": ct["checks"], "hf_vs_tl_logit_diff": ct["hf_vs_tl_logit_diff"],
               **compare_dumps(po, pc)}
        print(json.dumps(res, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    rows = []
    lengths = [int(x) for x in args.tokens.split(",") if x.strip()]
    # ours (and the baseline) at every length first: a circuit-tracer process of up to ~21 GiB leaves
    # the machine reclaiming memory for a while, which slowed a run right after it
    ours_by_n = {n: _sub(sys.executable, args, "ours", n) for n in lengths} if "ours" in engines else {}
    for n in lengths:
        row: dict[str, Any] = {"tokens": n}
        if n in ours_by_n:
            ours = ours_by_n[n]
            row.update(ours_s=ours["seconds"], ours_cpu_s=ours["cpu_seconds"], ours_gib=ours["peak_rss"] / GIB, ours_attr_gib=ours["attr_peak_rss"] / GIB,
                       ours_active=ours["active"], ours_kept=ours["kept"])
            if "baseline" in ours:
                b = ours["baseline"]
                row.update(baseline_s=b["seconds"], baseline_cpu_s=b["cpu_seconds"], baseline_rows_timed=b["rows_timed"],
                           baseline_vs_ours=b["seconds"] / ours["seconds"], baseline_vs_ours_cpu=b["cpu_seconds"] / ours["cpu_seconds"],
                           baseline_edge_diff=b["max_edge_diff"], baseline_edge_max=b["max_edge"])
        if "ct" in engines:
            free = _free_gib()
            if n >= 400 and free < args.min_free_gib:
                print(f"{n} tokens: circuit-tracer skipped, {free:.1f} GiB available < {args.min_free_gib} (it needs ~20 GiB)", flush=True)
            else:
                ct = _sub(args.ct_python, args, "ct", n)
                row.update(ct_s=ct["seconds"], ct_cpu_s=ct["cpu_seconds"], ct_gib=ct["peak_rss"] / GIB, ct_attr_gib=ct["attr_peak_rss"] / GIB,
                           ct_active=ct["active"], ct_kept=ct["kept"])
        if "ct_s" in row and "ours_s" in row:
            row["speedup"] = row["ct_s"] / row["ours_s"]
            row["cpu_speedup"] = row["ct_cpu_s"] / row["ours_cpu_s"]
            row["memory_ratio"] = row["ct_gib"] / row["ours_gib"]
        rows.append(row)

        def fmt(prefix: str) -> str:
            if f"{prefix}_s" not in row:
                return "-"
            return (f"{row[f'{prefix}_s']:7.1f}s (cpu {row[f'{prefix}_cpu_s']:.1f}s) peak {row[f'{prefix}_gib']:5.2f} GiB (attr {row[f'{prefix}_attr_gib']:5.2f}) "
                    f"kept {row[f'{prefix}_kept']}/{row[f'{prefix}_active']}")

        ratio = (f"speed {row['speedup']:.1f}x (cpu {row['cpu_speedup']:.1f}x), memory {row['memory_ratio']:.1f}x"
                 if "speedup" in row else "-")
        row["load_average"] = os.getloadavg()[0]
        base = (f" | baseline {row['baseline_s']:.1f}s (timed on {row['baseline_rows_timed']} rows; edges agree to "
                f"{row['baseline_edge_diff']:.1e} of {row['baseline_edge_max']:.1e}; cpu {row['baseline_cpu_s']:.1f}s), ours {row['baseline_vs_ours']:.1f}x faster "
                f"(cpu {row['baseline_vs_ours_cpu']:.1f}x)"
                if "baseline_s" in row else "")
        print(f"{n:4d} tokens (load {row['load_average']:.1f}) | circuit-tracer {fmt('ct')} | circuitdb {fmt('ours')} | ours vs circuit-tracer: {ratio}{base}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
