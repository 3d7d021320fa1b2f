"""The attribution graph of one prompt: plain tensors plus node descriptions.

Convention (as circuit-tracer): ``adjacency[target, source]`` is the direct
effect of ``source`` on ``target`` in the frozen (local replacement) model.
Node order is fixed: features, then errors, then genes / other input tokens,
then bias/embedding terms, then targets (logits). Pure data: no model here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

GraphNodeKind = Literal["feature", "error", "gene", "token", "bias", "target"]


@dataclass
class GraphNode:
    """One node. ``pos`` is the token position (first token of a gene's span for genes).

    feature: layer, pos, index, activation; error: layer, pos;
    gene: gene symbol, pos (span start), span_end; token: a non-gene token at pos;
    bias: the summed bias terms (layer or -1 for all); target: token id / label.
    """

    kind: GraphNodeKind
    layer: int | None = None
    pos: int | None = None
    index: int | None = None
    activation: float = 0.0
    gene: str | None = None
    span_end: int | None = None
    token: str | None = None
    label: str | None = None

    @property
    def key(self) -> str:
        if self.kind == "feature":
            return f"{self.layer}_{self.index}_{self.pos}"
        if self.kind == "error":
            return f"E_{self.layer}_{self.pos}"
        if self.kind == "gene":
            return f"G_{self.gene}_{self.pos}"
        if self.kind == "token":
            return f"T_{self.pos}"
        if self.kind == "bias":
            return f"B_{self.layer}"
        return f"L_{self.label}"


@dataclass
class AttributionGraph:
    """Direct-effect graph of one prompt.

    Attributes
    ----------
    nodes
        Node descriptions, in the fixed order above.
    adjacency
        ``(n, n)`` float tensor, ``adjacency[t, s]`` = direct effect of node ``s`` on node ``t``.
    head_edges
        ``(E, 2)`` long tensor of (target, source) node pairs whose edge crosses positions.
    head_weights
        ``(E, n_layers, n_heads)`` float tensor: each such edge split per attention head
        (OV circuit weighted by the frozen pattern). Rows sum, over heads, to the
        cross-position part of the edge.
    values
        ``(n,)`` each node's own value: feature pre-activation, error magnitude, logit for targets.
    metadata
        prompt, cell id, label, target description, model/transcoder hashes...
    pair_index, pair_virtual
        Feature pairs ``(K, 2)`` (target node, source node) at the same position with their
        input-invariant virtual weight ``(K,)`` (``W_dec . N^T W_enc`` through the frozen
        norms); attribution = source activation x virtual weight (:func:`feature_pairs`).
    """

    nodes: list[GraphNode]
    adjacency: torch.Tensor
    head_edges: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))
    head_weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, 0))
    values: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    pair_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))
    pair_virtual: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if tuple(self.adjacency.shape) != (n, n):
            raise ValueError(f"adjacency must be ({n}, {n}), got {tuple(self.adjacency.shape)}")

    def indices(self, kind: GraphNodeKind) -> torch.Tensor:
        return torch.tensor([i for i, nd in enumerate(self.nodes) if nd.kind == kind], dtype=torch.long)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(
            {
                "nodes": [asdict(nd) for nd in self.nodes],
                "adjacency": self.adjacency,
                "head_edges": self.head_edges,
                "head_weights": self.head_weights,
                "values": self.values,
                "metadata": json.loads(json.dumps(self.metadata, default=str)),
                "pair_index": self.pair_index,
                "pair_virtual": self.pair_virtual,
            },
            tmp,
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AttributionGraph":
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(
            nodes=[GraphNode(**nd) for nd in d["nodes"]],
            adjacency=d["adjacency"],
            head_edges=d["head_edges"],
            head_weights=d["head_weights"],
            values=d["values"],
            metadata=d["metadata"],
            pair_index=d.get("pair_index", torch.zeros(0, 2, dtype=torch.long)),
            pair_virtual=d.get("pair_virtual", torch.zeros(0)),
        )


def feature_pairs(graph: AttributionGraph) -> "Any":
    """Feature pairs of a graph as a DataFrame.

    Columns: ``target``, ``source`` (node keys), ``target_layer``, ``source_layer``, ``pos``,
    ``virtual_weight`` (input-invariant), ``activation`` (source), ``attribution``
    (activation x virtual weight: the residual-path part of the edge) and ``edge``
    (the full direct effect, which also counts attention and skip paths).
    """
    import pandas as pd

    rows = []
    for (t, s), vw in zip(graph.pair_index.tolist(), graph.pair_virtual.tolist()):
        nt, ns = graph.nodes[t], graph.nodes[s]
        rows.append({
            "target": nt.key, "source": ns.key, "target_layer": nt.layer, "source_layer": ns.layer, "pos": nt.pos,
            "virtual_weight": vw, "activation": ns.activation, "attribution": ns.activation * vw,
            "edge": float(graph.adjacency[t, s]),
        })
    cols = ["target", "source", "target_layer", "source_layer", "pos", "virtual_weight", "activation", "attribution", "edge"]
    return pd.DataFrame(rows, columns=cols)
