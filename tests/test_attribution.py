"""attribute(): completeness in float64, head splits, exact logits, contrast, genes, pairs, bad input."""

from __future__ import annotations

import pytest
import torch

from attr_fixtures import CELL_TYPES, GENES, random_transcoders, tiny_gemma, tiny_neox, tiny_tokenizer
from circuitdb.attribution.attribute import _Engine, _Row, _source_positions, answer_target, attribute
from circuitdb.attribution.graph import AttributionGraph, feature_pairs
from circuitdb.attribution.replacement import ReplacementModel
from circuitdb.errors import InputError
from circuitdb.loaders.prompts import PromptTemplate
from circuitdb.loaders.sentences import CellSentence

SHORT = PromptTemplate(prompt="Cell sentence: {genes}.\nThe cell type is:")
CELL = CellSentence("cell-7", 7, "CD19+ B", tuple(GENES[:5]))


@pytest.fixture(autouse=True)
def _seed():  # noqa: ANN202
    """Seeded, and single-threaded: tiny matmuls on a shared machine run faster on one thread."""
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(arch: str):  # noqa: ANN202
    return {"neox": lambda: tiny_neox(), "neox_seq": lambda: tiny_neox(parallel=False), "gemma2": lambda: tiny_gemma()}[arch]()


def _graph(model, tcs, **kw) -> AttributionGraph:  # noqa: ANN001
    kw.setdefault("head_split_nodes", None)
    kw.setdefault("head_edges_per_node", None)
    return attribute(CELL, model, tcs, tokenizer=tiny_tokenizer(), candidates=CELL_TYPES, template=SHORT, **kw)


def _completeness(g: AttributionGraph) -> float:
    rows = [i for i, nd in enumerate(g.nodes) if nd.kind in ("feature", "target")]
    assert g.values is not None
    got, want = g.adjacency[rows].sum(1), g.values[rows]
    return float(((got - want).abs() / want.abs().clamp_min(1e-3)).max())


@pytest.mark.parametrize("arch", ["neox", "neox_seq", "gemma2"])
@pytest.mark.parametrize("activation,skip", [("topk", False), ("relu", True), ("jumprelu", False)])
def test_completeness_float64(arch: str, activation: str, skip: bool) -> None:
    model = _model(arch)
    tcs = random_transcoders(model, activation=activation, skip=skip, n_features=32)
    g = _graph(model, tcs, head_split_nodes=0)
    n_feat = sum(nd.kind == "feature" for nd in g.nodes)
    assert n_feat == g.metadata["n_active_features"] > 10
    assert _completeness(g) < 1e-6
    # every feature's value is the pre-activation the transcoder computes on the true MLP input
    assert g.values is not None and torch.isfinite(g.values).all()


def test_completeness_catches_a_missing_term() -> None:
    """The check is not vacuous: dropping the bias nodes' column breaks it."""
    model = tiny_neox()
    g = _graph(model, random_transcoders(model), head_split_nodes=0)
    bias = g.indices("bias")
    g.adjacency[:, bias] = 0
    assert _completeness(g) > 1e-3


def test_feature_budget_folds_dropped_features_into_errors() -> None:
    model = tiny_gemma()
    tcs = random_transcoders(model, n_features=32)
    full = _graph(model, tcs, head_split_nodes=0)
    g = _graph(model, tcs, max_feature_nodes=12, batch_size=5, head_split_nodes=0)
    assert sum(nd.kind == "feature" for nd in g.nodes) == 12
    assert g.metadata["dropped_features"] == full.metadata["n_active_features"] - 12
    assert _completeness(g) < 1e-6
    # the kept features' edges into the target are the same as in the full graph
    key_full = {nd.key: i for i, nd in enumerate(full.nodes)}
    t, tf = g.indices("target")[0], full.indices("target")[0]
    for i in g.indices("feature").tolist():
        assert torch.isclose(g.adjacency[t, i], full.adjacency[tf, key_full[g.nodes[i].key]], atol=1e-12)


@pytest.mark.parametrize("arch", ["neox", "gemma2"])
def test_target_is_the_model_logit(arch: str) -> None:
    model = _model(arch)
    tcs = random_transcoders(model)
    g = _graph(model, tcs, head_split_nodes=0)
    ids = torch.tensor(g.metadata["input_ids"])
    with torch.no_grad():
        logits = model(ids[None]).logits[0, -1]
    tok = g.metadata["target"]["token_id"]
    value = g.metadata["target"]["value"]
    cap = model.config.final_logit_softcapping if arch == "gemma2" else None
    shown = cap * torch.tanh(torch.tensor(value) / cap) if cap else torch.tensor(value)
    assert torch.isclose(shown.to(logits.dtype), logits[tok], atol=1e-5)
    # the answer prefix (shared with the closest other candidate) was appended
    assert g.metadata["n_tokens"] == g.metadata["n_prompt_tokens"] + len(g.metadata["target"]["answer_prefix"])


