"""Circuits per cell type: prune each cell's graph, collapse positions, average over cells.

Per cell (:func:`summarize_cell`), after pruning, every kept node is collapsed
to a position-free id (see :mod:`circuitdb.attribution.circuit`):

* feature ``(layer, pos, index)`` -> ``feat:{layer}:{index}``
* gene at any position -> ``gene:{SYMBOL}``
* error ``(layer, pos)`` -> ``err:{layer}``
* non-gene prompt token -> ``emb:{token text}`` (the template tokens, shared by all cells)
* bias -> ``bias:{layer}``
* target -> ``target:{cell_type}`` (a graph with several targets, e.g. a contrast,
  keeps the others as ``target:{label}``)

Within a cell, a collapsed node's influence is the sum over its positions (influence is
additive), its activation the mean over its kept positions, its ``effect`` the sum of the
signed total effects on the target of all its positions, kept or not
(:func:`circuitdb.attribution.prune.compute_total_effect`); a collapsed edge's weight
is the sum of the kept direct effects between the positions it merges (self-loops are
dropped), and its per-head split the sum of the kept per-head rows.

Across the N cells (:func:`aggregate`): weights, influences and head contributions are
means over all N cells with absent counted as 0; ``frequency`` is the fraction of
cells in which the node / edge / head-on-edge was kept; a node's activation is the mean
over the cells that kept it.

What is kept in the circuit ("what carries the cell type's influence"): within each
group (features; genes; other inputs = errors, embeddings, biases), nodes sorted by mean
influence (ties by id) until ``keep_fraction`` of the group's total mean influence is
covered, at least ``min_features`` features (when there are that many), at most
``max_features`` / ``max_genes``; nodes seen in fewer than ``min_frequency`` of the cells
are dropped first. Edges are kept when both ends are kept; per-head rows when the head
carries at least ``head_min_share`` of the edge's absolute head mass.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from circuitdb.attribution.circuit import (
    Circuit,
    CircuitEdge,
    CircuitNode,
    HeadWeight,
    NodeKind,
    Provenance,
    bias_id,
    embedding_id,
    error_id,
    feature_id,
    gene_id,
    target_id,
)
from circuitdb.attribution.graph import AttributionGraph, GraphNode
from circuitdb.attribution.prune import PruneResult, compute_total_effect, node_gains, target_weights_of


@dataclass
class NodeStat:
    """One collapsed node in one cell."""

    kind: NodeKind
    layer: int | None = None
    index: int | None = None
    gene: str | None = None
    label: str | None = None
    influence: float = 0.0
    activation: float = 0.0


@dataclass
class CellSummary:
    """The pruned, position-collapsed graph of one cell (small and picklable).

    ``edges`` and ``heads`` are keyed by ``(source_id, target_id)``; ``heads`` maps to a
    ``(n_layers, n_heads)`` tensor. ``active_features`` lists every (layer, index)
    active anywhere in the cell, kept or not (the pool for random ablations).
    """

    cell_id: str
    cell_type: str
    nodes: dict[str, NodeStat]
    edges: dict[tuple[str, str], float]
    heads: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    active_features: list[tuple[int, int]] = field(default_factory=list)
    effects: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AggregateOptions:
    """What the aggregated circuit keeps (see the module docstring)."""

    keep_fraction: float = 0.8
    min_features: int = 50
    max_features: int | None = 300
    max_genes: int | None = 100
    min_frequency: float = 0.0
    head_min_share: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if not 0.0 <= self.min_frequency <= 1.0:
            raise ValueError(f"min_frequency must be in [0, 1], got {self.min_frequency}")
        if self.min_features < 0:
            raise ValueError("min_features must be >= 0")


def collapse_node(node: GraphNode, cell_type: str, single_target: bool) -> tuple[str, NodeStat]:
    """The position-free id and descriptor of one graph node."""
    if node.kind == "feature":
        return feature_id(int(node.layer), int(node.index)), NodeStat("feature", layer=node.layer, index=node.index)  # type: ignore[arg-type]
    if node.kind == "gene":
        return gene_id(str(node.gene)), NodeStat("gene", gene=node.gene)
    if node.kind == "error":
        return error_id(int(node.layer)), NodeStat("error", layer=node.layer)  # type: ignore[arg-type]
    if node.kind == "token":
        tok = node.token if node.token is not None else f"pos{node.pos}"
        return embedding_id(tok), NodeStat("embedding", label=tok)
    if node.kind == "bias":
        layer = -1 if node.layer is None else int(node.layer)
        return bias_id(layer), NodeStat("bias", layer=layer)
    name = cell_type if single_target or node.label is None else node.label
    return target_id(name), NodeStat("target", label=name)


def summarize_cell(graph: AttributionGraph, pruned: PruneResult, cell_type: str, cell_id: str | None = None) -> CellSummary:
    """Collapse one cell's pruned graph to position-free nodes and edges.

    Parameters
    ----------
    graph
        The cell's attribution graph.
    pruned
        :func:`circuitdb.attribution.prune.prune` of it.
    cell_type
        The cell type the circuit is for (names the target).
    cell_id
        Defaults to ``graph.metadata['cell_id']``.

    Returns
    -------
    CellSummary
    """
    n_targets = sum(nd.kind == "target" for nd in graph.nodes)
    keys: list[str] = []
    stats: dict[str, NodeStat] = {}
    counts: dict[str, int] = {}
    keep = pruned.node_mask.tolist()
    infl = pruned.influence.tolist()
    active: set[tuple[int, int]] = set()
    for i, nd in enumerate(graph.nodes):
        key, stat = collapse_node(nd, cell_type, n_targets == 1)
        keys.append(key)
        if nd.kind == "feature":
            active.add((int(nd.layer), int(nd.index)))  # type: ignore[arg-type]
        if not keep[i]:
            continue
        cur = stats.setdefault(key, stat)
        cur.influence += float(infl[i])
        if nd.kind == "feature":
            cur.activation += float(nd.activation)
            counts[key] = counts.get(key, 0) + 1
    for key, c in counts.items():
        stats[key].activation /= c

    emask = pruned.edge_mask & pruned.node_mask[:, None] & pruned.node_mask[None, :]
    edges: dict[tuple[str, str], float] = {}
    tgt, src = torch.nonzero(emask, as_tuple=True)
    weights = graph.adjacency[tgt, src].to(torch.float64).tolist()
    for t, s, w in zip(tgt.tolist(), src.tolist(), weights):
        ks, kt = keys[s], keys[t]
        if ks == kt:
            continue
        edges[(ks, kt)] = edges.get((ks, kt), 0.0) + w

    heads: dict[tuple[str, str], torch.Tensor] = {}
    if graph.head_edges.numel():
        he = graph.head_edges
        sel = emask[he[:, 0], he[:, 1]]
        for row in torch.nonzero(sel).flatten().tolist():
            t, s = int(he[row, 0]), int(he[row, 1])
            ks, kt = keys[s], keys[t]
            if ks == kt:
                continue
            hw = graph.head_weights[row].to(torch.float64)
            if (ks, kt) in heads:
                heads[(ks, kt)] = heads[(ks, kt)] + hw
            else:
                heads[(ks, kt)] = hw.clone()
    effects: dict[str, float] = {}
    eff = compute_total_effect(graph.adjacency, target_weights_of(graph), node_gains(graph)).tolist()
    for i, nd in enumerate(graph.nodes):
        if nd.kind != "target":
            effects[keys[i]] = effects.get(keys[i], 0.0) + float(eff[i])
    cid = cell_id if cell_id is not None else str(graph.metadata.get("cell_id", ""))
    return CellSummary(cid, cell_type, stats, edges, heads, sorted(active), effects)


def _select(ids: list[str], infl: dict[str, float], fraction: float, minimum: int, maximum: int | None) -> list[str]:
    order = sorted(ids, key=lambda k: (-infl[k], k))
    total = sum(max(infl[k], 0.0) for k in order)
    out: list[str] = []
    acc = 0.0
    for k in order:
        if maximum is not None and len(out) >= maximum:
            break
        if total > 0 and acc >= fraction * total and len(out) >= minimum:
            break
        if total <= 0 and len(out) >= minimum:
            break
        out.append(k)
        acc += max(infl[k], 0.0)
    return out


def aggregate(summaries: Sequence[CellSummary], provenance: Provenance, options: AggregateOptions | None = None) -> Circuit:
    """Average the cell summaries of one cell type into a :class:`Circuit`.

    Parameters
    ----------
    summaries
        One per cell, all of ``provenance.cell_type``. The order is the order of
        summation, so pass them in a fixed (cell) order for bitwise reproducibility.
    provenance
        Stored as is; see :func:`make_provenance`.
    options
        What to keep (see the module docstring).

    Returns
    -------
    Circuit
        Nodes: the target, then features, genes and other inputs, each by mean
        influence; edges by absolute mean weight.
    """
    if not summaries:
        raise ValueError("aggregate needs at least one cell summary")
    opts = options or AggregateOptions()
    n = len(summaries)
    infl: dict[str, float] = {}
    freq: dict[str, int] = {}
    act: dict[str, float] = {}
    desc: dict[str, NodeStat] = {}
    for cs in summaries:
        for k, st in cs.nodes.items():
            infl[k] = infl.get(k, 0.0) + st.influence
            freq[k] = freq.get(k, 0) + 1
            act[k] = act.get(k, 0.0) + st.activation
            desc.setdefault(k, st)
    mean_infl = {k: v / n for k, v in infl.items()}
    effect: dict[str, float] = {}
    for cs in summaries:
        for k, v in cs.effects.items():
            effect[k] = effect.get(k, 0.0) + v

    eligible = [k for k in desc if freq[k] / n >= opts.min_frequency]
    groups: dict[str, list[str]] = {"feature": [], "gene": [], "other": [], "target": []}
    for k in eligible:
        kind = desc[k].kind
        groups[kind if kind in ("feature", "gene", "target") else "other"].append(k)
    kept = (
        sorted(groups["target"])
        + _select(groups["feature"], mean_infl, opts.keep_fraction, opts.min_features, opts.max_features)
        + _select(groups["gene"], mean_infl, opts.keep_fraction, 0, opts.max_genes)
        + _select(groups["other"], mean_infl, opts.keep_fraction, 0, None)
    )
    kept_set = set(kept)

    nodes: list[CircuitNode] = []
    for k in kept:
        st = desc[k]
        nodes.append(CircuitNode(
            id=k, kind=st.kind, layer=st.layer, index=st.index, gene=st.gene,
            cell_type=provenance.cell_type if st.kind == "target" else None,
            influence=mean_infl[k], frequency=freq[k] / n, activation=act[k] / freq[k],
            label=st.label, effect=effect.get(k, 0.0) / n,
        ))

    esum: dict[tuple[str, str], float] = {}
    ecount: dict[tuple[str, str], int] = {}
    hsum: dict[tuple[str, str], torch.Tensor] = {}
    hcount: dict[tuple[str, str], torch.Tensor] = {}
    for cs in summaries:
        for e, w in cs.edges.items():
            if e[0] in kept_set and e[1] in kept_set:
                esum[e] = esum.get(e, 0.0) + w
                ecount[e] = ecount.get(e, 0) + 1
        for e, hw in cs.heads.items():
            if e[0] in kept_set and e[1] in kept_set:
                hsum[e] = hsum[e] + hw if e in hsum else hw.clone()
                nz = (hw != 0).to(torch.float64)
                hcount[e] = hcount[e] + nz if e in hcount else nz

    edges: list[CircuitEdge] = []
    for e in sorted(esum, key=lambda e: (-abs(esum[e]), e)):
        heads: list[HeadWeight] = []
        if e in hsum:
            mean_h = hsum[e] / n
            mass = float(mean_h.abs().sum())
            if mass > 0:
                for layer, head in torch.nonzero(mean_h.abs() >= opts.head_min_share * mass).tolist():
                    w = float(mean_h[layer, head])
                    if w != 0.0:
                        heads.append(HeadWeight(layer, head, w, float(hcount[e][layer, head]) / n))
                heads.sort(key=lambda h: (-abs(h.weight), h.layer, h.head))
        edges.append(CircuitEdge(e[0], e[1], esum[e] / n, ecount[e] / n, heads))
    return Circuit(provenance, nodes, edges)


def code_version() -> str:
    """``circuitdb.__version__`` plus ``+g<short sha>`` (and ``.dirty``) when run from a git checkout."""
    from circuitdb import __version__

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}" if sha else __version__


def make_provenance(
    *,
    cell_type: str,
    cells: Iterable[str],
    method: str,
    thresholds: dict[str, float],
    model: str,
    model_hash: str,
    transcoders: str,
    transcoder_hash: str,
    dataset: str,
    dataset_id: str,
    dataset_n_cells: int = 0,
    dataset_source: str = "",
    architecture: str = "",
    n_layers: int = 0,
    transcoder_kind: str = "",
    d_features: int = 0,
    created: str | None = None,
    version: str | None = None,
) -> Provenance:
    """A :class:`Provenance` stamped with the code version and a UTC creation time."""
    return Provenance(
        model=model, model_hash=model_hash, transcoders=transcoders, transcoder_hash=transcoder_hash,
        dataset=dataset, dataset_id=dataset_id, cell_type=cell_type, cells=list(cells), method=method,
        thresholds={k: float(v) for k, v in thresholds.items()},
        code_version=version if version is not None else code_version(),
        created=created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        architecture=architecture, n_layers=n_layers, transcoder_kind=transcoder_kind, d_features=d_features,
        dataset_n_cells=dataset_n_cells, dataset_source=dataset_source,
    )
