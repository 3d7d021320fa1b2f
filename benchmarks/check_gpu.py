"""Attribution on a CUDA GPU gives the CPU's graph: a check for machines that have one.

CI has no GPU, so this is not a test; run it where ``torch.cuda.is_available()``. For tiny
seeded float64 models of both architectures (GPT-NeoX with and without parallel residual,
Gemma-2) and three transcoder kinds, it runs ``attribute()`` once with the model and
transcoders on the CPU and once on the GPU (full graphs, a feature budget, the per-head split
and feature pairs) and compares everything the graph holds:

* the node lists are identical (the same features selected, in the same order);
* adjacency, node values, head weights and pair virtual weights agree to ``TOLERANCE`` (1e-5) of
  the largest entry. Not float64 round-off: Hugging Face computes the rotary angles in float32
  even for a float64 model, and the CPU's and the GPU's float32 ``cos``/``sin`` differ in the
  last bits, so the two frozen attention patterns differ by ~1e-7 relative (seen on an H200:
  3e-10 to 5e-7 of the largest entry, with identical node lists);
* the float64 completeness check (incoming edges sum to each feature's pre-activation and to
  the target logit) holds to 1e-6 relative on the GPU graph.

Then, where anndata is installed, it runs the CLI on a tiny model and dataset: ``circuitdb
attribute --float64 --max-feature-nodes 30`` once with ``--device cpu`` and once with the GPU,
and compares the two graphs the same way.

It prints one line per case and exits 1 if any case fails. Usage::

    python benchmarks/check_gpu.py            # cuda:0
    python benchmarks/check_gpu.py --device cuda:1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from attr_fixtures import CELL_TYPES, GENES, random_transcoders, tiny_gemma, tiny_neox, tiny_tokenizer, write_cli_inputs  # noqa: E402

from circuitdb.attribution.attribute import attribute  # noqa: E402
from circuitdb.attribution.graph import AttributionGraph  # noqa: E402
from circuitdb.loaders.prompts import PromptTemplate  # noqa: E402
from circuitdb.loaders.sentences import CellSentence  # noqa: E402

SHORT = PromptTemplate(prompt="Cell sentence: {genes}.\nThe cell type is:")
CELL = CellSentence("cell-7", 7, "CD19+ B", tuple(GENES[:12]))
#: largest CPU/GPU difference allowed, relative to the largest entry (see the module docstring)
TOLERANCE = 1e-5
CASES = [  # (architecture, activation, skip, feature budget)
    ("neox", "topk", False, None), ("neox", "relu", True, 24), ("neox_seq", "jumprelu", False, None),
    ("gemma2", "topk", False, 24), ("gemma2", "relu", True, None),
]


def _model(arch: str) -> torch.nn.Module:
    return {"neox": lambda: tiny_neox(layers=3), "neox_seq": lambda: tiny_neox(parallel=False, layers=3),
            "gemma2": lambda: tiny_gemma(layers=3)}[arch]()


def _graph(model: torch.nn.Module, tcs: dict, budget: int | None) -> AttributionGraph:
    return attribute(CELL, model, tcs, tokenizer=tiny_tokenizer(), candidates=CELL_TYPES, template=SHORT,
                     max_feature_nodes=budget, head_split_nodes=8, head_edges_per_node=None, pairs=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if b.numel() else 0.0


def _completeness(g: AttributionGraph) -> float:
    rows = [i for i, nd in enumerate(g.nodes) if nd.kind in ("feature", "target")]
    assert g.values is not None
    got, want = g.adjacency[rows].sum(1).cpu(), g.values[rows].cpu()
    return float(((got - want).abs() / want.abs().clamp_min(1e-3)).max())


def _cli_case(dev: torch.device) -> bool:
    """``circuitdb attribute`` with ``--device cpu`` and with ``dev`` on a tiny saved model and dataset."""
    try:
        import anndata  # noqa: F401  (the CLI reads the dataset through it)
    except ImportError:
        print("skip CLI   anndata is not installed here")
        return True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cli_inputs(root, top_k=12, n_features=48, k=6)
        graphs = []
        for d in ("cpu", str(dev)):
            out = root / f"graph_{d.replace(':', '_')}.pt"
            cmd = [sys.executable, "-m", "circuitdb", "--hide-progress", "attribute", "--model", str(root / "model"),
                   "--transcoders", str(root / "tc"), str(root / "data.h5ad"), "--cell", "cell1", "--float64",
                   "--max-feature-nodes", "30", "--device", d, "--out", str(out)]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)  # cwd: the installed package, not a checkout's
            if r.returncode != 0:
                print(f"FAIL CLI   --device {d}: rc {r.returncode}: {r.stderr.strip()[-300:]}")
                return False
            graphs.append(AttributionGraph.load(out))
    cpu, gpu = graphs
    same_nodes = [nd.key for nd in cpu.nodes] == [nd.key for nd in gpu.nodes]
    diff, comp = _rel(gpu.adjacency, cpu.adjacency), _completeness(gpu)
    ok = same_nodes and diff <= TOLERANCE and comp < 1e-6
    print(f"{'ok  ' if ok else 'FAIL'} CLI      circuitdb attribute --device {dev} vs cpu: nodes={len(gpu.nodes)} same nodes={same_nodes} "
          f"adjacency={diff:.1e} completeness={comp:.1e}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("check_gpu: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with a GPU", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    failed = 0
    for arch, activation, skip, budget in CASES:
        model = _model(arch)
        tcs = random_transcoders(model, activation=activation, skip=skip, n_features=48)
        t0 = time.perf_counter()
        cpu = _graph(model, tcs, budget)
        t1 = time.perf_counter()
        gpu = _graph(model.to(dev), {i: tc.to(dev) for i, tc in tcs.items()}, budget)
        torch.cuda.synchronize(dev)
        t2 = time.perf_counter()
        same_nodes = [nd.key for nd in cpu.nodes] == [nd.key for nd in gpu.nodes]
        diffs = {"adjacency": _rel(gpu.adjacency, cpu.adjacency), "values": _rel(gpu.values, cpu.values),
                 "head_weights": _rel(gpu.head_weights, cpu.head_weights), "pair_virtual": _rel(gpu.pair_virtual, cpu.pair_virtual)}
        same_heads = torch.equal(gpu.head_edges.cpu(), cpu.head_edges) and torch.equal(gpu.pair_index.cpu(), cpu.pair_index)
        comp = _completeness(gpu)
        ok = same_nodes and same_heads and max(diffs.values()) <= TOLERANCE and comp < 1e-6
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {arch:8s} {activation:8s} skip={skip!s:5s} budget={budget!s:4s} nodes={len(gpu.nodes):4d} "
              f"same nodes={same_nodes} same head/pair index={same_heads} "
              + " ".join(f"{k}={v:.1e}" for k, v in diffs.items())
              + f" completeness={comp:.1e} | cpu {t1 - t0:.2f}s gpu {t2 - t1:.2f}s", flush=True)
    failed += not _cli_case(dev)
    print("check_gpu: all cases agree" if not failed else f"check_gpu: {failed} case(s) FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