def test_answer_divergence_uses_the_closest_candidate() -> None:
    tok = tiny_tokenizer()
    seqs = {c: tok(SHORT.answer_text(c), add_special_tokens=False)["input_ids"] for c in CELL_TYPES}
    t = answer_target(tok, CELL_TYPES, "CD4+/CD25 T Reg")
    other = seqs["CD4+/CD45RO+ Memory"]
    mine = seqs["CD4+/CD25 T Reg"]
    assert list(t.prefix) == mine[: len(t.prefix)] == other[: len(t.prefix)]
    assert t.token == mine[len(t.prefix)] != other[len(t.prefix)]
    for c in CELL_TYPES:
        if c != "CD4+/CD25 T Reg":
            assert seqs[c][: len(t.prefix) + 1] != mine[: len(t.prefix) + 1]


def test_contrast_is_the_difference_of_two_targets() -> None:
    model = tiny_neox()
    tcs = random_transcoders(model)
    pair = ["CD19+ B", "CD56+ NK"]
    common = dict(tokenizer=tiny_tokenizer(), candidates=pair, template=SHORT, head_split_nodes=0, pairs=False)
    gc = attribute(CELL, model, tcs, contrast="CD56+ NK", **common)
    ga = attribute(CELL, model, tcs, **common)
    gb = attribute(CellSentence("x", 0, "CD56+ NK", CELL.genes), model, tcs, **common)
    assert gc.metadata["input_ids"] == ga.metadata["input_ids"] == gb.metadata["input_ids"]
    t = gc.indices("target")[0]
    ta, tb = ga.indices("target")[0], gb.indices("target")[0]
    assert torch.allclose(gc.adjacency[t], ga.adjacency[ta] - gb.adjacency[tb], atol=1e-12)
    assert gc.values is not None and ga.values is not None and gb.values is not None
    assert abs(float(gc.values[t] - (ga.values[ta] - gb.values[tb]))) < 1e-12
    assert _completeness(gc) < 1e-6
    assert gc.nodes[t].label == "CD19+ B - CD56+ NK"


@pytest.mark.parametrize("arch", ["neox", "gemma2"])
def test_head_parts_sum_to_the_cross_position_edge(arch: str) -> None:
    model = _model(arch)
    g = _graph(model, random_transcoders(model, n_features=16, k=3))
    assert g.head_weights.shape[1:] == (2, 4)
    src_pos = _source_positions(g.nodes)
    pure = torch.tensor([g.nodes[t].pos not in src_pos[s] for t, s in g.head_edges.tolist()])
    assert int(pure.sum()) > 100
    edge = g.adjacency[g.head_edges[:, 0], g.head_edges[:, 1]]
    split = g.head_weights.sum((1, 2))
    assert torch.allclose(split[pure], edge[pure], atol=1e-10)
    # non-trivial: more than one head carries weight
    assert int((g.head_weights[pure].abs().sum(0) > 1e-9).sum()) > 1
    kinds = {g.nodes[s].kind for s in g.head_edges[:, 1].tolist()}
    assert {"gene", "feature", "error", "token"} <= kinds


def test_head_split_equals_full_minus_same_position_paths() -> None:
    """Engine level, all sources incl. genes split across the target position."""
    model = tiny_gemma()
    run = ReplacementModel(model, random_transcoders(model, skip=True)).run(torch.arange(9))
    eng = _Engine(run)
    Ly = run.layers[1]
    rows = [_Row(eng.L, 8, run.W_U[:, 3], 0.0)] + [_Row(1, int(Ly.feat_pos[j]), Ly.W_enc[:, int(Ly.feat_idx[j])], 0.0) for j in (0, 7, 20)]
    n = eng.lay.n
    heads = eng.head_split(rows, torch.arange(n), n)
    full, same = eng.backward(rows), eng.backward(rows, diag_only=True)
    cross = (full - same)[:, : eng.lay.bias0]
    # same-position paths reach ~1e9 here (random skip connections compound) and cancel in full - same:
    # round-off is relative to the operands, not to the difference
    assert torch.allclose(heads.sum((1, 2))[:, : eng.lay.bias0], cross, rtol=0, atol=1e-13 * float(full.abs().max()))
    assert float(cross.abs().max()) > 1e-3


