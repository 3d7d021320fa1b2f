"""Every cypher/library query on a small known graph, with hand-computed rows, on Neo4j and the embedded default."""

from __future__ import annotations

from typing import Any

import pytest

from circuitdb import catalog
from circuitdb.queries import REGISTRY, run_rows
from graphfix import backend, export_circuits, wipe  # noqa: F401 - fixtures
from known_graph import circuit_id, fid, hid, known_circuits

A1, B1, A2 = circuit_id("A", "D1"), circuit_id("B", "D1"), circuit_id("A", "D2")


@pytest.fixture(scope="module")
def known(backend: Any) -> Any:  # noqa: F811
    wipe(backend)
    export_circuits(backend, known_circuits(), batch_size=3)
    return backend


def q(runner: Any, name: str, **params: Any) -> list[dict[str, Any]]:
    return run_rows(runner, name, params)


def test_every_library_file_is_reachable_from_the_registry() -> None:
    used = {q.statement for q in REGISTRY.values()} | {f"feature_neighbourhood_{k}" for k in (1, 2, 3)}
    used |= {"diff_edges", "diff_features", "diff_edge_counts", "diff_circuits", "feature_exists"}
    assert {n for n in catalog.names("library") if not n.startswith("example_")} <= used


def test_circuits_lists_provenance(known: Any) -> None:
    rows = q(known, "circuits")
    assert [(r["cell_type"], r["dataset"]) for r in rows] == [("A", "D1"), ("A", "D2"), ("B", "D1")]
    a1 = rows[0]
    assert a1["id"] == A1 and a1["complete"] is True and a1["n_cells"] == 2
    assert a1["model"] == "model:" + "m" * 16 and a1["transcoder_set"] == "tc:" + "t" * 16
    assert a1["method"] == "mean" and a1["code_version"] == "test" and '"node": 0.8' in a1["thresholds"]
    assert a1["n_edges"] == 7  # the error edge is not stored
    assert [r["id"] for r in q(known, "circuits", dataset="D2")] == [A2]


def test_top_features(known: Any) -> None:
    rows = q(known, "top_features", cell_type="A", dataset="D1", limit=2)
    got = [(r["feature"], round(r["influence"], 9), r["direct_weight"] and round(r["direct_weight"], 9)) for r in rows]
    assert got == [(fid(0, 1), 0.76, 0.2), (fid(1, 3), 0.7, 0.7)]
    third = q(known, "top_features", cell_type="A", dataset="D1", limit=5)[2]
    assert third["feature"] == fid(0, 2) and third["direct_weight"] is None


def test_gene_paths_above_threshold(known: Any) -> None:
    rows = q(known, "gene_paths", cell_type="A", dataset="D1", min_weight=0.3)
    got = [(r["gene"], r["nodes"], round(r["path_weight"], 9), r["length"]) for r in rows]
    assert got == [
        ("g1", ["g1", fid(0, 1), fid(1, 3), "A"], 0.504, 3),
        ("g2", ["g2", fid(0, 2), fid(1, 3), "A"], -0.14, 3),
    ]
    rows = q(known, "gene_paths", cell_type="A", dataset="D1", min_weight=0.0)
    got = [(r["gene"], len(r["nodes"]), round(r["path_weight"], 9)) for r in rows]
    assert got == [("g1", 4, 0.504), ("g1", 3, 0.18), ("g2", 4, -0.14), ("g2", 2, 0.05)]


def test_top_heads(known: Any) -> None:
    rows = q(known, "top_heads", cell_type="A", dataset="D1")
    got = [(r["head"], round(r["total_weight"], 9), round(r["direct_weight"], 9), r["n_edges"]) for r in rows]
    assert got == [(hid(0, 0), 1.0, 0.0, 2), (hid(1, 0), 0.35, 0.35, 1), (hid(0, 1), 0.3, 0.0, 1)]
    assert rows[0]["layer"] == 0 and rows[0]["head_index"] == 0


def _edges(rows: list[dict[str, Any]]) -> set[tuple[str, str, str, str, float]]:
    return {(r["type"], r["circuit"], r["source"], r["target"], round(r["weight"], 9)) for r in rows}


