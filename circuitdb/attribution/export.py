"""Graph file formats: circuit-tracer/Neuronpedia graph JSON, GraphML (Cytoscape), networkx.

Neuronpedia JSON (:func:`to_neuronpedia`) follows circuit-tracer's
``frontend/graph_models.py`` (``metadata``, ``qParams``, ``nodes``, ``links``) so its
local viewer can open a single cell's pruned graph:

* feature ``node_id = "{layer}_{index}_{pos}"``, ``feature_type = "cross layer transcoder"``;
* error ``node_id = "E{layer}_{pos}"`` (circuit-tracer writes ``0_{layer}_{pos}``, which
  collides with a layer-0 feature whose index equals the error's layer; the viewer keys
  nodes by ``feature_type`` and matches links by id, so any unique id works),
  ``feature_type = "mlp reconstruction error"``;
* gene / prompt token ``node_id = "E_{token_id}_{pos}"``, ``layer = "E"``,
  ``feature_type = "embedding"``; a gene's ``clerp`` is its symbol;
* target ``node_id = "{n_layers + 1}_{token_id}_{pos}"``, ``feature_type = "logit"``;
* bias nodes have no Neuronpedia type and are left out, with their edges.

``influence`` on a node is its cumulative influence share (as circuit-tracer writes it);
links carry ``source``, ``target``, ``weight``. ``metadata`` has ``slug``, ``scan``,
``transcoder_list``, ``prompt_tokens``, ``prompt``, ``node_threshold`` plus circuitdb's
own ``info`` (cell id, label, method, thresholds, the graph's metadata).

GraphML (:func:`write_graphml`) writes :func:`to_networkx` with every attribute a
GraphML scalar (str, int, float, bool; ``None`` left out; per-head splits as a JSON
string ``heads`` of ``[layer, head, weight(, frequency)]`` rows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import torch

from circuitdb.attribution.circuit import Circuit
from circuitdb.attribution.graph import AttributionGraph, GraphNode
from circuitdb.attribution.prune import PruneResult, prune


def _n_layers(graph: AttributionGraph) -> int:
    if "n_layers" in graph.metadata:
        return int(graph.metadata["n_layers"])
    layers = [nd.layer for nd in graph.nodes if nd.kind in ("feature", "error") and nd.layer is not None]
    return (max(layers) + 1) if layers else 0


def _token_id(graph: AttributionGraph, pos: int | None) -> int:
    ids = graph.metadata.get("input_ids")
    if ids is not None and pos is not None and 0 <= pos < len(ids):
        return int(ids[pos])
    return -1 if pos is None else int(pos)


def _prompt_tokens(graph: AttributionGraph) -> list[str]:
    toks = graph.metadata.get("prompt_tokens")
    if toks is not None:
        return [str(t) for t in toks]
    n_pos = 1 + max((nd.span_end - 1 if nd.span_end else nd.pos) or 0 for nd in graph.nodes if nd.pos is not None)
    out = [""] * n_pos
    for nd in graph.nodes:
        if nd.kind == "gene" and nd.pos is not None:
            out[nd.pos] = str(nd.gene)
        elif nd.kind == "token" and nd.pos is not None:
            out[nd.pos] = str(nd.token or "")
    return out


def neuronpedia_node(graph: AttributionGraph, i: int, influence: float | None) -> dict[str, Any] | None:
    """The Neuronpedia node dict of graph node ``i`` (``None`` for bias nodes)."""
    nd = graph.nodes[i]
    base: dict[str, Any] = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0,
                            "clerp": "", "influence": influence, "activation": None}
    if nd.kind == "feature":
        nid = f"{nd.layer}_{nd.index}_{nd.pos}"
        return {**base, "node_id": nid, "feature": int(nd.index), "layer": str(nd.layer), "ctx_idx": int(nd.pos),
                "feature_type": "cross layer transcoder", "jsNodeId": f"{nd.layer}_{nd.index}-0",
                "activation": float(nd.activation)}
    if nd.kind == "error":
        return {**base, "node_id": f"E{nd.layer}_{nd.pos}", "feature": -1, "layer": str(nd.layer), "ctx_idx": int(nd.pos),
                "feature_type": "mlp reconstruction error", "jsNodeId": f"{nd.layer}_{nd.pos}-0"}
    if nd.kind in ("gene", "token"):
        tid = _token_id(graph, nd.pos)
        return {**base, "node_id": f"E_{tid}_{nd.pos}", "feature": int(nd.pos), "layer": "E", "ctx_idx": int(nd.pos),
                "feature_type": "embedding", "jsNodeId": f"E_{tid}-{nd.pos}",
                "clerp": str(nd.gene if nd.kind == "gene" else nd.token or "")}
    if nd.kind == "target":
        pos = int(nd.pos) if nd.pos is not None else len(_prompt_tokens(graph)) - 1
        tid = _token_id(graph, None) if nd.index is None else int(nd.index)
        tid = tid if tid >= 0 else i
        layer = str(_n_layers(graph) + 1)
        prob = float(graph.metadata.get("target_prob", 0.0) or 0.0)
        return {**base, "node_id": f"{layer}_{tid}_{pos}", "feature": tid, "layer": layer, "ctx_idx": pos,
                "feature_type": "logit", "token_prob": prob, "is_target_logit": True, "jsNodeId": f"L_{tid}-{pos}",
                "clerp": f'Output "{nd.label}" (p={prob:.3f})'}
    return None


def to_neuronpedia(
    graph: AttributionGraph,
    *,
    slug: str,
    scan: str = "circuitdb",
    pruned: PruneResult | None = None,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """circuit-tracer/Neuronpedia graph JSON of one cell's (pruned) attribution graph.

    Parameters
    ----------
    graph
        The attribution graph.
    slug
        Graph name in the viewer.
    scan
        Transcoder-set name (Neuronpedia's "scan").
    pruned
        A prune result to use; default: influence pruning at the given thresholds.
    node_threshold, edge_threshold
        Used when ``pruned`` is not given, and recorded in the metadata.
    info
        Extra entries for ``metadata['info']``.

    Returns
    -------
    dict
        ``{"metadata", "qParams", "nodes", "links"}``.
    """
    if pruned is None:
        pruned = prune(graph, "influence", node_threshold=node_threshold, edge_threshold=edge_threshold)
    ids: dict[int, str] = {}
    nodes: list[dict[str, Any]] = []
    cum = pruned.cumulative_scores.tolist()
    for i in torch.nonzero(pruned.node_mask).flatten().tolist():
        d = neuronpedia_node(graph, i, float(cum[i]))
        if d is None:
            continue
        ids[i] = d["node_id"]
        nodes.append(d)
    tgt, src = torch.nonzero(pruned.edge_mask, as_tuple=True)
    w = graph.adjacency[tgt, src].tolist()
    links = [{"source": ids[s], "target": ids[t], "weight": float(x)}
             for t, s, x in zip(tgt.tolist(), src.tolist(), w) if s in ids and t in ids]
    toks = _prompt_tokens(graph)
    meta_info = {"cell_id": graph.metadata.get("cell_id"), "label": graph.metadata.get("label"),
                 "node_threshold": node_threshold, "edge_threshold": edge_threshold,
                 "graph": json.loads(json.dumps(graph.metadata, default=str))}
    meta_info.update(info or {})
    return {
        "metadata": {"slug": slug, "scan": scan, "transcoder_list": [], "prompt_tokens": toks,
                     "prompt": str(graph.metadata.get("prompt", "".join(toks))), "node_threshold": node_threshold,
                     "info": meta_info},
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }


def write_neuronpedia(graph: AttributionGraph, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`to_neuronpedia` to ``path`` (atomically); see it for ``kwargs``."""
    path = Path(path)
    kwargs.setdefault("slug", path.stem)
    data = to_neuronpedia(graph, **kwargs)
    return _atomic_write(path, json.dumps(data, indent=1))


# -- networkx / GraphML ------------------------------------------------------------------
def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, bool | str):
            out[k] = v
        elif isinstance(v, int):
            out[k] = int(v)
        elif isinstance(v, float):
            out[k] = float(v)
        else:
            out[k] = json.dumps(v, default=str)
    return out


