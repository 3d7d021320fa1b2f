"""Seconds and peak memory per cell of ``attribute()``, against the straightforward baseline.

Measures how much faster batched transposed passes through the frozen replacement model
are than the straightforward baseline (one forward of the frozen model with autograd, then
one ``autograd.grad`` backward pass per target node), and peak memory (goal: at most 4 GiB).
Issue 6's 10x goal is set, and met, in its side-by-side setting (``bench_circuit_tracer.py``);
here it also holds for the demo model's full graphs. Small feature budgets stay under it: on
the tiny demo model a 1000-feature graph takes 50-75 ms and its few deep rows cost about
what the baseline's do (about 8x in all); on deep random models, rows that pass through
every layer are dense GEMMs on both sides (see docs/attribution_performance.md).

For each model and prompt size (50, 100, 200 genes) one fresh subprocess runs
``attribute()`` (so its peak RSS is its own) and another runs the baseline on the
*same* target nodes (the target logit and the features ``attribute()`` kept); the
baseline is timed on the target row and every kept feature (or, with ``--baseline-rows N``,
an even sample of N - 1 kept features over the features sorted by layer and position), and
its edges are checked against ours on an even sample of at most ~32 rows. Baseline seconds = its one forward (with autograd) plus its target row plus
its mean feature row times the number of kept features. Printed: seconds, peak RSS during attribution (sampled
every 5 ms; and its increase over the loaded model and transcoders), the speed ratio, and the scaling exponent of seconds vs
prompt tokens (log-log slope).

Models:

* ``demo``: the shipped demo model and its transcoders (``--demo-model``,
  ``--demo-transcoders``; real gene prompts from pbmc68k_reduced through its tokenizer);
* ``demo_config``: a random model with the demo model's shape (4 layers, d_model 128,
  4 heads, d_mlp 512, vocab 1000) and random transcoders, for numbers before the
  trained demo model ships;
* ``pythia410m``: a random model with the full C2S-Pythia-410m config (24 layers,
  d_model 1024, 16 heads, d_mlp 4096, vocab 50304) and random TopK transcoders
  (``--features``, ``--k``). There is no Pythia tokenizer offline, so prompts are
  synthetic token ids of the length the C2S prompt has (``--tokens-per-gene`` per gene
  plus a 48-token template).

``--setting ct`` runs our engine alone in the circuit-tracer comparison setting of issue 6
(:func:`ct_setting`: random NeoX-style model, 4 layers, d_model 256, 4 heads, d_mlp 1024,
16,384-feature ReLU transcoders with ~44 active features per position, ``max_feature_nodes=2000``;
:func:`ct_prompt` gives the token ids) and prints seconds and peak RSS per prompt length next to
circuit-tracer's reference on this machine. :func:`ct_bench` is the same as a function, for the
side-by-side harness.

Usage::

    python benchmarks/bench_attribution.py --setting ct --tokens 100,200,450
    python benchmarks/bench_attribution.py --models pythia410m --max-feature-nodes 64
    python benchmarks/bench_attribution.py --models demo --demo-model M --demo-transcoders T
    python benchmarks/bench_attribution.py --models pythia410m --device cuda   # on a GPU

``--device cuda`` runs both sides on the GPU (the random models only: the demo's prompts need
scanpy): times are taken after ``torch.cuda.synchronize()`` and the peak memory printed is the
GPU's (``torch.cuda.max_memory_allocated``) instead of the process RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakRSS, rss_now  # noqa: E402  (benchmarks/ is not a package)

GIB = 1 << 30
#: random GPT-NeoX models: the full C2S-Pythia-410m config, and the demo model's shape
RANDOM_CONFIGS = {
    "pythia410m": dict(vocab_size=50304, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "demo_config": dict(vocab_size=1000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
}


#: the circuit-tracer comparison setting (issue 6): a random NeoX-style model (parallel residual, LayerNorm
#: with bias) and 16,384-feature ReLU transcoders per layer with about 44 active features per position
CT_MODEL = dict(vocab_size=50304, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
CT_FEATURES = 16384
CT_ACTIVE = 44
CT_MAX_FEATURE_NODES = 2000
#: circuit-tracer v0.4.1 measured on this machine (2 threads, GPT-2-style equivalent): tokens -> (seconds, GiB)
CT_REFERENCE = {100: (58.0, 4.0), 200: (89.0, 7.9), 450: (389.0, 20.5)}


def ct_setting(seed: int = 0, *, features: int = CT_FEATURES, active: int = CT_ACTIVE, calib_tokens: int = 450) -> tuple[Any, dict[int, Any]]:
    """The circuit-tracer comparison setting: ``(model, {layer: Transcoder})``, float32, seeded.

    The model is a random GPT-NeoX (``CT_MODEL``: 4 layers, d_model 256, 4 heads, d_mlp 1024,
    rotary 25%, parallel residual, LayerNorm with bias, untied embeddings). Each layer's ReLU
    transcoder has unit-norm random decoder rows, ``W_enc = W_dec.T`` and one shared ``b_enc``
    set to minus the ``1 - active / features`` quantile of the pre-activations on a seeded
    random prompt of ``calib_tokens`` tokens, so about ``active`` features fire per position
    (the MLP inputs do not depend on the transcoders: the error terms keep the true forward).
    """
    import torch

    from circuitdb.loaders.adapters import adapter_for
    from circuitdb.loaders.configs import c2s_pythia_410m_config, random_model
    from circuitdb.transcoder.hooks import capture_mlp
    from circuitdb.transcoder.model import Transcoder, TranscoderConfig

    model = random_model(c2s_pythia_410m_config(**CT_MODEL), seed=seed)
    model.set_attn_implementation("eager")
    n_layers, d = CT_MODEL["num_hidden_layers"], CT_MODEL["hidden_size"]
    ids = torch.randint(0, CT_MODEL["vocab_size"], (calib_tokens,), generator=torch.Generator().manual_seed(seed + 1))
    with capture_mlp(adapter_for(model), list(range(n_layers)), outputs=False) as captured, torch.no_grad():
        model(ids[None])
    mlp_in = {i: c["in"][0] for i, c in captured.items()}
    g = torch.Generator().manual_seed(seed + 2)
    tcs = {}
    for layer in range(n_layers):
        tc = Transcoder(TranscoderConfig(d_in=d, d_features=features, activation="relu", k=None, layer=layer))
        tc.reset_parameters(g)
        with torch.no_grad():
            pre = (mlp_in[layer] @ tc.W_enc).flatten()
            thr = torch.quantile(pre[:: max(1, pre.numel() // 4_000_000 + 1)], 1.0 - active / features)
            tc.b_enc.fill_(-float(thr))
        tcs[layer] = tc.eval()
    return model, tcs


def ct_prompt(n_tokens: int, seed: int = 0) -> Any:
    """Seeded random token ids of the ct setting (``n_tokens`` long)."""
    import torch

    return torch.randint(0, CT_MODEL["vocab_size"], (n_tokens,), generator=torch.Generator().manual_seed(1000 + seed + n_tokens))


# --------------------------------------------------------------------------- model setup
def _setup(args: argparse.Namespace, n_genes: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    import torch

    from circuitdb.attribution.replacement import ReplacementModel

    torch.manual_seed(0)
    if args.model == "ct":
        model, tcs = ct_setting()
        n_tok = int(args.genes)  # for the ct setting "--genes" carries the prompt length in tokens
        return ReplacementModel(model, tcs), ct_prompt(n_tok), None, {"tokens": n_tok}
    if args.model in RANDOM_CONFIGS:
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        from circuitdb.transcoder.model import Transcoder, TranscoderConfig

        shape = RANDOM_CONFIGS[args.model]
        cfg = GPTNeoXConfig(**shape, rotary_pct=0.25, max_position_embeddings=2048, use_parallel_residual=True,
                            tie_word_embeddings=False, attention_bias=True, attn_implementation="eager")
        model = GPTNeoXForCausalLM(cfg).eval()
        g = torch.Generator().manual_seed(1)
        tcs = {}
        d = cfg.hidden_size
        for layer in range(cfg.num_hidden_layers):
            tc = Transcoder(TranscoderConfig(d_in=d, d_features=args.features, activation="topk", k=args.k, layer=layer))
            tc.reset_parameters(g)
            tcs[layer] = tc.eval()
        n_tok = 48 + int(round(args.tokens_per_gene * n_genes))
        ids = torch.randint(0, cfg.vocab_size, (n_tok,), generator=torch.Generator().manual_seed(n_genes))
        dev = torch.device(args.device)
        rm = ReplacementModel(model.to(dev), {i: tc.to(dev) for i, tc in tcs.items()})
        return rm, ids.to(dev), None, {"tokens": n_tok}
    # demo model
    if args.device != "cpu":
        raise SystemExit("--device: only the random models (pythia410m, demo_config) run off the CPU")
    import scanpy as sc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from circuitdb.attribution.replacement import load_transcoders
    from circuitdb.loaders.prompts import build_prompt, gene_token_spans

    tok = AutoTokenizer.from_pretrained(args.demo_model, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(args.demo_model, local_files_only=True, dtype=torch.float32).eval()
    rm = ReplacementModel(model, load_transcoders(args.demo_transcoders))
    adata = sc.datasets.pbmc68k_reduced()
    X = adata.raw.X
    row = X[1].toarray().ravel() if hasattr(X, "toarray") else X[1]
    order = sorted(range(len(row)), key=lambda j: -float(row[j]))
    genes = [str(adata.raw.var_names[j]).upper() for j in order[:n_genes]]
    ids, spans = gene_token_spans(tok, build_prompt(genes))
    return rm, torch.tensor(ids), tok, {"tokens": len(ids)}


# --------------------------------------------------------------------------- workers
def _sync(device: str) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so wall clocks measure it."""
    if device != "cpu":
        import torch

        torch.cuda.synchronize(device)