def test_neighbourhood_one_hop_all_circuits(known: Any) -> None:
    rows = q(known, "neighbourhood", feature=fid(1, 3), hops=1)
    assert _edges(rows) == {
        ("FEATURE_TO_FEATURE", A1, fid(0, 1), fid(1, 3), 0.8), ("FEATURE_TO_FEATURE", A1, fid(0, 2), fid(1, 3), -0.5),
        ("FEATURE_TO_CELL_TYPE", A1, fid(1, 3), "A", 0.7), ("FEATURE_TO_FEATURE", A2, fid(0, 1), fid(1, 3), 0.8),
        ("FEATURE_TO_CELL_TYPE", A2, fid(1, 3), "A", 0.5), ("GENE_TO_FEATURE", A2, "g2", fid(1, 3), 0.1),
    }
    assert {(r["source"], r["source_label"]) for r in rows if r["type"] == "GENE_TO_FEATURE"} == {("g2", "Gene")}
    rows = q(known, "neighbourhood", feature=fid(1, 3), hops=1, circuit=A1, min_weight=0.6)
    assert _edges(rows) == {("FEATURE_TO_FEATURE", A1, fid(0, 1), fid(1, 3), 0.8),
                            ("FEATURE_TO_CELL_TYPE", A1, fid(1, 3), "A", 0.7)}


def test_neighbourhood_two_and_three_hops(known: Any) -> None:
    two = _edges(q(known, "neighbourhood", feature=fid(1, 3), hops=2, circuit=A1))
    assert two == {
        ("FEATURE_TO_FEATURE", A1, fid(0, 1), fid(1, 3), 0.8), ("FEATURE_TO_FEATURE", A1, fid(0, 2), fid(1, 3), -0.5),
        ("FEATURE_TO_CELL_TYPE", A1, fid(1, 3), "A", 0.7), ("GENE_TO_FEATURE", A1, "g1", fid(0, 1), 0.9),
        ("FEATURE_TO_CELL_TYPE", A1, fid(0, 1), "A", 0.2), ("GENE_TO_FEATURE", A1, "g2", fid(0, 2), 0.4),
        ("GENE_TO_CELL_TYPE", A1, "g2", "A", 0.05),
    }
    # from f1.4 in B: 1 hop = f0.1->f1.4, g3->f1.4, f1.4->B; 2 hops add g1->f0.1, f0.1->B; 3 hops add nothing new
    one_b = _edges(q(known, "neighbourhood", feature=fid(1, 4), hops=1, circuit=B1))
    two_b = _edges(q(known, "neighbourhood", feature=fid(1, 4), hops=2, circuit=B1))
    three_b = _edges(q(known, "neighbourhood", feature=fid(1, 4), hops=3, circuit=B1))
    assert len(one_b) == 3 and len(two_b) == 5 and three_b == two_b


def test_shared_vs_specific_features(known: Any) -> None:
    rows = q(known, "shared_features", dataset="D1")
    got = {r["feature"]: (r["category"], r["cell_types"], r["n_cell_types"], r["n_total"]) for r in rows}
    assert got == {
        fid(0, 1): ("shared", ["A", "B"], 2, 2),
        fid(0, 2): ("specific", ["A"], 1, 2),
        fid(1, 3): ("specific", ["A"], 1, 2),
        fid(1, 4): ("specific", ["B"], 1, 2),
    }
    assert [r["feature"] for r in q(known, "shared_features", category="shared")] == [fid(0, 1)]


def _diff(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[str, Any, Any, float]]:
    def r9(x: Any) -> Any:
        return None if x is None else round(x, 9)

    return {(r["type"], r["source"], r["target"]): (r["status"], r9(r["weight_a"]), r9(r["weight_b"]), r9(r["delta"]))
            for r in rows}


