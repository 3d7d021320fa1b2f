"""The same backend API, schema, writes and library query on a real Neo4j (NEO4J_URI), agreeing with the embedded default."""

from __future__ import annotations

import json

import pytest

from circuitdb.graph.backend import open_backend
from circuitdb.graph.example import B_CELL, MONOCYTE, circuit_id, example_graph, load_example
from circuitdb.graph.schema import apply_schema, schema_statements
from backend_helpers import cli_env, run_cli

pytestmark = pytest.mark.neo4j


def test_ping_reports_neo4j(neo4j_settings):
    with open_backend(neo4j_settings) as graph:
        info = graph.ping()
    assert info.backend == "neo4j" and info.agent.startswith("Neo4j/") and "ArcadeDB" not in info.agent
    assert info.version.startswith("5.")


def test_db_init_twice_on_neo4j(neo4j_settings, tmp_path):
    env = cli_env(neo4j_settings.with_(embedded_dir=tmp_path))
    assert run_cli(["db", "init"], env).returncode == 0
    second = run_cli(["db", "init", "--json"], env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["created"] == 0
    with open_backend(neo4j_settings) as graph:
        names = [row["name"] for row in graph.run("admin/show_constraints")]
    assert len(names) == len(set(names))
    assert {s.name for s in schema_statements() if s.kind == "constraint"} <= set(names)


def _paths(graph):
    out = {}
    for cell_type, min_weight in ((B_CELL, 0.1), (MONOCYTE, 0.22), (MONOCYTE, 0.0)):
        rows = graph.run("library/example_gene_paths",
                         {"circuit": circuit_id(cell_type), "min_weight": min_weight, "limit": 10})
        out[(cell_type, min_weight)] = [
            (r["gene"], r["features"], r["cell_type"], round(r["score"], 9), r["hops"]) for r in rows]
    return out


@pytest.mark.embedded
def test_example_graph_and_query_agree_with_embedded(neo4j_settings, embedded_settings):
    results = []
    for settings in (neo4j_settings, embedded_settings):
        with open_backend(settings) as graph:
            graph.run("admin/delete_all")
            apply_schema(graph)
            first = load_example(graph, batch_size=3)
            second = load_example(graph, batch_size=5)
            counts = graph.run("admin/count_graph")[0]
            results.append((first.counters["relationships_created"], second.counters["relationships_created"],
                            counts, _paths(graph)))
            graph.run("admin/delete_all")
    neo, arc = results
    ex = example_graph()
    assert neo[0] == ex.n_relationships and neo[1] == 0
    assert neo[2] == {"nodes": ex.n_nodes, "relationships": ex.n_relationships}
    assert neo == arc
    assert len(neo[3][(MONOCYTE, 0.0)]) == 5  # includes the CD14 path through two negative weights


def test_demo_runs_on_neo4j_and_agrees_with_embedded(neo4j_settings, embedded_settings, tmp_path):
    with open_backend(neo4j_settings) as graph:
        graph.run("admin/delete_all")
    env = cli_env(neo4j_settings.with_(embedded_dir=tmp_path / "unused"))
    r = run_cli(["demo", "--json"], env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backend"]["backend"] == "neo4j"
    assert len(out["export"]["circuits"]["written"]) == 10
    assert not (tmp_path / "unused" / "server.json").exists()  # no embedded server was started
    emb = run_cli(["demo", "--json"], cli_env(embedded_settings))
    assert emb.returncode == 0, emb.stderr
    other = json.loads(emb.stdout)
    assert other["backend"]["backend"] == "arcadedb"
    # the same circuits give the same answers on both backends
    assert out["top_features"] == other["top_features"]
    assert out["diff"] == other["diff"]
    d_neo = run_cli(["diff", "--cell-type", "CD19+ B", "--vs", "CD14+ Monocyte", "--json"], env)
    d_emb = run_cli(["diff", "--cell-type", "CD19+ B", "--vs", "CD14+ Monocyte", "--json"], cli_env(embedded_settings))
    assert d_neo.returncode == 0 and d_emb.returncode == 0, d_neo.stderr + d_emb.stderr
    assert json.loads(d_neo.stdout) == json.loads(d_emb.stdout)
    with open_backend(neo4j_settings) as graph:
        graph.run("admin/delete_all")


def test_unknown_database_name_is_input_error(neo4j_settings, tmp_path):
    env = cli_env(neo4j_settings.with_(embedded_dir=tmp_path, neo4j_database="nosuchdb"))
    r = run_cli(["db", "ping"], env)
    assert r.returncode == 2, r.stderr  # a config error, not an outage
    assert "nosuchdb" in r.stderr and len(r.stderr.strip().splitlines()) == 1
