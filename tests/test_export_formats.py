"""Neuronpedia graph JSON, GraphML and networkx exports."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

from circuitdb.attribution.aggregate import aggregate, make_provenance, summarize_cell
from circuitdb.attribution.export import to_neuronpedia, to_networkx, write_graphml, write_neuronpedia
from circuitdb.attribution.graph import AttributionGraph, GraphNode
from circuitdb.attribution.prune import prune
from circuitdb.attribution.synthetic import random_graph

GENES = ["CD3E", "MS4A1", "LYZ", "NKG7"]
# circuit-tracer frontend/graph_models.py: required node fields
NODE_FIELDS = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit",
               "run_idx", "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation"}
FEATURE_TYPES = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}


def collision_graph() -> AttributionGraph:
    # a layer-0 feature with index 1 at pos 0 and the layer-1 error at pos 0 (circuit-tracer ids would collide)
    nodes = [GraphNode("feature", layer=0, pos=0, index=1, activation=2.0), GraphNode("error", layer=1, pos=0),
             GraphNode("gene", pos=0, gene="CD3E", span_end=1), GraphNode("bias", layer=-1),
             GraphNode("target", pos=0, label="T cell", index=42)]
    a = torch.zeros(5, 5)
    a[0, 2], a[4, 0], a[4, 1], a[4, 3] = 1.0, 2.0, 1.0, 0.5
    return AttributionGraph(nodes, a, metadata={"cell_id": "c1", "input_ids": [17], "n_layers": 2, "prompt_tokens": ["CD3E"]})


def test_neuronpedia_schema_and_ids():
    g = collision_graph()
    d = to_neuronpedia(g, slug="c1", node_threshold=1.0, edge_threshold=1.0)
    assert set(d) == {"metadata", "qParams", "nodes", "links"}
    assert {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold"} <= set(d["metadata"])
    assert d["metadata"]["prompt_tokens"] == ["CD3E"]
    ids = [n["node_id"] for n in d["nodes"]]
    assert len(ids) == len(set(ids))
    assert ids == ["0_1_0", "E1_0", "E_17_0", "3_42_0"]  # bias left out
    for n in d["nodes"]:
        assert NODE_FIELDS <= set(n) and n["feature_type"] in FEATURE_TYPES
        assert isinstance(n["layer"], str)
    logit = d["nodes"][-1]
    assert logit["is_target_logit"] and logit["feature_type"] == "logit"
    gene = d["nodes"][2]
    assert gene["clerp"] == "CD3E" and gene["layer"] == "E"
    links = {(x["source"], x["target"]): x["weight"] for x in d["links"]}
    assert links == {("E_17_0", "0_1_0"): 1.0, ("0_1_0", "3_42_0"): 2.0, ("E1_0", "3_42_0"): 1.0}
    json.dumps(d)  # serialisable


def test_neuronpedia_respects_pruning(tmp_path):
    g = random_graph(3, GENES, n_layers=2)
    res = prune(g, node_threshold=0.5)
    d = to_neuronpedia(g, slug="x", pruned=res)
    kept_feats = sum(1 for i in res.node_mask.nonzero().flatten().tolist() if g.nodes[i].kind == "feature")
    assert sum(n["feature_type"] == "cross layer transcoder" for n in d["nodes"]) == kept_feats
    assert len(d["links"]) <= int(res.edge_mask.sum())
    p = write_neuronpedia(g, tmp_path / "cell.json", pruned=res)
    assert json.loads(p.read_text())["metadata"]["slug"] == "cell"


def test_graph_to_networkx_and_graphml_roundtrip(tmp_path):
    g = random_graph(1, GENES, n_layers=2)
    res = prune(g)
    nxg = to_networkx(g, res)
    assert nxg.number_of_nodes() == int(res.node_mask.sum())
    key_t = g.nodes[-1].key
    assert nxg.in_degree(key_t) > 0
    # per-head JSON on cross-position edges: sums to the edge weight
    with_heads = [(u, v, d) for u, v, d in nxg.edges(data=True) if "heads" in d]
    assert with_heads
    u, v, d = with_heads[0]
    assert sum(h[2] for h in json.loads(d["heads"])) == pytest.approx(d["weight"], rel=1e-5, abs=1e-7)
    p = write_graphml(g, tmp_path / "cell.graphml", res)
    back = nx.read_graphml(p)
    assert back.number_of_edges() == nxg.number_of_edges()
    assert back.nodes[key_t]["kind"] == "target"


def test_circuit_to_networkx_and_graphml(tmp_path):
    graphs = [random_graph(s, GENES, n_layers=2) for s in range(3)]
    sums = [summarize_cell(x, prune(x), "T cell") for x in graphs]
    prov = make_provenance(cell_type="T cell", cells=[s.cell_id for s in sums], method="influence",
                           thresholds={"node_threshold": 0.8}, model="m", model_hash="h", transcoders="t",
                           transcoder_hash="th", dataset="d", dataset_id="d1")
    c = aggregate(sums, prov)
    nxg = to_networkx(c)
    assert set(nxg.nodes) == {n.id for n in c.nodes}
    assert nxg.number_of_edges() == len(c.edges)
    assert nxg.graph["provenance_cell_type"] == "T cell"
    assert json.loads(nxg.graph["provenance_cells"]) == ["cell0", "cell1", "cell2"]
    back = nx.read_graphml(write_graphml(c, tmp_path / "c.graphml"))
    e = c.edges[0]
    assert back.edges[e.source, e.target]["weight"] == pytest.approx(e.weight)
    assert back.nodes["target:T cell"]["kind"] == "target"
    # the circuit file itself carries the viewer's metadata keys
    meta = c.to_json()["metadata"]
    assert {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold"} <= set(meta)
