"""Pruning on small hand-made graphs whose answers are worked out by hand."""

from __future__ import annotations

import pytest
import torch

from circuitdb.attribution.graph import AttributionGraph, GraphNode
from circuitdb.attribution.prune import (
    compute_influence,
    compute_total_effect,
    node_gains,
    cumulative_shares,
    find_threshold,
    greedy_paths,
    normalize_matrix,
    prune,
)

# nodes: 0 f_a (L0), 1 f_b (L1), 2 error, 3 gene A, 4 gene B, 5 target
FA, FB, ERR, GA, GB, T = range(6)


def hand_graph() -> AttributionGraph:
    nodes = [
        GraphNode("feature", layer=0, pos=3, index=7, activation=4.0),
        GraphNode("feature", layer=1, pos=5, index=2, activation=4.0),
        GraphNode("error", layer=0, pos=5),
        GraphNode("gene", pos=3, gene="CD3E", span_end=4),
        GraphNode("gene", pos=4, gene="MS4A1", span_end=5),
        GraphNode("target", pos=5, label="T cell"),
    ]
    a = torch.zeros(6, 6)
    a[FA, GA], a[FA, GB] = 3.0, 1.0
    a[FB, FA], a[FB, ERR] = 2.0, 2.0
    a[T, FB], a[T, GB] = 6.0, -2.0
    return AttributionGraph(nodes=nodes, adjacency=a)


def test_normalize_matrix_rows_sum_to_one_and_zero_rows_stay_zero():
    m = normalize_matrix(hand_graph().adjacency)
    assert torch.allclose(m[T], torch.tensor([0, 0.75, 0, 0, 0.25, 0]))
    assert torch.allclose(m[FA].sum(), torch.tensor(1.0))
    assert m[GA].abs().sum() == 0


def test_influence_by_hand_and_solve_agrees():
    a = normalize_matrix(hand_graph().adjacency.double())
    w = torch.zeros(6, dtype=torch.float64)
    w[T] = 1.0
    infl = compute_influence(a, w)
    expected = torch.tensor([0.375, 0.75, 0.375, 0.28125, 0.34375, 0.0], dtype=torch.float64)
    assert torch.allclose(infl, expected)
    assert torch.allclose(compute_influence(a, w, method="solve"), expected)


def test_influence_raises_on_cycle_without_solve():
    a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(RuntimeError, match="converge"):
        compute_influence(a, torch.tensor([1.0, 0.0]), max_iter=50)


def test_find_threshold_and_all_zero():
    s = torch.tensor([0.5, 0.3, 0.2, 0.0])
    assert find_threshold(s, 0.5) == 0.5
    assert find_threshold(s, 0.8) == pytest.approx(0.3)
    assert find_threshold(s, 1.0) == pytest.approx(0.2)  # never the zero
    assert find_threshold(torch.zeros(3), 0.8) == float("inf")


def test_cumulative_shares_by_hand():
    c = cumulative_shares(torch.tensor([1.0, 3.0, 0.0, 4.0]))
    assert torch.allclose(c, torch.tensor([1.0, 7 / 8, 1.0, 0.5]))


def test_all_kept_at_default_thresholds():
    res = prune(hand_graph())
    assert res.node_mask.all()
    assert int(res.edge_mask.sum()) == 6


def test_node_threshold_keeps_ties():
    # cumulative: f_b .353, f_a/err (tie .375) .529/.706 -> threshold 0.5 keeps both tied nodes
    res = prune(hand_graph(), node_threshold=0.5, edge_threshold=1.0)
    assert res.node_mask.tolist() == [True, True, True, True, True, True]


def test_node_threshold_prunes_and_cleans_up_iteratively():
    # only f_b passes 0.3; it then has no kept input and is dropped; genes/target stay
    res = prune(hand_graph(), node_threshold=0.3, edge_threshold=1.0)
    assert res.node_mask.tolist() == [False, False, False, True, True, True]
    assert res.edge_mask.nonzero().tolist() == [[T, GB]]


def test_edge_threshold_by_hand():
    # edge scores .75 (T<-fb) .375 (fb<-fa) .375 (fb<-err) .28125 (fa<-gA) .25 (T<-gB) .09375 (fa<-gB), sum 2.125
    res = prune(hand_graph(), node_threshold=1.0, edge_threshold=0.9)
    kept = sorted(map(tuple, res.edge_mask.nonzero().tolist()))
    assert kept == sorted([(T, FB), (FB, FA), (FB, ERR), (FA, GA), (T, GB)])
    # at 0.7 only the three largest survive; f_a loses its inputs and is dropped, then fb<-fa too
    res = prune(hand_graph(), node_threshold=1.0, edge_threshold=0.7)
    assert sorted(map(tuple, res.edge_mask.nonzero().tolist())) == [(FB, ERR), (T, FB)]
    assert res.node_mask.tolist() == [False, True, True, True, True, True]


def test_threshold_validation():
    with pytest.raises(ValueError, match="node_threshold"):
        prune(hand_graph(), node_threshold=1.5)
    with pytest.raises(ValueError, match="method"):
        prune(hand_graph(), method="bogus")  # type: ignore[arg-type]