def _graph_node_attrs(nd: GraphNode) -> dict[str, Any]:
    return _clean({"kind": nd.kind, "layer": nd.layer, "pos": nd.pos, "index": nd.index, "activation": float(nd.activation),
                   "gene": nd.gene, "token": nd.token, "label": nd.label})


def to_networkx(obj: AttributionGraph | Circuit, pruned: PruneResult | None = None) -> nx.DiGraph:
    """A networkx ``DiGraph`` (source -> target) of an attribution graph or a circuit.

    Parameters
    ----------
    obj
        An :class:`AttributionGraph` (node ids :attr:`GraphNode.key`) or a :class:`Circuit`
        (its node ids).
    pruned
        For a graph: keep only these nodes and edges; default every non-zero edge.

    Returns
    -------
    networkx.DiGraph
        Node attributes: kind, layer, pos/index/gene/label..., influence, activation;
        edge attributes: weight (and frequency), ``heads`` as a JSON string.
        Graph attributes: provenance / metadata as GraphML-safe scalars.
    """
    g = nx.DiGraph()
    if isinstance(obj, Circuit):
        from dataclasses import asdict

        g.graph.update(_clean({f"provenance_{k}": v for k, v in asdict(obj.provenance).items()}))
        g.graph["circuit_id"] = obj.id
        for n in obj.nodes:
            g.add_node(n.id, **_clean({k: v for k, v in asdict(n).items() if k != "id"}))
        for e in obj.edges:
            attrs: dict[str, Any] = {"weight": float(e.weight), "frequency": float(e.frequency)}
            if e.heads:
                attrs["heads"] = json.dumps([[h.layer, h.head, h.weight, h.frequency] for h in e.heads])
            g.add_edge(e.source, e.target, **attrs)
        return g

    graph = obj
    g.graph.update(_clean({f"meta_{k}": v for k, v in graph.metadata.items()}))
    keep = pruned.node_mask.tolist() if pruned is not None else [True] * len(graph.nodes)
    infl = pruned.influence.tolist() if pruned is not None else None
    keys = [nd.key for nd in graph.nodes]
    for i, nd in enumerate(graph.nodes):
        if keep[i]:
            attrs = _graph_node_attrs(nd)
            if infl is not None:
                attrs["influence"] = float(infl[i])
            if graph.values is not None:
                attrs["value"] = float(graph.values[i])
            g.add_node(keys[i], **attrs)
    emask = pruned.edge_mask if pruned is not None else graph.adjacency != 0
    heads: dict[tuple[int, int], list[list[float]]] = {}
    for row, (t, s) in enumerate(graph.head_edges.tolist()):
        if bool(emask[t, s]):
            hw = graph.head_weights[row]
            heads[(t, s)] = [[layer, head, float(hw[layer, head])] for layer, head in torch.nonzero(hw).tolist()]
    tgt, src = torch.nonzero(emask, as_tuple=True)
    for t, s, w in zip(tgt.tolist(), src.tolist(), graph.adjacency[tgt, src].tolist()):
        if keep[t] and keep[s]:
            attrs = {"weight": float(w)}
            if (t, s) in heads:
                attrs["heads"] = json.dumps(heads[(t, s)])
            g.add_edge(keys[s], keys[t], **attrs)
    return g


def write_graphml(obj: AttributionGraph | Circuit | nx.DiGraph, path: str | Path, pruned: PruneResult | None = None) -> Path:
    """Write GraphML for Cytoscape (atomically)."""
    g = obj if isinstance(obj, nx.DiGraph) else to_networkx(obj, pruned)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    nx.write_graphml(g, tmp)
    tmp.replace(path)
    return path


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
