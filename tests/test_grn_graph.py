"""GRN import and circuit <-> GRN link queries on a small known graph, on Neo4j and the embedded default."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from circuitdb import catalog
from circuitdb.graph.grn import import_grn, link_circuit
from circuitdb.graph.writer import columns, export_circuits, graph_totals
from circuitdb.loaders.grn import GRN
from circuitdb.queries import run_rows

from graphfix import backend, wipe  # noqa: F401 - fixtures
from known_graph import circuit_id, fid, known_circuits

A1, B1, A2 = circuit_id("A", "D1"), circuit_id("B", "D1"), circuit_id("A", "D2")


def _grn(name: str = "toy", extra: bool = False) -> GRN:
    rows = [("g1", "g2", 1.0, 1, "CollecTRI"), ("g3", "g1", -1.0, -1, "DoRothEA_A"), ("g2", "tf_out", 1.0, 1, "CollecTRI")]
    if extra:
        rows.append(("g2", "g3", 0.5, 1, "CollecTRI"))
    edges = pd.DataFrame(rows, columns=["source", "target", "weight", "sign", "resource"])
    return GRN(name=name, format="decoupler", edges=edges, dropped={"uniprot_source": 2})


@pytest.fixture(scope="module")
def linked(backend: Any) -> Any:  # noqa: F811
    wipe(backend)
    export_circuits(backend, known_circuits(), batch_size=3)
    import_grn(backend, _grn(), source="toy.csv", batch_size=2)
    return backend


def test_import_is_idempotent_and_replaces_changed_content(backend: Any) -> None:  # noqa: F811
    wipe(backend)
    export_circuits(backend, known_circuits())
    s1 = import_grn(backend, _grn(), source="toy.csv", batch_size=2)
    first = graph_totals(backend)
    assert first["relationships"]["REGULATES"] == 3 and first["nodes"]["GRN"] == 1
    assert first["nodes"]["Gene"] == 4  # g1..g3 from circuits + tf_out
    assert s1.rows == {"grn": 1, "gene": 4, "regulates": 3} and not s1.skipped_unchanged
    s2 = import_grn(backend, _grn(), source="toy.csv", batch_size=2)
    assert s2.skipped_unchanged and graph_totals(backend) == first
    s3 = import_grn(backend, _grn(extra=True), source="toy2.csv")
    assert s3.replaced and graph_totals(backend)["relationships"]["REGULATES"] == 4
    grns = run_rows(backend, "grns", {})
    assert [(g["name"], g["n_edges"], g["complete"], g["source"]) for g in grns] == [("toy", 4, True, "toy2.csv")]
    assert '"uniprot_source": 2' in grns[0]["dropped"]
    import_grn(backend, _grn("other"), source="o.csv")
    assert graph_totals(backend)["relationships"]["REGULATES"] == 7
    assert len(run_rows(backend, "grn_edges", {"grn": "other"})) == 3


def test_tf_target_pairs_inside_a_circuit(linked: Any) -> None:
    rows = run_rows(linked, "grn_pairs", {"cell_type": "A", "dataset": "D1"})
    assert [(r["circuit"], r["tf"], r["target"], r["grn"], r["sign"]) for r in rows] == [(A1, "g1", "g2", "toy", 1)]
    rows = run_rows(linked, "grn_pairs", {"cell_type": "B"})
    assert [(r["tf"], r["target"], r["weight"], r["resource"]) for r in rows] == [("g3", "g1", -1.0, "DoRothEA_A")]
    assert run_rows(linked, "grn_pairs", {"cell_type": "A", "grn": "nope"}) == []
    both = run_rows(linked, "grn_pairs", {"cell_type": "A"})
    assert [r["circuit"] for r in both] == sorted([A1, A2])


def test_regulated_paths(linked: Any) -> None:
    rows = run_rows(linked, "grn_paths", {"cell_type": "A", "dataset": "D1"})
    got = [(r["tf"], r["gene"], r["nodes"], round(r["path_weight"], 9), r["length"]) for r in rows]
    # the direct g2 -> A edge is not a path through features
    assert got == [("g1", "g2", ["g2", fid(0, 2), fid(1, 3), "A"], -0.14, 3)]
    rows = run_rows(linked, "grn_paths", {"cell_type": "B", "dataset": "D1"})
    got = [(r["tf"], r["gene"], r["nodes"], round(r["path_weight"], 9)) for r in rows]
    assert got == [("g3", "g1", ["g1", fid(0, 1), fid(1, 4), "B"], 0.135), ("g3", "g1", ["g1", fid(0, 1), "B"], 0.1)]
    rows = run_rows(linked, "grn_paths", {"cell_type": "B", "dataset": "D1", "min_weight": 0.25})
    assert [r["nodes"] for r in rows] == [["g1", fid(0, 1), fid(1, 4), "B"]]


def _feature_eids(runner: Any, feature_id: str) -> dict[str, str]:
    """The element id of an existing feature (what the export's feature MERGE returns)."""
    from circuitdb.catalog import CypherStatement

    stmt = CypherStatement("admin", "test_feature_eid", "MATCH (f:Feature {id: $id}) RETURN elementId(f) AS eid",
                           "tests", ("id",))
    return {feature_id: runner.run(stmt, {"id": feature_id})[0]["eid"]}


def test_link_and_agreement(linked: Any) -> None:
    expr = {f"X{i}": float(i) for i in range(100)}
    expr.update({"G1": 10.5, "G2": 50.5, "G3": 80.5})
    res = link_circuit(linked, "A", dataset="D1", grn="toy", expression=expr)
    assert [(p["tf"], p["target"]) for p in res.pairs] == [("g1", "g2")] and len(res.paths) == 1
    assert res.agreement is None and res.n_linked_pairs == 0 and "no gene pair" in (res.note or "")
    # add g3 -> f0.1 to A1: g1 and g3 now share f0.1, and g3 -> g1 is a GRN edge
    linked.run(catalog.load("write", "gene_to_feature"),
               columns("gene_to_feature",
                       [{"circuit": A1, "source": "g3", "target": fid(0, 1), "weight": 0.3, "frequency": 1.0}],
                       {"gene": dict(linked.run(catalog.load("write", "gene"), {"rows": [{"symbol": "g3"}]})[0]["eids"]),
                        "feature": _feature_eids(linked, fid(0, 1))}))
    try:
        res = link_circuit(linked, "A", dataset="D1", grn="toy", expression=expr, n_permutations=200)
        ag = res.agreement
        assert ag is not None and res.n_linked_pairs == 1
        assert ag.fraction == 1.0 and ag.n_grn_pairs == 1 and ag.ratio is not None and ag.ratio > 5 and ag.p_value < 0.05
    finally:
        wipe(linked)
        export_circuits(linked, known_circuits())
        import_grn(linked, _grn(), source="toy.csv")
    with pytest.raises(Exception, match="no GRN named 'nope'"):
        link_circuit(linked, "A", grn="nope")
    with pytest.raises(Exception, match="no circuit for cell type 'Z'"):
        link_circuit(linked, "Z")