def test_greedy_paths_scores_by_hand():
    g = hand_graph()
    w = torch.zeros(6)
    w[T] = 1.0
    expandable = torch.tensor([True, True, False, False, False, True])
    acts = torch.tensor([4.0, 4.0, 0, 0, 0, 0])
    paths = greedy_paths(g.adjacency, w, expandable, acts)
    assert [(p, pytest.approx(s)) for p, s in paths] == [
        ((T, FB), 6.0),
        ((T, FB, FA), 3.0),  # tie with err broken by node index
        ((T, FB, ERR), 3.0),
        ((T, FB, FA, GA), 2.25),  # 6 * 2/4 * 3/4
        ((T, FB, FA, GB), 0.75),
    ]


def test_greedy_beam_and_sign():
    res = prune(hand_graph(), "greedy", max_paths=1)
    assert res.node_mask.tolist() == [True, True, False, True, False, True]
    assert sorted(map(tuple, res.edge_mask.nonzero().tolist())) == [(FA, GA), (FB, FA), (T, FB)]
    pos = prune(hand_graph(), "greedy", max_length=1, branches=2, max_paths=2)
    assert pos.edge_mask.nonzero().tolist() == [[T, FB]]
    ab = prune(hand_graph(), "greedy", max_length=1, branches=2, max_paths=2, sign="abs")
    assert sorted(map(tuple, ab.edge_mask.nonzero().tolist())) == [(T, FB), (T, GB)]
    # cumulative scores are influence-based for both methods
    assert torch.equal(res.cumulative_scores, prune(hand_graph()).cumulative_scores)


def test_deterministic_under_node_permutation_of_ties():
    g = hand_graph()
    r1, r2 = prune(g, node_threshold=0.5), prune(g, node_threshold=0.5)
    assert torch.equal(r1.node_mask, r2.node_mask) and torch.equal(r1.edge_mask, r2.edge_mask)


def test_target_weights_split_influence():
    g = hand_graph()
    g.nodes.append(GraphNode("target", pos=5, label="B cell"))
    a = torch.zeros(7, 7)
    a[:6, :6] = g.adjacency
    a[6, GA] = 1.0
    g.adjacency = a
    res = prune(g, target_weights=[0.5, 0.5])
    # gA: 0.5 * 0.28125 (via T) + 0.5 * 1 (direct into the second target)
    assert res.influence[GA].item() == pytest.approx(0.5 * 0.28125 + 0.5)


def _dense_reference(g: AttributionGraph, node_threshold: float, edge_threshold: float):
    """The circuit-tracer procedure on the full matrix, written out plainly."""
    from circuitdb.attribution.prune import target_weights_of

    a = g.adjacency.double()
    w = target_weights_of(g).double()
    kinds = [nd.kind for nd in g.nodes]
    always = torch.tensor([k in ("gene", "token", "target") for k in kinds])
    feat = torch.tensor([k == "feature" for k in kinds])
    infl = compute_influence(normalize_matrix(a), w)
    nm = (infl >= find_threshold(infl, node_threshold)) | always
    p = a.clone()
    p[~nm] = 0
    p[:, ~nm] = 0
    np_ = normalize_matrix(p)
    sc = np_ * (compute_influence(np_, w) + w)[:, None]
    em = (sc >= find_threshold(sc, edge_threshold)) & (sc > 0)
    while True:
        old = nm.clone()
        em[~nm] = False
        em[:, ~nm] = False
        nm[~always] &= em[:, ~always].any(0)
        nm[feat] &= em[feat].any(1)
        if torch.equal(old, nm):
            return nm, em


@pytest.mark.parametrize("seed,nt,et", [(0, 0.8, 0.98), (1, 0.5, 0.9), (2, 0.95, 0.7)])
def test_influence_pruning_matches_dense_reference_on_random_graphs(seed, nt, et):
    from circuitdb.attribution.synthetic import random_graph

    g = random_graph(seed, ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY"], n_layers=3)
    res = prune(g, node_threshold=nt, edge_threshold=et)
    nm, em = _dense_reference(g, nt, et)
    assert torch.equal(res.node_mask, nm) and torch.equal(res.edge_mask, em)
    assert 0 < int(res.node_mask.sum()) < len(g.nodes)


def test_total_effect_by_hand_and_sources_sum_to_target():
    g = hand_graph()
    w = torch.zeros(6, dtype=torch.float64)
    w[T] = 1.0
    e = compute_total_effect(g.adjacency, w, node_gains(g))
    # fb 6; fa, err 2*6/4; gA 3*3/4; gB -2 + 1*3/4
    assert torch.allclose(e, torch.tensor([3.0, 6.0, 3.0, 2.25, -1.25, 0.0], dtype=torch.float64))
    assert float(e[[ERR, GA, GB]].sum()) == pytest.approx(float(g.adjacency[T].sum()))


def test_greedy_never_steps_into_error_or_bias_nodes():
    res = prune(hand_graph(), "greedy")
    assert not res.node_mask[ERR]
    assert sorted(map(tuple, res.edge_mask.nonzero().tolist())) == [(FA, GA), (FA, GB), (FB, FA), (T, FB)]
