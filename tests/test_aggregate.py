"""Aggregation of per-cell graphs into per-cell-type circuits."""

from __future__ import annotations

import pytest
import torch

from circuitdb.attribution.aggregate import AggregateOptions, aggregate, code_version, make_provenance, summarize_cell
from circuitdb.attribution.circuit import Circuit
from circuitdb.attribution.graph import AttributionGraph, GraphNode
from circuitdb.attribution.prune import prune
from circuitdb.attribution.synthetic import random_graph


def cell_a() -> AttributionGraph:
    nodes = [
        GraphNode("feature", layer=0, pos=1, index=7, activation=1.0),
        GraphNode("feature", layer=0, pos=2, index=7, activation=3.0),
        GraphNode("feature", layer=1, pos=2, index=2, activation=2.0),
        GraphNode("error", layer=0, pos=2),
        GraphNode("gene", pos=1, gene="CD3E", span_end=2),
        GraphNode("gene", pos=2, gene="MS4A1", span_end=3),
        GraphNode("target", pos=2, label=" T"),
    ]
    a = torch.zeros(7, 7)
    a[0, 4] = 1.0
    a[1, 5] = 3.0
    a[2, 0], a[2, 1], a[2, 3] = 0.5, 1.5, 1.0
    a[6, 2], a[6, 4] = 4.0, 1.0
    he = torch.tensor([[2, 0], [6, 4]])
    hw = torch.tensor([[[0.2, 0.3], [0.0, 0.0]], [[0.5, 0.0], [0.0, 0.5]]])
    return AttributionGraph(nodes, a, he, hw, metadata={"cell_id": "a"})


def cell_b() -> AttributionGraph:
    nodes = [
        GraphNode("feature", layer=1, pos=0, index=2, activation=1.0),
        GraphNode("gene", pos=0, gene="CD3E", span_end=1),
        GraphNode("target", pos=1, label=" T"),
    ]
    a = torch.zeros(3, 3)
    a[0, 1] = 2.0
    a[2, 0] = 6.0
    return AttributionGraph(nodes, a, metadata={"cell_id": "b"})


def prov(cell_type: str = "T cell", cells=("a", "b")):
    return make_provenance(
        cell_type=cell_type, cells=cells, method="influence", thresholds={"node": 1.0, "edge": 1.0},
        model="demo", model_hash="m" * 16, transcoders="tc", transcoder_hash="t" * 16,
        dataset="pbmc68k_reduced", dataset_id="pbmc68k", dataset_n_cells=700, dataset_source="scanpy",
    )


def summaries():
    return [summarize_cell(g, prune(g, node_threshold=1.0, edge_threshold=1.0), "T cell") for g in (cell_a(), cell_b())]


def test_collapse_positions_in_one_cell():
    s = summaries()[0]
    assert s.cell_id == "a"
    assert s.edges == pytest.approx({
        ("gene:CD3E", "feat:0:7"): 1.0, ("gene:MS4A1", "feat:0:7"): 3.0,
        ("feat:0:7", "feat:1:2"): 2.0, ("err:0", "feat:1:2"): 1.0,
        ("feat:1:2", "target:T cell"): 4.0, ("gene:CD3E", "target:T cell"): 1.0,
    })
    assert s.nodes["feat:0:7"].activation == pytest.approx(2.0)
    assert s.active_features == [(0, 7), (1, 2)]
    assert torch.allclose(s.heads[("feat:0:7", "feat:1:2")], torch.tensor([[0.2, 0.3], [0.0, 0.0]], dtype=torch.float64))


def test_mean_with_absent_as_zero_and_frequency():
    c = aggregate(summaries(), prov(), AggregateOptions(keep_fraction=1.0, min_features=0))
    e = {(x.source, x.target): x for x in c.edges}
    assert e[("feat:1:2", "target:T cell")].weight == pytest.approx(5.0)
    assert e[("feat:1:2", "target:T cell")].frequency == 1.0
    assert e[("gene:CD3E", "feat:0:7")].weight == pytest.approx(0.5)
    assert e[("gene:CD3E", "feat:0:7")].frequency == 0.5
    assert e[("gene:CD3E", "feat:1:2")].weight == pytest.approx(1.0)
    heads = {(h.layer, h.head): (h.weight, h.frequency) for h in e[("gene:CD3E", "target:T cell")].heads}
    assert heads == {(0, 0): pytest.approx((0.25, 0.5)), (1, 1): pytest.approx((0.25, 0.5))}
    nodes = {x.id: x for x in c.nodes}
    assert nodes["feat:0:7"].frequency == 0.5 and nodes["feat:0:7"].activation == pytest.approx(2.0)
    assert nodes["feat:1:2"].activation == pytest.approx(1.5)
    # influence of feat:1:2: 0.8 in cell a (4 of 5 into the target), 1.0 in cell b
    assert nodes["feat:1:2"].influence == pytest.approx(0.9)
    assert c.nodes[0].id == "target:T cell" and c.nodes[0].kind == "target"