class _Peak:
    """Peak memory of one phase: the sampled process RSS on the CPU, ``max_memory_allocated`` on a GPU."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> "_Peak":
        if self.device == "cpu":
            self._rss = PeakRSS().__enter__()
        else:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cpu":
            self._rss.__exit__()
            self.peak = self._rss.peak
        else:
            import torch

            self.peak = torch.cuda.max_memory_allocated(self.device)


def _base_memory(device: str) -> int:
    """Memory held before a phase: the process RSS, or the GPU memory allocated."""
    if device == "cpu":
        return rss_now()
    import torch

    return torch.cuda.memory_allocated(device)


def _best_of(repeat: int, run: Any, device: str = "cpu") -> tuple[Any, float, float, int]:
    """``run()`` ``repeat`` times (the machine is shared): its last result, the best wall and CPU seconds,
    and the peak memory while it ran (the previous result is dropped first: the peak is one run's)."""
    secs = cpu = float("inf")
    result = None
    with _Peak(device) as mem:
        for _ in range(repeat):
            result = None
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            result = run()
            _sync(device)
            secs, cpu = min(secs, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    assert result is not None
    return result, secs, cpu, mem.peak


def _worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from circuitdb.attribution.attribute import attribute

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    rm, ids, tok, info = _setup(args, args.genes)
    base = _base_memory(args.device)
    g, secs, cpu, peak = _best_of(args.repeat, lambda: attribute(
        ids, rm, target="top", max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size or None, heads=False, pairs=True),
        args.device)
    head_secs, head_edges = float("nan"), 0
    if args.head_split_nodes >= 0:  # a second attribution, with the per-head split of the target + N features
        _sync(args.device)
        t1 = time.perf_counter()
        head = attribute(ids, rm, target="top", max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size or None,
                         head_split_nodes=args.head_split_nodes, pairs=False)
        _sync(args.device)
        head_secs, head_edges = time.perf_counter() - t1, int(head.head_edges.shape[0])
    feats = [(nd.layer, nd.pos, nd.index) for nd in g.nodes if nd.kind == "feature"]
    tnode = int(g.indices("target")[0])
    key = {nd.key: i for i, nd in enumerate(g.nodes)}
    sample_edges = {}
    # every feature (--baseline-rows -1), or an evenly spaced sample over the (layer, position)-sorted
    # features: all layers, all positions; edges are exported for an even sample of at most ~32 rows
    stride = max(1, len(feats) // max(1, args.baseline_rows - 1))
    sample = feats if args.baseline_rows < 0 else feats[::stride][: args.baseline_rows - 1]
    for layer, pos, idx in sample[:: max(1, len(sample) // 32)]:
        i = key[f"{layer}_{idx}_{pos}"]
        sample_edges[f"{layer}_{idx}_{pos}"] = {g.nodes[j].key: float(g.adjacency[i, j]) for j in torch.nonzero(g.adjacency[i]).flatten().tolist()
                                                if g.nodes[j].kind == "feature"}
    sample_edges["target"] = {g.nodes[j].key: float(g.adjacency[tnode, j]) for j in torch.nonzero(g.adjacency[tnode]).flatten().tolist()
                              if g.nodes[j].kind == "feature"}
    return {"seconds": secs, "cpu_seconds": cpu, "peak_rss": peak, "model_rss": base, "tokens": info["tokens"], "rows": len(feats) + 1,
            "features": sample, "target_token": int(g.metadata["target"]["token_id"]), "active": g.metadata["n_active_features"],
            "head_split_seconds": head_secs, "head_edges": head_edges, "edges": sample_edges}


def _worker_ct(args: argparse.Namespace) -> dict[str, Any]:
    """One ct-setting attribution (the defaults of ``attribute()``: pairs and the per-head split of 32 nodes)."""
    import resource

    import torch

    from circuitdb.attribution.attribute import attribute

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    rm, ids, _, info = _setup(args, args.genes)
    base = rss_now()
    g, secs, cpu, peak = _best_of(args.repeat, lambda: attribute(
        ids, rm, target="top", max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size or None,
        heads=args.head_split_nodes >= 0, head_split_nodes=max(0, args.head_split_nodes), pairs=True))
    return {"seconds": secs, "cpu_seconds": cpu, "peak_rss": peak, "model_rss": base, "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "tokens": info["tokens"], "active": g.metadata["n_active_features"], "feature_nodes": g.metadata["n_feature_nodes"],
            "nodes": len(g.nodes), "head_edges": int(g.head_edges.shape[0])}


def ct_bench(tokens: list[int], *, threads: int = 2, max_feature_nodes: int = CT_MAX_FEATURE_NODES, head_split_nodes: int = 32,
             batch_size: int = 0, repeat: int = 1) -> list[dict[str, Any]]:
    """Our engine in the circuit-tracer comparison setting, one fresh subprocess per prompt length.

    Returns one dict per length: ``tokens``, ``seconds`` (wall), ``cpu_seconds`` (all threads), ``peak_gib`` (sampled peak RSS during
    attribution), ``max_rss_gib`` (the process's peak RSS, model set-up included), ``model_gib``
    (RSS with the model and transcoders loaded), ``active`` features, ``feature_nodes``, ``nodes``,
    ``head_edges``, and circuit-tracer's reference seconds/GiB on this machine where known.
    """
    ns = argparse.Namespace(model_name_current="ct", threads=threads, max_feature_nodes=max_feature_nodes, batch_size=batch_size,
                            baseline_rows=0, features=CT_FEATURES, k=0, tokens_per_gene=1.0, head_split_nodes=head_split_nodes,
                            repeat=repeat, demo_model=None, demo_transcoders=None, device="cpu")
    out = []
    for n in tokens:
        r = _sub(ns, "ct", n)
        ref_s, ref_gib = CT_REFERENCE.get(n, (float("nan"), float("nan")))
        out.append({"tokens": n, "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"], "peak_gib": r["peak_rss"] / GIB, "max_rss_gib": r["max_rss"] / GIB,
                    "model_gib": r["model_rss"] / GIB, "active": r["active"], "feature_nodes": r["feature_nodes"], "nodes": r["nodes"],
                    "head_edges": r["head_edges"], "ct_reference_s": ref_s, "ct_reference_gib": ref_gib})
    return out


def _worker_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Straightforward: frozen forward with autograd, one backward per target node."""
    import torch

    torch.set_num_threads(args.threads)
    rm, ids, tok, info = _setup(args, args.genes)
    spec = json.loads(Path(args.spec).read_text())
    base = _base_memory(args.device)
    _sync(args.device)
    t0, c0 = time.perf_counter(), time.process_time()
    mem = _Peak(args.device).__enter__()
    with torch.no_grad():
        run = rm.run(ids, all_logits=False)  # the target needs only the last position's logits
    # leaves: per-layer active-feature activations, per-layer errors, the embeddings
    acts = [L.feat_act.clone().requires_grad_(True) for L in run.layers]
    errs = [L.error.clone().requires_grad_(True) for L in run.layers]
    x0 = run.x0.clone().requires_grad_(True)
    x = x0
    pre_of: dict[tuple[int, int, int], torch.Tensor] = {}
    loc = {}
    for li, L in enumerate(run.layers):
        for j, (p, i) in enumerate(zip(L.feat_pos.tolist(), L.feat_idx.tolist())):
            loc[(li, p, i)] = j
    wanted = [tuple(f) for f in spec["features"]]
    wanted = wanted if args.baseline_rows < 0 else wanted[: args.baseline_rows - 1]
    from circuitdb.attribution.replacement import attn_forward

    for li, L in enumerate(run.layers):
        y = L.norm_attn.apply(x) + (L.norm_attn.bias if L.norm_attn.bias is not None else 0)
        a = attn_forward(L.ov, L.pattern, y) + L.ov.const
        h = x + (L.post_attn.apply(a) if L.post_attn is not None else a)
        u = L.norm_mlp.apply(x if L.parallel else h) + (L.norm_mlp.bias if L.norm_mlp.bias is not None else 0)
        for f in wanted:
            if f[0] == li:
                pre_of[f] = u[f[1]] @ L.W_enc[:, f[2]] + L.b_enc[f[2]]
        m = torch.zeros_like(x).index_add(0, L.feat_pos, acts[li][:, None] * L.W_dec[L.feat_idx]) + L.b_dec + errs[li]
        if L.W_skip is not None:
            m = m + u @ L.W_skip
        x = h + (L.post_mlp.apply(m) if L.post_mlp is not None else m)
    y = run.final_norm.apply(x) + (run.final_norm.bias if run.final_norm.bias is not None else 0)
    logit = y[-1] @ run.W_U[:, spec["target_token"]]
    targets = [("target", logit)] + [(f"{f[0]}_{f[2]}_{f[1]}", pre_of[f]) for f in wanted]
    _sync(args.device)
    forward_secs, forward_cpu = time.perf_counter() - t0, time.process_time() - c0
    max_diff = 0.0
    max_edge = 0.0
    # the target row (a pass through every layer) and the feature rows are timed apart: the target is
    # one row of the graph, not one in ``--baseline-rows``
    tgt_secs = tgt_cpu = back_secs = back_cpu = float("inf")
    for _ in range(args.repeat):  # only the gradients of the rows whose edges are checked are kept
        _sync(args.device)
        t1, c1 = time.perf_counter(), time.process_time()
        checked = [(targets[0], torch.autograd.grad(targets[0][1], acts + errs + [x0], retain_graph=True, allow_unused=True))]
        _sync(args.device)
        t2, c2 = time.perf_counter(), time.process_time()
        for name, value in targets[1:]:
            gr = torch.autograd.grad(value, acts + errs + [x0], retain_graph=True, allow_unused=True)
            if name in spec["edges"]:
                checked.append(((name, value), gr))
        _sync(args.device)
        t3, c3 = time.perf_counter(), time.process_time()
        tgt_secs, tgt_cpu = min(tgt_secs, t2 - t1), min(tgt_cpu, c2 - c1)
        back_secs, back_cpu = min(back_secs, t3 - t2), min(back_cpu, c3 - c2)
    for (name, value), grads in checked:
        edges = {}
        for li, L in enumerate(run.layers):
            gi = grads[li]
            if gi is None:
                continue
            for j, (p, i) in enumerate(zip(L.feat_pos.tolist(), L.feat_idx.tolist())):
                edges[f"{li}_{i}_{p}"] = float(gi[j] * acts[li][j])
        ours = spec["edges"].get(name, {})
        for k, v in ours.items():
            max_diff = max(max_diff, abs(v - edges.get(k, 0.0)))
            max_edge = max(max_edge, abs(v))
    mem.__exit__()
    return {"forward_seconds": forward_secs, "target_seconds": tgt_secs, "target_cpu": tgt_cpu,
            "backward_seconds_sample": back_secs, "rows_sample": len(targets) - 1,
            "forward_cpu": forward_cpu, "backward_cpu_sample": back_cpu,
            "peak_rss": mem.peak, "model_rss": base,
            "max_edge_diff": max_diff, "max_edge": max_edge}


# --------------------------------------------------------------------------- driver
def _sub(args: argparse.Namespace, role: str, genes: int, spec: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", role, "--model-name", args.model_name_current, "--genes", str(genes),
           "--threads", str(args.threads), "--max-feature-nodes", str(args.max_feature_nodes), "--batch-size", str(args.batch_size),
           "--baseline-rows", str(args.baseline_rows), "--features", str(args.features), "--k", str(args.k),
           "--tokens-per-gene", str(args.tokens_per_gene), "--head-split-nodes", str(args.head_split_nodes),
           "--repeat", str(args.repeat), "--device", args.device]
    if args.demo_model:
        cmd += ["--demo-model", args.demo_model, "--demo-transcoders", args.demo_transcoders]
    if spec is not None:
        cmd += ["--spec", str(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{role} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _slope(pts: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(seconds) against log(tokens)."""
    xs, ys = [math.log(t) for t, _ in pts], [math.log(s) for _, s in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=["cells", "ct"], default="cells",
                    help="cells: per-cell seconds vs the one-backward-per-node baseline (--models, --genes); "
                         "ct: our engine in the circuit-tracer comparison setting (--tokens)")
    ap.add_argument("--tokens", default="100,200,450", help="ct setting: prompt lengths in tokens")
    ap.add_argument("--ct-max-feature-nodes", type=int, default=CT_MAX_FEATURE_NODES, help="ct setting: feature budget")
    ap.add_argument("--models", default="pythia410m", help="comma list: demo, demo_config, pythia410m")
    ap.add_argument("--genes", default="50,100,200")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-feature-nodes", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=0, help="rows per pass (0: attribute()'s automatic choice)")
    ap.add_argument("--baseline-rows", type=int, default=-1,
                    help="rows the baseline is timed on, then scaled (-1: every row, the default: a few deep rows make a sample's mean noisy)")
    ap.add_argument("--features", type=int, default=4096, help="transcoder width for the random pythia model")
    ap.add_argument("--k", type=int, default=16, help="TopK of the random transcoders")
    ap.add_argument("--tokens-per-gene", type=float, default=2.5)
    ap.add_argument("--head-split-nodes", type=int, default=-1, help="also time attribution with the head split of N features (-1: skip)")
    ap.add_argument("--repeat", type=int, default=1, help="time each side this many times, keep the best")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda[:N]: run both sides there (random models only)")
    ap.add_argument("--demo-model", default=None)
    ap.add_argument("--demo-transcoders", default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-name", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        args.model = args.model_name
        args.genes = int(args.genes)
        worker = {"ours": _worker_ours, "baseline": _worker_baseline, "ct": _worker_ct}[args.worker]
        sys.stdout.write(json.dumps(worker(args)) + "\n")
        return

    if args.setting == "ct":
        rows = ct_bench([int(x) for x in args.tokens.split(",")], threads=args.threads, max_feature_nodes=args.ct_max_feature_nodes,
                        head_split_nodes=args.head_split_nodes if args.head_split_nodes != -1 else 32, batch_size=args.batch_size,
                        repeat=args.repeat)
        for r in rows:
            ratio = r["ct_reference_s"] / r["seconds"]
            print(f"ct tokens={r['tokens']:4d} active={r['active']:6d} feature nodes={r['feature_nodes']:5d} | ours {r['seconds']:7.2f}s (CPU {r['cpu_seconds']:.1f}s) "
                  f"peak RSS {r['peak_gib']:.2f} GiB (process max {r['max_rss_gib']:.2f}, model+transcoders {r['model_gib']:.2f}) | "
                  f"circuit-tracer reference {r['ct_reference_s']:.0f}s {r['ct_reference_gib']:.1f} GiB -> {ratio:.1f}x", flush=True)
        pts = [(r["tokens"], r["seconds"]) for r in rows]
        if len(pts) >= 2:
            print(f"ct: seconds ~ tokens^{_slope(pts):.2f} (log-log slope over {len(pts)} sizes)")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return

    import tempfile

    results = []
    for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if model_name == "demo" and not (args.demo_model and args.demo_transcoders):
            print("demo: skipped (pass --demo-model and --demo-transcoders)")
            continue
        args.model_name_current = model_name
        for n in [int(x) for x in args.genes.split(",")]:
            ours = _sub(args, "ours", n)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump({"features": ours["features"], "target_token": ours["target_token"], "edges": ours["edges"]}, f)
            base = _sub(args, "baseline", n, Path(f.name))
            os.unlink(f.name)
            # forward + target row + mean feature row x kept features (ours["rows"] counts the target too)
            base_total = base["forward_seconds"] + base["target_seconds"] + base["backward_seconds_sample"] / base["rows_sample"] * (ours["rows"] - 1)
            base_cpu = base["forward_cpu"] + base["target_cpu"] + base["backward_cpu_sample"] / base["rows_sample"] * (ours["rows"] - 1)
            row = {"model": model_name, "genes": n, "tokens": ours["tokens"], "rows": ours["rows"], "active": ours["active"],
                   "ours_s": ours["seconds"], "ours_peak_gib": ours["peak_rss"] / GIB, "model_gib": ours["model_rss"] / GIB,
                   "ours_over_model_gib": (ours["peak_rss"] - ours["model_rss"]) / GIB,
                   "baseline_s": base_total, "baseline_sample_rows": base["rows_sample"], "baseline_peak_gib": base["peak_rss"] / GIB,
                   "ratio": base_total / ours["seconds"], "ours_cpu_s": ours["cpu_seconds"], "baseline_cpu_s": base_cpu,
                   "cpu_ratio": base_cpu / ours["cpu_seconds"], "max_edge_diff": base["max_edge_diff"], "max_edge": base["max_edge"],
                   "head_split_s": ours["head_split_seconds"], "head_edges": ours["head_edges"]}
            results.append(row)
            print(f"{model_name:10s} genes={n:4d} tokens={row['tokens']:4d} rows={row['rows']:5d} active={row['active']:6d} | "
                  f"ours {row['ours_s']:8.2f}s peak {'RSS' if args.device == 'cpu' else 'GPU memory'} {row['ours_peak_gib']:.2f} GiB (+{row['ours_over_model_gib']:.2f} over the loaded model) | "
                  f"baseline {row['baseline_s']:8.2f}s (timed on the target + {row['baseline_sample_rows']} feature rows) | ratio {row['ratio']:6.1f}x "
                  f"(CPU time {row['ours_cpu_s']:.2f}s vs {row['baseline_cpu_s']:.2f}s: {row['cpu_ratio']:.1f}x) | "
                  f"edge check {row['max_edge_diff']:.1e} of {row['max_edge']:.1e} | attribution+head split {row['head_split_s']:.1f}s", flush=True)
        pts = [(r["tokens"], r["ours_s"]) for r in results if r["model"] == model_name]
        if len(pts) >= 2:
            slope = _slope(pts)
            print(f"{model_name}: seconds ~ tokens^{slope:.2f} (log-log slope over {len(pts)} sizes)")
            results.append({"model": model_name, "scaling_exponent": slope})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