@pytest.mark.parametrize("arch", ["neox", "neox_seq", "gemma2"])
def test_factored_passes_equal_dense_passes(arch: str) -> None:
    """The grouped, factored (low-rank) passes give the dense general pass's rows: all layers, the target, skip."""
    model = _model(arch)
    run = ReplacementModel(model, random_transcoders(model, skip=True, n_features=32)).run(torch.arange(11))
    eng = _Engine(run)
    rows = [_Row(eng.L, 10, run.W_U[:, 3], 0.5)]
    for Ly in run.layers:
        # features 0 and 1 share position 0: their passes share the position factor
        rows += [_Row(Ly.index, int(Ly.feat_pos[j]), Ly.W_enc[:, int(Ly.feat_idx[j])], 0.1) for j in (0, 1, 9, len(Ly.feat_pos) - 1)]
        assert int(Ly.feat_pos[0]) == int(Ly.feat_pos[1])
    dense = eng._backward_general(rows)
    got = eng.backward(rows)
    assert float(dense.abs().max()) > 1.0
    assert torch.allclose(got, dense, rtol=0, atol=1e-13 * float(dense.abs().max()))


@pytest.mark.parametrize("arch", ["neox_seq", "gemma2"])
def test_rows_in_the_narrow_layout_are_the_full_rows(arch: str) -> None:
    """A row injected at layer l, computed in ``Layout.below(l)``, is its full row without the columns it
    cannot have (features and errors of layer l and above), which are zero in the full row."""
    model = _model(arch)
    run = ReplacementModel(model, random_transcoders(model, skip=True, n_features=32)).run(torch.arange(11))
    eng = _Engine(run)
    for Ly in run.layers:
        rows = [_Row(Ly.index, int(Ly.feat_pos[j]), Ly.W_enc[:, int(Ly.feat_idx[j])], 0.1) for j in (0, 5, len(Ly.feat_pos) - 1)]
        full = eng.backward(rows)
        sub = eng.lay.below(Ly.index)
        got = torch.zeros(len(rows), sub.n, dtype=run.dtype)
        eng._backward_group(rows, got, lay=sub)
        cols = eng.lay.columns(Ly.index)
        assert torch.equal(got, full[:, cols])
        rest = torch.ones(eng.lay.n, dtype=torch.bool)
        rest[cols] = False
        assert int(rest.sum()) == eng.lay.n - sub.n
        assert not full[:, rest].any()
        assert float(full.abs().max()) > 0.1
        # with totals: the same sources, then per MLP output below l its features' columns plus its error's
        tot = eng.lay.below(Ly.index, totals=True)
        got_t = torch.zeros(len(rows), tot.n, dtype=run.dtype)
        eng._backward_group(rows, got_t, lay=tot)
        assert tot.tot0 == sub.n and tot.n == sub.n + Ly.index * run.n_pos
        assert torch.equal(got_t[:, : sub.n], got)
        for lo in run.layers[: Ly.index]:
            slot = lo.index * run.n_pos + lo.feat_pos
            want = got[:, sub.err0 + lo.index * run.n_pos: sub.err0 + (lo.index + 1) * run.n_pos].clone()
            want.index_add_(1, slot - lo.index * run.n_pos, got[:, eng.lay.feat_off[lo.index]: eng.lay.feat_off[lo.index + 1]])
            have = got_t[:, tot.tot0 + lo.index * run.n_pos: tot.tot0 + (lo.index + 1) * run.n_pos]
            assert torch.allclose(have, want, rtol=0, atol=1e-12 * float(want.abs().max())) and float(have.abs().max()) > 0