def test_keep_fraction_drops_weak_features_and_their_edges():
    c = aggregate(summaries(), prov(), AggregateOptions(keep_fraction=0.5, min_features=0))
    ids = {x.id for x in c.nodes}
    assert "feat:1:2" in ids and "feat:0:7" not in ids
    assert all("feat:0:7" not in (e.source, e.target) for e in c.edges)
    # min_features overrides the fraction
    c = aggregate(summaries(), prov(), AggregateOptions(keep_fraction=0.5, min_features=2))
    assert {"feat:1:2", "feat:0:7"} <= {x.id for x in c.nodes}


def test_min_frequency():
    c = aggregate(summaries(), prov(), AggregateOptions(keep_fraction=1.0, min_features=0, min_frequency=0.75))
    assert "feat:0:7" not in {x.id for x in c.nodes}


def test_planted_circuit_recovered_from_random_cells():
    genes = ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY"]
    graphs = [random_graph(s, genes[s % 2:] + genes[: s % 2], n_layers=3) for s in range(6)]
    sums = [summarize_cell(g, prune(g), "T cell") for g in graphs]
    c = aggregate(sums, prov(cells=[s.cell_id for s in sums]))
    feats = [x for x in c.nodes if x.kind == "feature"]
    assert feats[0].id == "feat:2:0" and feats[0].frequency == 1.0
    assert "feat:0:0" in [x.id for x in feats[:5]]
    e = {(x.source, x.target): x for x in c.edges}
    assert e[("feat:2:0", "target:T cell")].weight == pytest.approx(8.0)
    assert e[("feat:2:0", "target:T cell")].frequency == 1.0
    genes_kept = [x for x in c.nodes if x.kind == "gene"]
    assert genes_kept[0].gene in ("CD3E", "MS4A1")
    # gene -> target edges always cross positions: with every head kept, heads sum to the edge
    c = aggregate(sums, prov(cells=[s.cell_id for s in sums]), AggregateOptions(head_min_share=0.0))
    checked = 0
    for x in c.edges:
        if x.source.startswith("gene:") and x.target.startswith("target:"):
            assert sum(h.weight for h in x.heads) == pytest.approx(x.weight, rel=1e-5, abs=1e-7)
            checked += 1
    assert checked > 0


def test_circuit_roundtrip_and_provenance(tmp_path):
    c = aggregate(summaries(), prov())
    p = c.save(tmp_path / "c.json")
    back = Circuit.load(p)
    assert back == c
    assert back.provenance.cells == ["a", "b"]
    assert back.provenance.code_version.startswith("0.")
    assert back.provenance.created.endswith("+00:00")


def test_code_version_has_version():
    from circuitdb import __version__

    assert code_version().startswith(__version__)


def test_aggregate_needs_cells():
    with pytest.raises(ValueError, match="at least one"):
        aggregate([], prov())
    with pytest.raises(ValueError, match="keep_fraction"):
        AggregateOptions(keep_fraction=0.0)


def test_effects_are_summed_over_positions_and_averaged_over_cells():
    c = aggregate(summaries(), prov(), AggregateOptions(keep_fraction=1.0, min_features=0))
    nodes = {x.id: x for x in c.nodes}
    # cell a: feat:1:2 effect 4 (direct); feat:0:7 at pos1: 0.5*4/2, at pos2: 1.5*4/2 -> 4; cell b: feat:1:2 6
    assert nodes["feat:1:2"].effect == pytest.approx((4 + 6) / 2)
    assert nodes["feat:0:7"].effect == pytest.approx(4 / 2)
    # CD3E: cell a 1 (direct) + 1 * (4/2 * 0.5) / 1 ... = 1 + 1.0; cell b: 2 * 6 / 1 = 12
    assert nodes["gene:CD3E"].effect == pytest.approx((2.0 + 12.0) / 2)
