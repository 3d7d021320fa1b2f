"""Random attribution graphs with a known planted circuit, for tests and benchmarks.

No model is involved: the graph has the shape :func:`attribute` produces
(features, errors, genes, tokens, bias, target in that order; edges only from
earlier layers and earlier-or-same positions; cross-position edges split over
attention heads), random sparse weights, and a *planted* path
``gene -> feature (0, 0) -> feature (n_layers - 1, 0) -> target`` at the last
position whose weights dominate, so pruning and aggregation have a right answer.
"""

from __future__ import annotations

from typing import Sequence

import torch

from circuitdb.attribution.graph import AttributionGraph, GraphNode

PLANTED_FEATURE_INDEX = 0


def random_graph(
    seed: int,
    genes: Sequence[str],
    *,
    label: str = "T cell",
    n_layers: int = 2,
    d_features: int = 32,
    active_per_site: int = 3,
    n_heads: int = 2,
    density: float = 0.5,
    planted_gene: str | None = None,
    planted_weight: float = 8.0,
    cell_id: str | None = None,
) -> AttributionGraph:
    """A random DAG-shaped attribution graph of one "cell".

    Parameters
    ----------
    seed
        Seeds everything; the same seed gives the same graph.
    genes
        The cell sentence: gene ``i`` sits at position ``i + 1`` (position 0
        is a template token, the last position a second one, where the target is).
    label
        Target label (the cell type).
    n_layers, d_features, active_per_site, n_heads
        Model shape: random features ``1..d_features-1`` are active per (layer, position).
    density
        Fraction of allowed edges that get a non-zero random weight.
    planted_gene
        Gene feeding the planted path (default: the first gene).
    planted_weight
        Weight of each planted edge (random weights are standard normal / 4).
    cell_id
        Stored in ``metadata['cell_id']`` (default ``cell{seed}``).

    Returns
    -------
    AttributionGraph
    """
    g = torch.Generator().manual_seed(seed)
    genes = list(genes)
    n_pos = len(genes) + 2
    last = n_pos - 1
    planted_gene = planted_gene or genes[0]

    feats: list[GraphNode] = []
    for layer in range(n_layers):
        for pos in range(n_pos):
            idx = (torch.randperm(d_features - 1, generator=g)[:active_per_site] + 1).tolist()
            if pos == last and layer in (0, n_layers - 1):
                idx = [PLANTED_FEATURE_INDEX] + idx[:-1]
            for i in sorted(idx):
                act = float(torch.rand(1, generator=g)) * 1.5 + 0.5
                feats.append(GraphNode("feature", layer=layer, pos=pos, index=int(i), activation=act))
    errors = [GraphNode("error", layer=layer, pos=pos) for layer in range(n_layers) for pos in range(n_pos)]
    gene_nodes = [GraphNode("gene", pos=i + 1, gene=gname, span_end=i + 2) for i, gname in enumerate(genes)]
    tokens = [GraphNode("token", pos=0, token="The"), GraphNode("token", pos=last, token=":")]
    bias = [GraphNode("bias", layer=-1)]
    target = [GraphNode("target", pos=last, label=label)]
    nodes = feats + errors + gene_nodes + tokens + bias + target
    n = len(nodes)

    def layer_of(nd: GraphNode) -> float:
        if nd.kind in ("feature", "error"):
            return float(nd.layer)  # type: ignore[arg-type]
        if nd.kind == "target":
            return float(n_layers)
        return -1.0

    adj = torch.zeros(n, n)
    for t, nt in enumerate(nodes):
        if nt.kind not in ("feature", "target"):
            continue
        for s, ns in enumerate(nodes):
            if layer_of(ns) >= layer_of(nt):
                continue
            if ns.pos is not None and nt.pos is not None and ns.pos > nt.pos:
                continue
            if float(torch.rand(1, generator=g)) < density:
                adj[t, s] = float(torch.randn(1, generator=g)) / 4

    def find(pred) -> int:  # type: ignore[no-untyped-def]
        return next(i for i, nd in enumerate(nodes) if pred(nd))

    f0 = find(lambda nd: nd.kind == "feature" and nd.layer == 0 and nd.pos == last and nd.index == PLANTED_FEATURE_INDEX)
    f1 = find(lambda nd: nd.kind == "feature" and nd.layer == n_layers - 1 and nd.pos == last and nd.index == PLANTED_FEATURE_INDEX)
    gi = find(lambda nd: nd.kind == "gene" and nd.gene == planted_gene)
    ti = n - 1
    adj[f0, gi] = planted_weight
    if f1 != f0:
        adj[f1, f0] = planted_weight
    adj[ti, f1] = planted_weight

    # per-head split of every cross-position edge into a feature or the target
    pairs: list[tuple[int, int]] = []
    rows: list[torch.Tensor] = []
    for t, s in torch.nonzero(adj).tolist():
        ns, nt = nodes[s], nodes[t]
        if ns.pos is None or nt.pos is None or ns.pos == nt.pos:
            continue
        top = min(int(layer_of(nt)), n_layers)
        lo = int(max(layer_of(ns), -1)) + 1
        if top <= lo:
            continue
        share = torch.zeros(n_layers, n_heads)
        share[lo:top] = torch.rand(top - lo, n_heads, generator=g)
        share = share / share.sum()
        pairs.append((t, s))
        rows.append(share * adj[t, s])
    head_edges = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    head_weights = torch.stack(rows) if rows else torch.zeros(0, n_layers, n_heads)

    values = torch.tensor([nd.activation for nd in nodes])
    values[ti] = adj[ti].sum()
    return AttributionGraph(
        nodes=nodes, adjacency=adj, head_edges=head_edges, head_weights=head_weights, values=values,
        metadata={"cell_id": cell_id or f"cell{seed}", "label": label, "prompt_tokens": ["The"] + genes + [":"]},
    )