def test_rows_without_the_decoder_cache_are_the_same(monkeypatch) -> None:  # noqa: ANN001
    """The frozen run's padded decoder rows, the engine's own cached copy built from ``W_dec``, and,
    past the cache budget, rows built per pass (up to its last position): the same rows."""
    import circuitdb.attribution.attribute as attr_mod

    model = tiny_gemma()
    run = ReplacementModel(model, random_transcoders(model, skip=True, n_features=32)).run(torch.arange(11))
    rows = [_Row(2, 10, run.W_U[:, 3], 0.5), _Row(2, 6, run.W_U[:, 5], 0.0)]
    rows += [_Row(1, int(p), run.layers[1].W_enc[:, int(i)], 0.1) for p, i in zip(run.layers[1].feat_pos[::7], run.layers[1].feat_idx[::7])]
    cached = _Engine(run).backward(rows)
    assert float(cached.abs().max()) > 0.1
    own = [Ly.dec_pad for Ly in run.layers]
    for Ly in run.layers:  # the run's rows: each feature's output at (position, slot), zeros in the padding,
        assert Ly.dec_pad is not None and Ly.feat_slot is not None  # then the error and b_dec
        kmax = int(Ly.dec_pad.shape[1]) - 3
        assert torch.equal(Ly.dec_pad[Ly.feat_pos, Ly.feat_slot], Ly.feat_act[:, None] * Ly.W_dec[Ly.feat_idx])
        assert int((Ly.dec_pad[:, :kmax].abs().sum(-1) > 0).sum()) <= Ly.feat_pos.numel()
        assert torch.equal(Ly.dec_pad[:, kmax], Ly.error) and bool((Ly.dec_pad[:, kmax + 1] == Ly.b_dec).all())
        torch.testing.assert_close(Ly.dec_pad[:, kmax + 2], Ly.dec_pad[:, :kmax].sum(1) + Ly.error, rtol=1e-12, atol=1e-12)
        Ly.dec_pad = None
    eng = _Engine(run)
    assert torch.equal(eng.backward(rows), cached)
    assert all(torch.equal(eng._dec_cache[i], own[i]) for i in range(len(run.layers)))
    monkeypatch.setattr(attr_mod, "_DEC_CACHE_BYTES", 0)
    eng = _Engine(run)
    got = eng.backward(rows)
    assert not eng._dec_cache
    assert torch.equal(got, cached)


def test_encoder_rows_cache_gives_the_same_graph(monkeypatch) -> None:  # noqa: ANN001
    """Feature rows read from the cached contiguous ``W_enc.T`` or, past its byte cap, from the columns
    of ``W_enc``: the same graph, same selection under a budget."""
    import circuitdb.attribution.replacement as rep_mod

    model = tiny_neox(parallel=False)
    rm = ReplacementModel(model, random_transcoders(model, n_features=32, k=8))
    cached = _graph(rm, None, max_feature_nodes=15, batch_size=4, head_split_nodes=2)
    assert rm._enc_rows
    monkeypatch.setattr(rep_mod, "ENCODER_ROWS_BYTES", 0)
    rm2 = ReplacementModel(model, rm.transcoders)
    plain = _graph(rm2, None, max_feature_nodes=15, batch_size=4, head_split_nodes=2)
    assert not rm2._enc_rows
    assert [nd.key for nd in plain.nodes] == [nd.key for nd in cached.nodes]
    assert torch.equal(plain.adjacency, cached.adjacency) and torch.equal(plain.head_weights, cached.head_weights)
    assert torch.equal(plain.pair_index, cached.pair_index) and plain.pair_index.shape[0] > 5
    # virtual weights: the same products, reduced in another memory order (round-off only)
    assert torch.allclose(plain.pair_virtual, cached.pair_virtual, rtol=1e-13, atol=1e-13)


def test_gene_nodes_merge_their_token_span() -> None:
    model = tiny_neox()
    tcs = random_transcoders(model)
    g = _graph(model, tcs, head_split_nodes=0, pairs=False)
    genes = [nd for nd in g.nodes if nd.kind == "gene"]
    assert [nd.gene for nd in genes] == list(CELL.genes)
    assert any((nd.span_end or 0) - (nd.pos or 0) > 1 for nd in genes)  # some gene spans several tokens
    # the same prompt as raw token ids: per-position token nodes sum to the gene node
    ids = g.metadata["input_ids"]
    tok_graph = attribute(torch.tensor(ids[: g.metadata["n_prompt_tokens"]] + g.metadata["target"]["answer_prefix"]), model, tcs,
                          target="top", head_split_nodes=0, pairs=False)
    # same prompt: compare with a target row on the same token
    assert tok_graph.metadata["input_ids"] == ids
    eng_t = tok_graph.indices("target")[0]
    tokens = {nd.pos: i for i, nd in enumerate(tok_graph.nodes) if nd.kind == "token"}
    gt = g.indices("target")[0]
    if tok_graph.metadata["target"]["token_id"] == g.metadata["target"]["token_id"]:
        for i, nd in enumerate(g.nodes):
            if nd.kind == "gene":
                want = sum(float(tok_graph.adjacency[eng_t, tokens[p]]) for p in range(nd.pos or 0, nd.span_end or 0))
                assert abs(float(g.adjacency[gt, i]) - want) < 1e-10
    # and for every feature row (same active features in both graphs)
    key_t = {nd.key: i for i, nd in enumerate(tok_graph.nodes)}
    for t in g.indices("feature").tolist()[::7]:
        tt = key_t[g.nodes[t].key]
        for i, nd in enumerate(g.nodes):
            if nd.kind == "gene":
                want = sum(float(tok_graph.adjacency[tt, tokens[p]]) for p in range(nd.pos or 0, nd.span_end or 0))
                assert abs(float(g.adjacency[t, i]) - want) < 1e-10