def test_diff_cell_types_edges(known: Any) -> None:
    rows = q(known, "diff_cell_types", cell_type_a="A", cell_type_b="B", dataset="D1")
    assert _diff(rows) == {
        ("GENE_TO_FEATURE", "g1", fid(0, 1)): ("both", 0.9, 0.5, -0.4),
        ("FEATURE_TO_CELL_TYPE", fid(0, 1), "target"): ("both", 0.2, 0.2, 0.0),
        ("GENE_TO_FEATURE", "g2", fid(0, 2)): ("only_a", 0.4, None, -0.4),
        ("FEATURE_TO_FEATURE", fid(0, 1), fid(1, 3)): ("only_a", 0.8, None, -0.8),
        ("FEATURE_TO_FEATURE", fid(0, 2), fid(1, 3)): ("only_a", -0.5, None, 0.5),
        ("FEATURE_TO_CELL_TYPE", fid(1, 3), "target"): ("only_a", 0.7, None, -0.7),
        ("GENE_TO_CELL_TYPE", "g2", "target"): ("only_a", 0.05, None, -0.05),
        ("GENE_TO_FEATURE", "g3", fid(1, 4)): ("only_b", None, 0.6, 0.6),
        ("FEATURE_TO_FEATURE", fid(0, 1), fid(1, 4)): ("only_b", None, 0.3, 0.3),
        ("FEATURE_TO_CELL_TYPE", fid(1, 4), "target"): ("only_b", None, 0.9, 0.9),
    }
    assert len(rows) == 10
    assert abs(rows[0]["delta"]) == pytest.approx(0.9)  # ordered by |delta|
    top = q(known, "diff_cell_types", cell_type_a="A", cell_type_b="B", dataset="D1", limit=2)
    assert [(r["source"], round(r["delta"], 9)) for r in top] == [(fid(1, 4), 0.9), (fid(0, 1), -0.8)]
    from circuitdb import catalog as cat

    counts = known.run(cat.load("library", "diff_edge_counts"),
                       {"cell_type_a": "A", "dataset_a": "D1", "cell_type_b": "B", "dataset_b": "D1"})
    assert [(r["status"], r["n"]) for r in counts] == [("both", 2), ("only_a", 5), ("only_b", 3)]
    feats = q(known, "diff_cell_types_features", cell_type_a="A", cell_type_b="B", dataset="D1")
    got = {r["feature"]: (r["status"], r["influence_a"], r["influence_b"], round(r["delta"], 9)) for r in feats}
    assert got == {fid(0, 1): ("both", 0.76, 0.47, -0.29), fid(0, 2): ("only_a", 0.2, None, -0.2),
                   fid(1, 3): ("only_a", 0.7, None, -0.7), fid(1, 4): ("only_b", None, 0.9, 0.9)}


def test_diff_datasets(known: Any) -> None:
    rows = q(known, "diff_datasets", cell_type="A", dataset_a="D1", dataset_b="D2")
    assert _diff(rows) == {
        ("GENE_TO_FEATURE", "g1", fid(0, 1)): ("both", 0.9, 0.7, -0.2),
        ("FEATURE_TO_FEATURE", fid(0, 1), fid(1, 3)): ("both", 0.8, 0.8, 0.0),
        ("FEATURE_TO_CELL_TYPE", fid(1, 3), "target"): ("both", 0.7, 0.5, -0.2),
        ("GENE_TO_FEATURE", "g2", fid(0, 2)): ("only_a", 0.4, None, -0.4),
        ("FEATURE_TO_FEATURE", fid(0, 2), fid(1, 3)): ("only_a", -0.5, None, 0.5),
        ("FEATURE_TO_CELL_TYPE", fid(0, 1), "target"): ("only_a", 0.2, None, -0.2),
        ("GENE_TO_CELL_TYPE", "g2", "target"): ("only_a", 0.05, None, -0.05),
        ("GENE_TO_FEATURE", "g2", fid(1, 3)): ("only_b", None, 0.1, 0.1),
    }
    feats = q(known, "diff_datasets_features", cell_type="A", dataset_a="D1", dataset_b="D2")
    got = {r["feature"]: (r["status"], round(r["delta"], 9)) for r in feats}
    assert got == {fid(0, 1): ("both", -0.36), fid(1, 3): ("both", -0.2), fid(0, 2): ("only_a", -0.2)}


