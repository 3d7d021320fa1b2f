"""Hostile cell type and gene names go in and come out as plain values; the graph is unharmed.
Labels and relationship types come only from an allow-list; credentials never reach output."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from circuitdb import catalog
from circuitdb.errors import InputError
from circuitdb.graph.rows import NODE_LABELS, REL_TYPES, check_label, check_rel_type
from circuitdb.graph.writer import export_circuits, graph_totals
from circuitdb.queries import REGISTRY, circuit_diff, run_rows
from graphfix import backend, graph  # noqa: F401 - fixtures
from known_graph import known_circuits

HOSTILE_A = "A'}) DETACH DELETE n //"
HOSTILE_B = 'B" `x` }) MATCH (m) DETACH DELETE m RETURN 1 //'
HOSTILE_G1 = "g1`) DETACH DELETE n WITH 1 AS x MATCH (y) //"
HOSTILE_G2 = "Ωμέγα-基因-🧬 $param {rows}"
HOSTILE_G3 = "g3\\'; DROP CONSTRAINT gene_symbol; //"


def test_hostile_names_are_stored_and_queried_as_values(graph: Any) -> None:
    circuits = known_circuits(a=HOSTILE_A, b=HOSTILE_B, g1=HOSTILE_G1, g2=HOSTILE_G2, g3=HOSTILE_G3)
    summary = export_circuits(graph, circuits)
    plain = known_circuits()
    assert summary.totals["nodes"]["Gene"] == 3 and summary.totals["nodes"]["CellType"] == 2
    cell_types = {r["cell_type"] for r in run_rows(graph, "circuits", {})}
    assert cell_types == {HOSTILE_A, HOSTILE_B}
    rows = run_rows(graph, "gene_paths", {"cell_type": HOSTILE_A, "dataset": "D1", "min_weight": 0.3})
    assert [r["gene"] for r in rows] == [HOSTILE_G1, HOSTILE_G2]
    assert rows[0]["nodes"][-1] == HOSTILE_A
    diff = circuit_diff(graph, HOSTILE_A, HOSTILE_B, dataset_a="D1")
    assert diff.counts() == {"only_a": 5, "only_b": 3, "both": 2}
    assert HOSTILE_G3 in set(diff.edges["source"])
    change = run_rows(graph, "gene_influence_change", {"cell_type": HOSTILE_A, "dataset_a": "D1", "dataset_b": "D2"})
    assert [r["gene"] for r in change] == [HOSTILE_G1, HOSTILE_G2]
    # nothing was deleted or dropped: same counts as the plain graph, constraints still there
    totals = graph_totals(graph)
    from graphfix import wipe

    wipe(graph)
    assert export_circuits(graph, plain).totals == totals
    names = {r["name"] for r in graph.run(catalog.load("admin", "show_constraints"), {})}
    assert "gene_symbol" in names


def test_only_allow_listed_labels_and_types_appear_in_shipped_cypher() -> None:
    label_re = re.compile(r"\(\s*[A-Za-z_0-9]*\s*:\s*([A-Za-z_]+)")
    type_re = re.compile(r"\[\s*[A-Za-z_0-9]*\s*:\s*([A-Z_|]+)")
    for section in ("write", "library", "schema"):
        for name in catalog.names(section):
            body = "\n".join(line for line in catalog.load(section, name).text.splitlines()
                             if not line.strip().startswith("//"))
            for label in label_re.findall(body):
                assert label in NODE_LABELS, f"{section}/{name} uses label {label}"
            for types in type_re.findall(body):
                for t in types.split("|"):
                    assert t in REL_TYPES, f"{section}/{name} uses relationship type {t}"
    assert check_label("Gene") == "Gene" and check_rel_type("HEAD_CARRIES") == "HEAD_CARRIES"
    with pytest.raises(InputError):
        check_label("Gene) DETACH DELETE (n")
    with pytest.raises(InputError):
        check_rel_type("X]->() DELETE r //")


def test_query_parameters_are_validated_before_any_cypher() -> None:
    q = REGISTRY["neighbourhood"]
    with pytest.raises(InputError, match="one of 1, 2, 3"):
        q.compile({"feature": "f", "hops": "4"})
    with pytest.raises(InputError, match="no parameter 'label'"):
        REGISTRY["top_features"].compile({"cell_type": "A", "label": "Gene"})
    stmt, params = REGISTRY["top_features"].compile({"cell_type": HOSTILE_A})
    assert HOSTILE_A not in stmt.text and params["cell_type"] == HOSTILE_A


def test_password_never_in_output() -> None:
    secret = "s3cr3t-Pa55word"
    env = {"NEO4J_URI": "bolt://127.0.0.1:1", "NEO4J_USERNAME": "neo4j", "NEO4J_PASSWORD": secret, "PATH": "/usr/bin"}
    for args in (["query", "graph_counts"], ["diff", "--cell-type", "A", "--vs", "B"], ["queries", "list"]):
        r = subprocess.run([sys.executable, "-m", "circuitdb", *args], capture_output=True, text=True, env=env,
                           timeout=60)
        assert secret not in r.stdout + r.stderr
        if args[0] != "queries":
            assert r.returncode == 3 and "127.0.0.1:1" in r.stderr