def test_virtual_weights_match_the_residual_path() -> None:
    """2-layer parallel NeoX without skip: layer-0 -> layer-1 at one position has no attention in between,
    so the edge is exactly activation x virtual weight."""
    model = tiny_neox()
    g = _graph(model, random_transcoders(model, n_features=32, k=8), head_split_nodes=0)
    df = feature_pairs(g)
    assert len(df) > 5
    assert (df["source_layer"] < df["target_layer"]).all()
    assert ((df["attribution"] - df["edge"]).abs() < 1e-10).all()
    assert ((df["attribution"] - df["activation"] * df["virtual_weight"]).abs() < 1e-12).all()


def test_pairs_are_every_same_position_pair_once_in_order() -> None:
    """Three-layer Gemma-2 (post-MLP norms), a feature budget: every kept (target, source) pair at one
    position with a lower source layer, grouped by position (first appearance), then target, then source;
    each virtual weight is W_dec[s] through the post-MLP norm, dotted with W_enc[:, t] through the MLP norm."""
    model = tiny_gemma(layers=3)
    g = _graph(model, random_transcoders(model, n_features=32, k=8), max_feature_nodes=40, batch_size=7, head_split_nodes=0)
    run = ReplacementModel(model, random_transcoders(model, n_features=32, k=8)).run(torch.tensor(g.metadata["input_ids"]))
    feats = g.indices("feature").tolist()
    by_pos: dict[int, list[int]] = {}
    for i in feats:
        by_pos.setdefault(int(g.nodes[i].pos or 0), []).append(i)
    want_idx, want_val = [], []
    for p, members in by_pos.items():
        for t in members:
            for s in members:
                nt, ns = g.nodes[t], g.nodes[s]
                if (nt.layer or 0) > (ns.layer or 0):
                    Lt, Ls = run.layers[nt.layer or 0], run.layers[ns.layer or 0]
                    e = Lt.W_enc[:, nt.index] * Lt.norm_mlp.inv[p] * Lt.norm_mlp.weight
                    dvec = Ls.W_dec[ns.index] * Ls.post_mlp.inv[p] * Ls.post_mlp.weight
                    want_idx.append((t, s))
                    want_val.append(float(e @ dvec))
    assert len(want_idx) > 10 and len({int(g.nodes[t].layer or 0) for t, _ in want_idx}) == 2
    assert g.pair_index.tolist() == [list(x) for x in want_idx]
    assert torch.allclose(g.pair_virtual, torch.tensor(want_val, dtype=g.pair_virtual.dtype), rtol=1e-12, atol=1e-12)


def test_graph_round_trip(tmp_path) -> None:  # noqa: ANN001
    model = tiny_gemma()
    g = _graph(model, random_transcoders(model), head_split_nodes=2, head_edges_per_node=5)
    assert 0 < g.head_edges.shape[0] <= 3 * 5
    back = AttributionGraph.load(g.save(tmp_path / "g.pt"))
    assert [nd.key for nd in back.nodes] == [nd.key for nd in g.nodes]
    assert torch.equal(back.adjacency, g.adjacency) and torch.equal(back.head_weights, g.head_weights)
    assert torch.equal(back.pair_index, g.pair_index) and torch.equal(back.pair_virtual, g.pair_virtual)
    assert back.metadata["target"]["label"] == "CD19+ B"


def test_bad_input() -> None:
    model = tiny_neox(ctx=40)
    tcs = random_transcoders(model)
    kw = dict(tokenizer=tiny_tokenizer(), candidates=CELL_TYPES, template=SHORT)
    with pytest.raises(InputError, match="not among the model's answers"):
        attribute(CELL, model, tcs, contrast="Neuron", **kw)
    with pytest.raises(InputError, match="not among the model's answers"):
        attribute(CellSentence("c", 0, "Neuron", CELL.genes), model, tcs, **kw)
    with pytest.raises(InputError, match="context is 40"):
        attribute(CellSentence("c", 0, "CD19+ B", tuple(GENES)), model, tcs, **kw)
    with pytest.raises(InputError, match="another model"):
        attribute(CELL, model, random_transcoders(tiny_neox(d=16)), **kw)
    with pytest.raises(InputError, match="needs the cell type"):
        attribute(CELL.genes and CellSentence("c", 0, None, CELL.genes), model, tcs, **kw)


