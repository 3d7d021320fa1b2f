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
from circuitdb.graph.writer import export_circuits, find_circuit_files, graph_totals
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
