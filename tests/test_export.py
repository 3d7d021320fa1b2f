"""Export of circuits into the graph: rows, idempotence, resumption (also after a killed process), CLI errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from circuitdb import catalog
from circuitdb.attribution.circuit import CircuitEdge
from circuitdb.errors import InputError
from circuitdb.graph.rows import circuit_rows, feature_node_id, merge_node_rows
from circuitdb.graph.synthetic import synthetic_circuit
from circuitdb.graph.writer import columns, default_workers, export_circuits, find_circuit_files, graph_totals
from graphfix import backend, cli_env_for, graph, settings_of, wipe  # noqa: F401 - fixtures
from known_graph import TH, known_circuits


def expected_totals(circuits: list[Any]) -> dict[str, dict[str, int]]:
    """Node and relationship counts an export of ``circuits`` must produce, from the rows alone."""
    rows = [circuit_rows(c) for c in circuits]
    nodes = merge_node_rows(rows)
    label = {"model": "Model", "transcoder_set": "TranscoderSet", "dataset": "Dataset", "cell_type": "CellType",
             "gene": "Gene", "feature": "Feature", "attention_head": "AttentionHead"}
    n = {label[k]: len(v) for k, v in nodes.items() if v}
    n["Circuit"] = len(rows)
    rel: dict[str, int] = {}
    for r in rows:
        for name, items in list(r.members.items()) + list(r.edges.items()):
            t = "HEAD_CARRIES" if name.startswith("head_") else name.upper()
            if items:
                rel[t] = rel.get(t, 0) + len(items)
    for t in ("FOR_CELL_TYPE", "ON_DATASET", "USES_TRANSCODERS"):
        rel[t] = len(rows)
    rel["OF_MODEL"] = len(rows) + len(nodes["transcoder_set"])
    return {"nodes": dict(sorted(n.items())), "relationships": dict(sorted(rel.items()))}


# -- rows (no database) -------------------------------------------------------------------------

def test_rows_use_deterministic_ids_and_skip_error_nodes() -> None:
    a1 = known_circuits()[0]
    rows = circuit_rows(a1)
    assert rows.circuit_id == a1.id == circuit_rows(known_circuits()[0]).circuit_id
    assert {f["id"] for f in rows.nodes["feature"]} == {feature_node_id(TH, 0, 1), feature_node_id(TH, 0, 2),
                                                        feature_node_id(TH, 1, 3)}
    assert rows.skipped_nodes == 1 and rows.skipped_edges == 1  # err:0 and its edge
    assert len(rows.edges["gene_to_cell_type"]) == 1 and rows.n_edges() == 7
    assert rows.content_hash == circuit_rows(known_circuits()[0]).content_hash
    a1.edges[0].weight += 0.1
    assert circuit_rows(a1).content_hash != rows.content_hash
    assert json.loads(rows.circuit["thresholds"]) == {"node": 0.8}


def test_ids_drop_a_hash_algorithm_prefix() -> None:
    from circuitdb.graph.rows import head_node_id, model_node_id

    assert feature_node_id("sha256:" + "ab" * 32, 2, 7) == "abababababababab:2:7" == feature_node_id("ab" * 32, 2, 7)
    assert model_node_id("sha256:" + "cd" * 32) == "model:" + "cd" * 8
    assert head_node_id("sha256:" + "cd" * 32, 1, 3) == "cd" * 8 + ":1:3"


def test_inconsistent_circuits_are_refused() -> None:
    c = known_circuits()[0]
    c.edges.append(CircuitEdge("gene:nope", "feat:0:1", 1.0))
    with pytest.raises(InputError, match="unknown node 'gene:nope'"):
        circuit_rows(c)
    c = known_circuits()[0]
    c.edges.append(CircuitEdge("feat:1:3", "feat:0:1", 1.0))
    c.edges.append(CircuitEdge("feat:1:3", "feat:0:1", 1.0))
    with pytest.raises(InputError, match="appears twice"):
        circuit_rows(c)
    c = known_circuits()[0]
    c.edges.append(CircuitEdge("target:A", "feat:0:1", 1.0))
    with pytest.raises(InputError, match="not a circuit edge type"):
        circuit_rows(c)


def test_columns_send_circuit_ids_once_and_end_nodes_as_element_ids() -> None:
    rows = [{"circuit": "c2", "head": "h1", "source": "a", "target": "b", "weight": 0.5},
            {"circuit": "c1", "head": "h2", "source": "b", "target": "c", "weight": -1.0},
            {"circuit": "c2", "head": "h1", "source": "c", "target": "a", "weight": 2.0}]
    eids = {"attention_head": {"h1": "4:x:1", "h2": "4:x:2"}, "feature": {"a": "4:x:7", "b": "4:x:8", "c": "4:x:9"},
            "gene": {}, "cell_type": {}}
    cols = columns("head_to_feature", rows, eids)
    # the edge's source and target keys stay (HEAD_CARRIES stores them); the head key becomes an element id
    assert cols == {"source": ["a", "b", "c"], "target": ["b", "c", "a"], "weight": [0.5, -1.0, 2.0],
                    "s": ["4:x:1", "4:x:2", "4:x:1"], "t": ["4:x:8", "4:x:9", "4:x:7"],
                    "circuits": ["c2", "c1"], "ci": [0, 1, 0]}
    assert [cols["circuits"][i] for i in cols["ci"]] == [r["circuit"] for r in rows]
    plain = columns("feature_to_feature", [{k: v for k, v in r.items() if k != "head"} for r in rows], eids)
    assert set(plain) == {"s", "t", "weight", "circuits", "ci"}  # keys are not sent where not stored
    assert set(catalog.load("write", "feature_to_feature").params) == set(plain) | {"frequency"}
    assert columns("has_gene", [], eids) == {"t": [], "circuits": [], "ci": []}
    with pytest.raises(InputError, match="feature 'zz' is not in the graph"):
        columns("feature_to_feature", [{"circuit": "c", "source": "a", "target": "zz", "weight": 1.0}], eids)


class _FakeRunner:
    """Answers the writer's statements without a database; ``short`` names one that loses a row."""

    backend = "neo4j"

    def __init__(self, short: str | None = None) -> None:
        self.short, self.calls = short, []

    def run(self, stmt: Any, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        import threading

        params = params or {}
        self.calls.append((stmt.name, threading.current_thread().name))
        if stmt.name in ("circuit_status", "graph_counts", "purge_circuit_edges"):
            return []
        n = len(params["rows"]) if "rows" in params else len(params["ci"])
        time.sleep(0.002)
        key = {"gene": "symbol", "cell_type": "name", "feature": "id", "attention_head": "id"}.get(stmt.name)
        eids = [[r[key], f"eid:{r[key]}"] for r in params["rows"]] if key else []
        return [{"n": n - 1 if stmt.name == self.short else n, "eids": eids}]


def test_concurrent_batches_report_progress_in_order_and_fail_cleanly() -> None:
    import threading

    circuits = [synthetic_circuit(f"type{i}", n_edges=80, n_features=30, seed=i) for i in range(3)]
    seen: list[int] = []
    ok = _FakeRunner()
    summary = export_circuits(ok, circuits, batch_size=10, workers=3, on_progress=lambda a, t, s: seen.append(a))
    assert summary.relationships_written == sum(n for k, n in summary.rows.items() if k not in ("circuit", "model",
                                                "transcoder_set", "dataset", "cell_type", "gene", "feature",
                                                "attention_head"))
    assert sum(seen) == sum(summary.rows.values())
    assert {t for name, t in ok.calls if name == "feature_to_feature"} - {threading.main_thread().name}
    assert not [t for t in threading.enumerate() if t.name.startswith("circuitdb-export")]
    bad = _FakeRunner(short="feature_to_feature")
    with pytest.raises(InputError, match="write/feature_to_feature: 1 of 10 rows found no end node"):
        export_circuits(bad, circuits, batch_size=10, workers=3)
    assert ("circuit_complete", threading.main_thread().name) not in bad.calls
    assert not [t for t in threading.enumerate() if t.name.startswith("circuitdb-export")]


def test_find_circuit_files(tmp_path: Path) -> None:
    for c in known_circuits():
        c.save(tmp_path / "sub" / f"{c.provenance.dataset}_{c.provenance.cell_type}.json")
    (tmp_path / "manifest.json").write_text('{"not": "a circuit"}')
    circuits, other = find_circuit_files(tmp_path)
    assert len(circuits) == 3 and [p.name for p in other] == ["manifest.json"]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json is not readable JSON"):
        find_circuit_files(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        find_circuit_files(tmp_path / "missing")


def test_export_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"metadata": {"circuitdb": {"model": 1}}, "nodes": [], "links": []}')
    r = subprocess.run([sys.executable, "-m", "circuitdb", "export", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert "x.json is not a valid circuit file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- both backends ------------------------------------------------------------------------------

def test_export_is_idempotent_and_counts_are_exact(graph: Any) -> None:
    circuits = [synthetic_circuit(ct, n_edges=60, seed=1) for ct in ("B cell", "T cell")] + known_circuits()
    first = export_circuits(graph, circuits, batch_size=17)
    assert first.totals == expected_totals(circuits)
    assert len(first.circuits_written) == 5 and first.skipped_nodes == 5
    second = export_circuits(graph, circuits, batch_size=17)
    assert second.totals == first.totals
    assert len(second.circuits_skipped) == 5 and not second.circuits_written and second.relationships_written == 0


def test_concurrent_writers_give_the_same_graph(graph: Any) -> None:
    circuits = [synthetic_circuit(f"type{i}", n_edges=150, n_features=40, seed=i) for i in range(4)]
    if graph.backend != "neo4j":  # the embedded default takes one writer; asking for more is refused up front
        assert default_workers(graph) == 1
        with pytest.raises(InputError, match="one writer at a time"):
            export_circuits(graph, circuits, workers=2)
        assert graph_totals(graph)["relationships"] == {}
        return
    assert default_workers(graph) == 2
    serial = export_circuits(graph, circuits, batch_size=23, group_rows=200, workers=1)
    edges = sorted((r["type"], r["source"], r["target"], round(r["weight_a"], 9))
                   for r in graph.run(catalog.load("library", "diff_edges"),
                                      {"cell_type_a": "type1", "dataset_a": circuits[1].provenance.dataset_id,
                                       "cell_type_b": "none", "dataset_b": "none", "limit": 100000}))
    wipe(graph)
    parallel = export_circuits(graph, circuits, batch_size=23, group_rows=200, workers=3)
    assert parallel.totals == serial.totals == expected_totals(circuits)
    assert parallel.rows == serial.rows and len(parallel.circuits_written) == 4
    assert sorted((r["type"], r["source"], r["target"], round(r["weight_a"], 9))
                  for r in graph.run(catalog.load("library", "diff_edges"),
                                     {"cell_type_a": "type1", "dataset_a": circuits[1].provenance.dataset_id,
                                      "cell_type_b": "none", "dataset_b": "none", "limit": 100000})) == edges
    assert len(edges) > 100


def test_export_resumes_an_interrupted_circuit_and_replaces_a_changed_one(graph: Any) -> None:
    circuits = known_circuits()
    clean = export_circuits(graph, circuits).totals
    # an interrupted export: one circuit left incomplete with some of its edges missing
    graph.run(catalog.load("write", "purge_circuit_edges"), {"circuit": circuits[1].id, "limit": 4})
    _mark_incomplete(graph, circuits[1].id)
    assert graph_totals(graph) != clean
    again = export_circuits(graph, circuits)
    assert again.circuits_written == [circuits[1].id] and again.totals == clean
    # a rebuilt circuit: an edge dropped and a weight changed -> replaced, nothing stale left
    changed = known_circuits()
    dropped = changed[0].edges.pop(2)  # f0.1 -> f1.3 in A/D1
    changed[0].edges[0].weight = 0.95
    third = export_circuits(graph, changed)
    assert third.circuits_replaced == [changed[0].id]
    assert third.totals == expected_totals(changed)
    rows = graph.run(catalog.load("library", "diff_edges"),
                     {"cell_type_a": "A", "dataset_a": "D1", "cell_type_b": "A", "dataset_b": "D2", "limit": 1000})
    by_key = {(r["type"], r["source"], r["target"]): r for r in rows}
    assert by_key[("GENE_TO_FEATURE", "g1", feature_node_id(TH, 0, 1))]["weight_a"] == pytest.approx(0.95)
    assert by_key[("FEATURE_TO_FEATURE", feature_node_id(TH, 0, 1), feature_node_id(TH, 1, 3))]["status"] == "only_b"
    assert dropped.source == "feat:0:1"


def test_feature_stats_annotate_features(graph: Any) -> None:
    stats = {"feat:0:1": {"density": 0.125, "top_genes": ["CD74", "HLA-DRA"]}}
    export_circuits(graph, known_circuits()[:1], feature_stats=stats)
    from circuitdb.queries import run_rows

    rows = {r["feature"]: r for r in run_rows(graph, "top_features", {"cell_type": "A"})}
    assert rows[feature_node_id(TH, 0, 1)]["density"] == 0.125
    assert rows[feature_node_id(TH, 0, 1)]["top_genes"] == ["CD74", "HLA-DRA"]
    assert rows[feature_node_id(TH, 1, 3)]["density"] is None


def _mark_incomplete(runner: Any, circuit: str) -> None:
    from circuitdb.catalog import CypherStatement

    stmt = CypherStatement("admin", "test_incomplete", "MATCH (c:Circuit {id: $id}) SET c.complete = false",
                           "tests", ("id",))
    runner.run(stmt, {"id": circuit})


# -- a killed export process, rerun (real Neo4j) ----------------------------------------------------

@pytest.mark.neo4j
@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("neo4j", marks=pytest.mark.neo4j)], indirect=True)
def test_killed_export_reruns_to_exact_counts(graph: Any, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    circuits = [synthetic_circuit(f"type{i}", n_edges=400, n_features=60, seed=i) for i in range(6)]
    for c in circuits:
        c.save(tmp_path / f"{c.provenance.cell_type}.json")
    env = cli_env_for(settings_of(request, "neo4j"))
    cmd = [sys.executable, "-m", "circuitdb", "--hide-progress", "export", str(tmp_path), "--batch-size", "25"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    expected = expected_totals(circuits)
    total_rels = sum(expected["relationships"].values())
    killed_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rels = sum(graph_totals(graph)["relationships"].values())
        if rels > total_rels // 3:
            proc.send_signal(signal.SIGKILL)
            killed_at = rels
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_at is not None, f"export finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
    partial = graph_totals(graph)
    assert partial != expected  # it really was cut short
    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["totals"] == expected
    assert len(summary["circuits"]["written"]) + len(summary["circuits"]["skipped_unchanged"]) == 6
    # and a clean export gives the same graph
    wipe(graph)
    assert export_circuits(graph, circuits, batch_size=500).totals == summary["totals"]