@pytest.mark.slow
def test_attribute_many_two_processes_equal_one(tmp_path) -> None:  # noqa: ANN001
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import attr_shard_worker

    single = attr_shard_worker.run(None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = str(Path(__file__).parent / "attr_shard_worker.py")
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, worker, str(tmp_path / "out")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]
    assert len(single) == 4
    for i, g in enumerate(single):
        back = AttributionGraph.load(tmp_path / "out" / f"g{i}.pt")
        assert back.metadata["cell_id"] == g.metadata["cell_id"] == f"c{i}"
        assert [nd.key for nd in back.nodes] == [nd.key for nd in g.nodes]
        assert torch.equal(back.adjacency, g.adjacency)
        assert torch.equal(back.head_weights, g.head_weights)


def _demo_model_dir():  # noqa: ANN202
    from importlib.resources import files

    try:
        d = files("circuitdb.demo_data").joinpath("model")
    except ModuleNotFoundError:  # pragma: no cover
        return None
    return d if d.joinpath("config.json").is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_demo_model_dir() is None, reason="the demo model is not shipped in this checkout (circuitdb/demo_data/model)")
def test_completeness_on_the_demo_model() -> None:
    """Float64 completeness on the shipped demo model (random transcoders), real gene prompt."""
    import json

    import scanpy as sc

    from circuitdb.loaders.model import load_model
    from circuitdb.loaders.sentences import SentenceOptions, iter_cell_sentences

    d = _demo_model_dir()
    lm = load_model(str(d))
    model = lm.model.double()
    meta = json.loads(d.joinpath("circuitdb.json").read_text())
    tcs = random_transcoders(model, n_features=256, k=8, dec_scale=0.1)
    adata = sc.datasets.pbmc68k_reduced()
    cell = next(iter_cell_sentences(adata, SentenceOptions(top_k=20, label_key=meta.get("label_key", "bulk_labels"))))
    g = attribute(cell, model, tcs, tokenizer=lm.tokenizer, candidates=meta["cell_types"], max_feature_nodes=150,
                  head_split_nodes=2, head_edges_per_node=20)
    assert sum(nd.kind == "gene" for nd in g.nodes) == 20
    assert _completeness(g) < 1e-6
    with torch.no_grad():
        logits = model(torch.tensor(g.metadata["input_ids"])[None]).logits[0, -1]
    assert abs(float(logits[g.metadata["target"]["token_id"]]) - g.metadata["target"]["value"]) < 1e-6


def test_topk_active_through_partition_equals_topk() -> None:
    """The frozen forward's TopK through numpy's partition: the same active entries (positions, indices,
    values, row-major) as the non-zero entries of Transcoder.activation; with ties at the k-th value,
    or for other activations, it declines (the caller then uses Transcoder.activation)."""
    from circuitdb.attribution.replacement import _topk_active
    from circuitdb.transcoder.model import Transcoder, TranscoderConfig

    g = torch.Generator().manual_seed(3)
    tc = Transcoder(TranscoderConfig(d_in=8, d_features=40, activation="topk", k=5))
    for dtype in (torch.float32, torch.float64):
        pre = torch.randn(17, 40, generator=g, dtype=dtype)
        pre[0, :] = -1.0 - torch.rand(40, generator=g, dtype=dtype)  # every top-5 value is negative: none active
        pre[1, :3] = -pre[1, :3].abs()
        pre[1, 3:] = -5.0 - pre[1, 3:].abs()
        pre[1, 0] = 1.0  # four of its top 5 are negative: one active
        pos, idx, vals = _topk_active(tc, pre)
        act = tc.activation(pre)
        want_pos, want_idx = act.nonzero(as_tuple=True)
        assert torch.equal(pos, want_pos) and torch.equal(idx, want_idx) and torch.equal(vals, act[want_pos, want_idx])
        assert vals.dtype == dtype and not bool((pos == 0).any()) and int((pos == 1).sum()) == 1
        assert int(pos.numel()) == 5 * 15 + 1
    tied = torch.randn(6, 40, generator=g)
    tied[2, :8] = 10.0  # eight entries tie for the top 5
    assert _topk_active(tc, tied) is None
    relu = Transcoder(TranscoderConfig(d_in=8, d_features=40, activation="relu"))
    assert _topk_active(relu, tied) is None
    assert _topk_active(tc, tied.requires_grad_(True)) is None


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu", "topk-fallback"])
def test_frozen_run_active_features_are_the_transcoders(activation: str, monkeypatch) -> None:  # noqa: ANN001
    """The frozen forward's active features (ReLU read off the pre-activations directly, TopK from the
    partial sort or, where that declines, from Transcoder.activation) are exactly the non-zero entries of
    Transcoder.activation on the true MLP inputs, also when the encoder product's reused buffer holds a
    longer prompt's products from before."""
    import circuitdb.attribution.replacement as rep_mod

    if activation == "topk-fallback":
        monkeypatch.setattr(rep_mod, "_topk_active", lambda tc, pre: None)
        activation = "topk"
    model = tiny_neox()
    tcs = random_transcoders(model, activation=activation, n_features=32)
    rm = ReplacementModel(model, tcs)
    rm.run(torch.arange(40) % 7)
    run = rm.run(torch.arange(13))
    for Ly in run.layers:
        tc = tcs[Ly.index]
        act = tc.activation(tc.pre_activation(Ly.mlp_in))
        pos, idx = (act != 0).nonzero(as_tuple=True)
        assert pos.numel() > 13
        assert torch.equal(Ly.feat_pos, pos) and torch.equal(Ly.feat_idx, idx)
        assert torch.equal(Ly.feat_act, act[pos, idx])