def test_circuit_diff_is_one_pass_of_the_library_diffs(known: Any) -> None:
    """diff_circuits (what 'circuitdb diff' runs) gives exactly the rows and counts of diff_edges,
    diff_edge_counts and diff_features, in the same order, for cell-type and dataset diffs."""
    from circuitdb import catalog as cat
    from circuitdb.queries import circuit_diff

    for a, b, da, db in (("A", "B", "D1", "D1"), ("A", "A", "D1", "D2"), ("B", "A", "D1", "D2")):
        p = {"cell_type_a": a, "dataset_a": da, "cell_type_b": b, "dataset_b": db}
        edges = known.run(cat.load("library", "diff_edges"), {**p, "limit": 1000})
        counts = {r["status"]: r["n"] for r in known.run(cat.load("library", "diff_edge_counts"), p)}
        feats = known.run(cat.load("library", "diff_features"), p)
        d = circuit_diff(known, a, b, dataset_a=da, dataset_b=db)
        assert d.counts() == {k: counts.get(k, 0) for k in ("only_a", "only_b", "both")}
        assert _rows(d.edges) == edges and _rows(d.features) == feats
        top = circuit_diff(known, a, b, dataset_a=da, dataset_b=db, limit=3)
        assert _rows(top.edges) == edges[:3] and top.counts() == d.counts()
    assert circuit_diff(known, "A", "B").counts() == {"only_a": 5, "only_b": 3, "both": 2}


def _rows(df: Any) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in df.to_dict("records")]


def test_gene_influence_change(known: Any) -> None:
    rows = q(known, "gene_influence_change", cell_type="A", dataset_a="D1", dataset_b="D2")
    got = [(r["gene"], r["influence_a"], r["influence_b"], round(r["delta"], 9)) for r in rows]
    assert got == [("g1", 0.63, 0.28, -0.35), ("g2", 0.3, 0.05, -0.25)]
    assert [r["gene"] for r in q(known, "gene_influence_change", cell_type="A", dataset_a="D1",
                                 dataset_b="D2", limit=1)] == ["g1"]


def test_circuit_edges(known: Any) -> None:
    rows = q(known, "circuit_edges", circuit=B1)
    got = [(r["type"], r["source"], r["target"], r["weight"]) for r in rows]
    assert got == [("FEATURE_TO_CELL_TYPE", fid(1, 4), "B", 0.9), ("GENE_TO_FEATURE", "g3", fid(1, 4), 0.6),
                   ("GENE_TO_FEATURE", "g1", fid(0, 1), 0.5), ("FEATURE_TO_FEATURE", fid(0, 1), fid(1, 4), 0.3),
                   ("FEATURE_TO_CELL_TYPE", fid(0, 1), "B", 0.2)]
    assert q(known, "circuit_edges", circuit="nope") == []


def test_graph_counts(known: Any) -> None:
    rows = {(r["kind"], r["name"]): r["n"] for r in q(known, "graph_counts")}
    assert rows[("node", "Feature")] == 4 and rows[("node", "Gene")] == 3 and rows[("node", "Circuit")] == 3
    assert rows[("node", "AttentionHead")] == 3 and rows[("node", "CellType")] == 2
    assert rows[("relationship", "GENE_TO_FEATURE")] == 2 + 2 + 2
    assert rows[("relationship", "HEAD_CARRIES")] == 4 + 2  # A/D1: 2 on g1, 1 on g2, 1 on f1.3 -> A; B/D1: 2


def test_dataset_diffs_over_shared_cell_types(known: Any) -> None:
    from circuitdb.errors import InputError
    from circuitdb.queries import dataset_diffs, dataset_ids

    assert dataset_ids(known) == {"D1": "D1", "D2": "D2"}
    out = dataset_diffs(known, "D1", "D2", top_genes=1)
    assert [d.cell_type for d in out] == ["A"]  # B has no circuit in D2
    d = out[0]
    assert d.diff.counts() == {"only_a": 4, "only_b": 1, "both": 3}
    assert d.diff.counts("features") == {"only_a": 1, "only_b": 0, "both": 2}
    assert d.genes["gene"].tolist() == ["g1"] and round(float(d.genes["delta"][0]), 9) == -0.35
    with pytest.raises(InputError, match="no circuits of dataset 'D3'.*D1 \\(D1\\), D2 \\(D2\\)"):
        dataset_diffs(known, "D1", "D3")
    with pytest.raises(InputError, match="both sides"):
        dataset_diffs(known, "D2", "D2")
