"""Synthetic circuits (seeded) for tests, demos and benchmarks of the graph stage.

They have the shape of real ones: genes -> features -> features -> the cell type,
per-head parts on gene -> feature edges, and one error node (skipped by the schema).
"""

from __future__ import annotations

import random

from circuitdb.attribution.circuit import (
    Circuit,
    CircuitEdge,
    CircuitNode,
    HeadWeight,
    Provenance,
    feature_id,
    gene_id,
    target_id,
)

MODEL_HASH = "m" * 8 + "0123456789abcdef" * 3
TRANSCODER_HASH = "t" * 8 + "fedcba9876543210" * 3


def provenance(cell_type: str, dataset: str = "pbmc68k_reduced", *, n_cells: int = 10,
               model_hash: str = MODEL_HASH, transcoder_hash: str = TRANSCODER_HASH) -> Provenance:
    """A complete provenance for a synthetic circuit."""
    return Provenance(
        model="demo-c2s", model_hash=model_hash, transcoders="demo-transcoders", transcoder_hash=transcoder_hash,
        dataset=dataset, dataset_id=dataset, cell_type=cell_type, cells=[f"cell{i}" for i in range(n_cells)],
        method="mean-over-cells", thresholds={"node": 0.8, "edge": 0.98}, code_version="0.1.0",
        created="2026-11-25T00:00:00Z", architecture="gpt_neox", n_layers=4, transcoder_kind="plt",
        d_features=4096, dataset_n_cells=700, dataset_source="scanpy.datasets.pbmc68k_reduced",
    )


def synthetic_circuit(
    cell_type: str,
    dataset: str = "pbmc68k_reduced",
    *,
    n_genes: int = 20,
    n_features: int = 40,
    n_edges: int = 200,
    n_layers: int = 4,
    n_heads: int = 2,
    feature_pool: int = 400,
    gene_pool: int = 200,
    seed: int = 0,
) -> Circuit:
    """A seeded random circuit with about ``n_edges`` weighted edges.

    Genes and features are drawn from shared pools, so circuits of several cell types
    overlap the way real ones do.
    """
    rng = random.Random(f"{cell_type}|{dataset}|{seed}")
    genes = rng.sample([f"G{i}" for i in range(gene_pool)], n_genes)
    feats = sorted({(rng.randrange(n_layers), rng.randrange(feature_pool)) for _ in range(n_features)})
    nodes = [CircuitNode(gene_id(g), "gene", gene=g, influence=rng.random(), frequency=1.0) for g in genes]
    nodes += [CircuitNode(feature_id(l, i), "feature", layer=l, index=i, influence=rng.random(),
                          frequency=rng.random(), activation=rng.random() * 3) for l, i in feats]
    nodes.append(CircuitNode("err:0", "error", layer=0))
    nodes.append(CircuitNode(target_id(cell_type), "target", cell_type=cell_type))
    candidates: list[tuple[str, str]] = []
    for g in genes:
        for l, i in feats:
            candidates.append((gene_id(g), feature_id(l, i)))
    for la, ia in feats:
        for lb, ib in feats:
            if la < lb:
                candidates.append((feature_id(la, ia), feature_id(lb, ib)))
    for l, i in feats:
        candidates.append((feature_id(l, i), target_id(cell_type)))
    chosen = rng.sample(candidates, min(n_edges, len(candidates)))
    edges = []
    for s, t in chosen:
        w = round(rng.uniform(-1, 1), 6)
        heads = []
        if s.startswith("gene:"):
            heads = [HeadWeight(layer=rng.randrange(n_layers), head=h, weight=round(w / n_heads, 6), frequency=1.0)
                     for h in range(n_heads)]
            # distinct (layer, head) pairs
            heads = list({(hw.layer, hw.head): hw for hw in heads}.values())
        edges.append(CircuitEdge(s, t, w, round(rng.random(), 6), heads))
    edges.append(CircuitEdge("err:0", target_id(cell_type), 0.01))
    return Circuit(provenance(cell_type, dataset), nodes, edges)