def test_transcoders_fingerprint_covers_every_weight() -> None:
    from circuitdb.attribution.attribute import transcoders_fingerprint
    from circuitdb.transcoder.model import Transcoder, TranscoderConfig

    torch.manual_seed(0)
    tcs = {0: Transcoder(TranscoderConfig(d_in=8, d_features=16, k=4, skip=True)),
           1: Transcoder(TranscoderConfig(d_in=8, d_features=16, k=4))}
    for tc in tcs.values():
        for p in tc.parameters():
            torch.nn.init.normal_(p)
    base = transcoders_fingerprint(tcs)
    assert transcoders_fingerprint(tcs) == base and len(base) == 16
    for layer, name in ((0, "W_dec"), (0, "W_skip"), (1, "b_dec"), (1, "b_enc"), (1, "W_enc")):
        t = getattr(tcs[layer], name)
        kept = t.detach().clone()
        with torch.no_grad():
            t.view(-1)[-1] += 1e-3  # one entry, outside any strided sample's first rows
        assert transcoders_fingerprint(tcs) != base, name
        with torch.no_grad():
            t.copy_(kept)
        assert transcoders_fingerprint(tcs) == base


def test_pairs_as_one_product_per_position_equal_the_chunked_dots(monkeypatch) -> None:  # noqa: ANN001
    """Feature-pair virtual weights from one padded product per position, or (past the size cap) from
    per-pair dots: the same pairs in the same order, the same weights up to round-off."""
    import circuitdb.attribution.attribute as attr_mod

    model = tiny_gemma(layers=3)
    tcs = random_transcoders(model, n_features=32, k=8)
    monkeypatch.setattr(attr_mod, "_PAIR_PADDING", 10**9)  # always the padded products
    g = _graph(model, tcs, max_feature_nodes=40, batch_size=7, head_split_nodes=0)
    monkeypatch.setattr(attr_mod, "_PAIR_PRODUCT_ELEMS", 0)  # never
    h = _graph(model, tcs, max_feature_nodes=40, batch_size=7, head_split_nodes=0)
    assert g.pair_index.shape[0] > 10
    assert torch.equal(g.pair_index, h.pair_index)
    assert torch.allclose(g.pair_virtual, h.pair_virtual, rtol=1e-12, atol=1e-12)


def test_point_gradients_cross_attention_as_rows_of_the_pattern() -> None:
    """A factor that sits at one position per shared U (a gradient still at its row's position) crosses
    the transposed attention as a row of the pattern: the same numbers as the product over positions."""
    from circuitdb.attribution.replacement import attn_transpose_lowrank

    model = tiny_neox()
    run = ReplacementModel(model, random_transcoders(model)).run(torch.arange(3, 14))
    Ly = run.layers[1]
    P = run.n_pos
    u_pos = torch.tensor([0, 4, 10, 7])
    U = torch.zeros(4, P, 2, dtype=torch.float64)
    U[torch.arange(4), u_pos] = torch.randn(4, 2, dtype=torch.float64)
    V = torch.randn(6, 2, run.x0.shape[1], dtype=torch.float64)
    idx = torch.tensor([0, 1, 1, 2, 3, 3])
    U1, V1 = attn_transpose_lowrank(Ly.ov, Ly.pattern, U, V, idx)
    U2, V2 = attn_transpose_lowrank(Ly.ov, Ly.pattern, U, V, idx, u_pos)
    assert float(U1.abs().max()) > 0.01
    assert torch.allclose(U1, U2, rtol=0, atol=1e-15) and torch.equal(V1, V2)


