"""Benchmark: automated interpretation of EVERY feature of a transcoder set, and a projection to C2S-Pythia-410m.

Claim measured
--------------
* wall time (minutes) and peak memory of ``circuitdb interpret`` on every active feature of the
  demo transcoders over the dataset's cells: collection (model + transcoders over every cell),
  enrichment (all features x all sets, BH over all tests), shuffled control;
* the vectorised enrichment against a baseline measured in the same run: a naive per-feature,
  per-set loop calling ``scipy.stats.hypergeom.sf`` once per test (then the same BH);
* a projection to a C2S-Pythia-410m-sized set (24 layers x 32,768 features, d_model 1024) from the
  measured per-token and per-(token x feature) costs and per-feature enrichment cost.

Usage::

    python benchmarks/bench_interpret.py                       # demo model + demo transcoders + pbmc68k
    python benchmarks/bench_interpret.py --model M --transcoders T --data D.h5ad --cells 700
    python benchmarks/bench_interpret.py --synthetic           # tiny random model (when no demo assets ship)

Prints one JSON object; ``ratio_vectorised_vs_naive`` is the speed-up of the enrichment.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _demo_paths() -> tuple[Path | None, Path | None]:
    from importlib.resources import files

    root = Path(str(files("circuitdb.demo_data")))
    model = root / "model"
    tcs = root / "transcoders"
    return (model if (model / "config.json").is_file() else None, tcs if tcs.is_dir() and any(tcs.rglob("cfg.json")) else None)


def _synthetic(root: Path, adata) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A tiny random NeoX model and 2 random relu transcoders (only when no demo assets exist)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from circuitdb.loaders.prompts import build_prompt
    from circuitdb.transcoder.model import Transcoder, TranscoderConfig

    genes = list(adata.raw.var_names)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([build_prompt(genes[i:i + 60]).text for i in range(0, len(genes), 60)],
                            trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(fast), hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                             intermediate_size=256, max_position_embeddings=4096)).eval()
    mdir, tdir = root / "model", root / "tc"
    model.save_pretrained(mdir)
    fast.save_pretrained(mdir)
    for layer in range(4):
        tc = Transcoder(TranscoderConfig(d_in=64, d_features=512, activation="relu", layer=layer))
        torch.nn.init.normal_(tc.b_enc, -0.2, 0.3)
        tc.save(tdir / f"layer_{layer}")
    return mdir, tdir


def naive_enrich(top_genes, libraries, universe):  # type: ignore[no-untyped-def]
    """Baseline: one ``scipy.stats.hypergeom.sf`` call per (feature, set), then BH (statsmodels)."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    uni = {str(g).upper() for g in universe}
    libs = [lib.restricted(uni, 3) for lib in libraries]
    rows, ps = [], []
    for feat, genes in top_genes.items():
        q = {str(g).upper() for g in genes} & uni
        if not q:
            continue
        for lib in libs:
            for term, members in lib.sets.items():
                ov = q & members
                ps.append(float(stats.hypergeom.sf(len(ov) - 1, len(uni), len(members), len(q))))
                rows.append((feat, lib.name, term, len(ov)))
    return rows, multipletests(np.asarray(ps), method="fdr_bh")[1] if ps else np.array([])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--transcoders", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=None, help="h5ad (default: scanpy's pbmc68k_reduced)")
    ap.add_argument("--label-key", default="bulk_labels")
    ap.add_argument("--cells", type=int, default=None, help="use the first N cells (default: all)")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--synthetic", action="store_true", help="tiny random model + transcoders when no demo assets ship")
    ap.add_argument("--naive-features", type=int, default=300, help="features for the naive baseline (same ones both ways)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import scanpy as sc
    import torch

    torch.set_num_threads(args.threads)
    from circuitdb.interpret.collect import collect_feature_stats
    from circuitdb.interpret.enrichment import enrich
    from circuitdb.interpret.features import interpret_features, top_genes
    from circuitdb.interpret.run import active_features, build_libraries, load_transcoder_dir, subset_stats
    from circuitdb.loaders.model import load_model
    from circuitdb.loaders.sentences import SentenceOptions, iter_cell_sentences

    adata = sc.read_h5ad(args.data) if args.data else sc.datasets.pbmc68k_reduced()
    model_dir, tc_dir = args.model, args.transcoders
    source = "given"
    tmp = None
    if model_dir is None or tc_dir is None:
        dm, dt = _demo_paths()
        model_dir, tc_dir, source = model_dir or dm, tc_dir or dt, "demo"
        if model_dir is None or tc_dir is None:
            if not args.synthetic:
                print("no demo model/transcoders ship in circuitdb/demo_data yet; pass --model/--transcoders or --synthetic",
                      file=sys.stderr)
                return 2
            tmp = tempfile.TemporaryDirectory()
            model_dir, tc_dir = _synthetic(Path(tmp.name), adata)
            source = "synthetic (tiny random NeoX, 4 x 512 relu features)"
    meta_path = Path(model_dir) / "circuitdb.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    loaded = load_model(model_dir)
    tcs = load_transcoder_dir(tc_dir)
    opts = SentenceOptions(top_k=args.top_k or int(meta.get("top_k", 0) or 0) or 200, label_key=args.label_key)
    cells = list(iter_cell_sentences(adata, opts))[: args.cells]
    n_params = sum(p.numel() for p in loaded.model.parameters())
    d_model = int(loaded.model.config.hidden_size)
    n_feat_total = sum(t.cfg.d_features for t in tcs.values())

    # -- model forward alone (per-token cost of the model) -----------------------------------
    from circuitdb.loaders.prompts import build_prompt, gene_token_spans

    t0 = time.perf_counter()
    n_tokens = 0
    with torch.inference_mode():
        for c in cells:
            ids, _ = gene_token_spans(loaded.tokenizer, build_prompt(c.genes, organism=opts.organism))
            n_tokens += len(ids)
            loaded.model(torch.tensor([ids]))
    t_forward = time.perf_counter() - t0

    # -- collection of every feature -----------------------------------------------------------
    t0 = time.perf_counter()
    with torch.inference_mode():
        stats_all = collect_feature_stats(loaded.model, loaded.tokenizer, tcs, cells, organism=opts.organism)
    t_collect = time.perf_counter() - t0
    peak_collect = _peak_mib()
    active = active_features(stats_all)
    stats = subset_stats(stats_all, active)

    libs = build_libraries(adata, args.label_key).libraries
    t0 = time.perf_counter()
    interp = interpret_features(stats, libs, control_seed=0)
    t_interpret = time.perf_counter() - t0
    peak_total = _peak_mib()

    # -- enrichment: vectorised vs naive per-test loop on the same features ---------------------
    tops = top_genes(stats)
    sub = dict(list(tops.items())[: args.naive_features])
    t0 = time.perf_counter()
    vec = enrich(sub, libs, stats.genes)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows, q_naive = naive_enrich(sub, libs, stats.genes)
    t_naive = time.perf_counter() - t0
    assert len(rows) == len(vec) and np.allclose(np.sort(q_naive), np.sort(vec["q"].to_numpy()))

    # -- projection to C2S-Pythia-410m: 24 layers x 32,768 features, d_model 1024 ----------------
    n_feat_410 = 24 * 32768
    params_410 = 405_000_000
    t_encode = max(t_collect - t_forward, 1e-9)
    per_tok_feat = t_encode / (n_tokens * n_feat_total * d_model)  # seconds per token x feature x d_model
    proj_collect = (t_forward / n_tokens) * (params_410 / n_params) * n_tokens + per_tok_feat * n_tokens * n_feat_410 * 1024
    per_feature_interp = t_interpret / max(len(stats.features), 1)
    proj_interp = per_feature_interp * n_feat_410
    n_genes = len(stats.genes)
    proj_mem_gib = (n_feat_410 * n_genes * 8 + len(cells) * n_feat_410 * 4) / 2**30
    out = {
        "source": source,
        "model_dir": str(model_dir) if source != "synthetic (tiny random NeoX, 4 x 512 relu features)" else "synthetic",
        "n_cells": len(cells), "n_tokens": n_tokens, "n_params": n_params, "d_model": d_model,
        "n_layers": len(tcs), "n_features_total": n_feat_total, "n_features_active": len(stats.features),
        "n_genes_seen": n_genes, "n_tests": int(len(interp.enrichment)),
        "interpretable_fraction": interp.interpretable_fraction, "control_fraction": interp.control_fraction,
        "minutes": {"model_forward": t_forward / 60, "collect_all_features": t_collect / 60,
                    "interpret_all_features": t_interpret / 60, "total": (t_collect + t_interpret) / 60},
        "peak_rss_mib": {"after_collect": round(peak_collect, 1), "after_interpret": round(peak_total, 1)},
        "enrichment_baseline": {"features": len(sub), "tests": len(rows), "vectorised_s": t_vec, "naive_scipy_loop_s": t_naive},
        "ratio_vectorised_vs_naive": t_naive / t_vec if t_vec > 0 else None,
        "projection_c2s_pythia_410m": {
            "features": n_feat_410, "same_cells": len(cells),
            "collect_hours": proj_collect / 3600, "interpret_hours": proj_interp / 3600,
            "stats_memory_gib_float64_mass": proj_mem_gib,
            "note": "linear in cells x tokens for collection and in features for interpretation; "
                    "the mass matrix is features x genes seen, so run layer by layer beyond a few GiB",
        },
        "threads": args.threads,
    }
    print(json.dumps(out, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