@pytest.mark.parametrize("form", ["dense", "factored", "point", "one-u-per-row"])
def test_attention_into_its_inputs_equals_the_transposed_pass(form: str) -> None:
    """The bottom attention's direct effects on its inputs, taken against the inputs' values per head
    (no projection back through W_V): per position <attn_transpose(g)[p], y[p]> and, for the norm's
    bias, sum_p <attn_transpose(g)[p], b>, as the dense transposed pass gives them."""
    from circuitdb.attribution.replacement import attn_into_inputs, attn_into_inputs_lowrank, attn_transpose

    model = tiny_neox()
    run = ReplacementModel(model, random_transcoders(model)).run(torch.arange(3, 14))
    Ly = run.layers[0]
    P, d = run.n_pos, run.x0.shape[1]
    g = torch.Generator().manual_seed(5)
    y = torch.randn(P, d, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    values, bias_values = torch.einsum("pd,hde->hpe", y, Ly.ov.W_V), torch.einsum("d,hde->he", b, Ly.ov.W_V)
    U = torch.randn(4, P, 3, generator=g, dtype=torch.float64)
    u_pos = None
    if form == "point":  # each shared factor sits at one position
        u_pos = torch.tensor([0, 4, 10, 7])
        U = torch.zeros(4, P, 3, dtype=torch.float64)
        U[torch.arange(4), u_pos] = torch.randn(4, 3, generator=g, dtype=torch.float64)
    V = torch.randn(6, 3, d, generator=g, dtype=torch.float64)
    idx = None if form == "one-u-per-row" else torch.tensor([0, 1, 1, 2, 3, 3])
    if idx is None:
        U = torch.randn(6, P, 3, generator=g, dtype=torch.float64)
    dense = torch.bmm(U if idx is None else U[idx], V)  # (R, P, d)
    through = attn_transpose(Ly.ov, Ly.pattern, dense)
    want_tok, want_bias = (through * y).sum(-1), (through.sum(1) * b).sum(-1)
    if form == "dense":
        tok, bias = attn_into_inputs(Ly.ov, Ly.pattern, values, dense, bias_values)
    else:
        tok, bias = attn_into_inputs_lowrank(Ly.ov, Ly.pattern, values, U, V, idx, u_pos, bias_values)
    scale = float(want_tok.abs().max())
    assert scale > 0.01
    assert torch.allclose(tok, want_tok, rtol=0, atol=1e-13 * scale)
    assert bias is not None and torch.allclose(bias, want_bias, rtol=0, atol=1e-13 * float(want_bias.abs().max()))
    none = attn_into_inputs(Ly.ov, Ly.pattern, values, dense)[1] if form == "dense" else \
        attn_into_inputs_lowrank(Ly.ov, Ly.pattern, values, U, V, idx, u_pos)[1]
    assert none is None


def test_nonzero_entries_through_numpy_match_torch() -> None:
    """The frozen run's active-feature finder: the entries that are not ``<= floor`` per column (NaN
    included) or not zero, in row-major order, as torch.nonzero gives them."""
    from circuitdb.attribution.replacement import _nonzero_2d

    x = torch.randn(7, 33)
    x[x.abs() < 0.3] = 0.0
    x[2, 5] = float("nan")
    x[4, 0] = -0.0
    zero, floor = torch.zeros(33), 0.5 * torch.randn(33)
    for fl, want in ((zero, torch.logical_not(x <= 0)), (None, x != 0), (floor, torch.logical_not(x <= floor))):
        pos, idx = _nonzero_2d(x, floor=fl)
        wp, wi = want.nonzero(as_tuple=True)
        assert torch.equal(pos, wp) and torch.equal(idx, wi)
    assert (2, 5) in set(zip(*[t.tolist() for t in _nonzero_2d(x, floor=zero)]))


def test_target_logits_of_some_tokens_are_those_of_the_whole_vocabulary() -> None:
    model = tiny_gemma()
    run = ReplacementModel(model, random_transcoders(model)).run(torch.arange(9))
    full = run.pre_softcap_logits(-1)
    assert torch.allclose(run.pre_softcap_logits(-1, tokens=[5, 2, 5]), full[[5, 2, 5]], rtol=1e-13, atol=1e-13)
