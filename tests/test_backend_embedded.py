"""The embedded ArcadeDB default: ping, schema, MERGE round trips, persistence, reuse across commands."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from circuitdb.errors import InputError
from circuitdb.graph import arcade
from circuitdb.graph.backend import open_backend
from circuitdb.graph.example import B_CELL, MONOCYTE, circuit_id, example_graph, load_example
from circuitdb.graph.schema import apply_schema, schema_statements
from backend_helpers import cli_env, embedded_settings_for, run_cli

pytestmark = pytest.mark.embedded


def test_ping_names_arcadedb_agent_and_version(embedded_settings):
    with open_backend(embedded_settings) as graph:
        info = graph.ping()
    assert info.backend == "arcadedb"
    assert "ArcadeDB" in info.agent and info.version[0].isdigit()
    assert info.uri.startswith("bolt://127.0.0.1:") and info.database == "circuitdb"

    r = run_cli(["db", "ping", "--json"], cli_env(embedded_settings))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backend"] == "arcadedb" and out["uri"] == info.uri  # the CLI reused the running server
    # the --embedded-dir option wins over the environment
    other = cli_env(embedded_settings_for(embedded_settings.embedded_dir / "not-this-one"))
    r2 = run_cli(["--embedded-dir", str(embedded_settings.embedded_dir), "db", "ping", "--json"], other)
    assert r2.returncode == 0 and json.loads(r2.stdout)["uri"] == info.uri, r2.stderr
    assert not (embedded_settings.embedded_dir / "not-this-one").exists()
    password = arcade.credentials(embedded_settings.embedded_dir)[1]
    assert password not in r.stdout + r.stderr
    assert password not in (embedded_settings.embedded_dir / "server.log").read_text()
    assert (embedded_settings.embedded_dir / "credentials.json").stat().st_mode & 0o077 == 0  # owner only


def test_db_init_twice_is_idempotent(embedded_settings):
    env = cli_env(embedded_settings)
    first = run_cli(["db", "init", "--json"], env)
    second = run_cli(["db", "init", "--json"], env)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    names = {s.name for s in schema_statements()}
    again = json.loads(second.stdout)
    assert again["created"] == 0 and {i["name"] for i in again["items"]} == names
    with open_backend(embedded_settings) as graph:
        constraints = [row["name"] for row in graph.run("admin/show_constraints") if row["type"] == "UNIQUENESS"]
        indexes = [row["name"] for row in graph.run("admin/show_indexes")]
    assert len(constraints) == len(set(constraints))  # no duplicates
    wanted = {s.name for s in schema_statements() if s.kind == "constraint"}
    assert wanted <= set(constraints)
    assert "drives_circuit" in indexes


def test_uniqueness_constraint_is_enforced(embedded_graph):
    apply_schema(embedded_graph)
    embedded_graph.write_batches("write/example_genes", [{"symbol": "CD3E"}])
    embedded_graph.write_batches("write/example_genes", [{"symbol": "CD3E"}, {"symbol": "CD3E"}])  # MERGE
    assert embedded_graph.run("admin/count_graph")[0]["nodes"] == 1


def test_merge_round_trip_is_exact_and_idempotent(embedded_graph):
    apply_schema(embedded_graph)
    ex = example_graph()
    first = load_example(embedded_graph, batch_size=2)  # several batches per statement
    assert first.counters["nodes_created"] == ex.n_nodes
    assert first.counters["relationships_created"] == ex.n_relationships
    second = load_example(embedded_graph, batch_size=4)
    assert second.counters["nodes_created"] == 0 and second.counters["relationships_created"] == 0
    assert embedded_graph.run("admin/count_graph") == [{"nodes": ex.n_nodes, "relationships": ex.n_relationships}]

    rows = embedded_graph.run("library/example_gene_paths",
                              {"circuit": circuit_id(B_CELL), "min_weight": 0.1, "limit": 10})
    got = [(r["gene"], r["features"], r["cell_type"], round(r["score"], 6), r["hops"]) for r in rows]
    # hand-computed: products of the edge weights in circuitdb/graph/example.py
    assert got == [
        ("CD79A", ["example/L0/F3", "example/L1/F2"], B_CELL, round(0.82 * 0.9 * 0.95, 6), 3),
        ("MS4A1", ["example/L0/F3", "example/L1/F2"], B_CELL, round(0.61 * 0.9 * 0.95, 6), 3),
        ("CD19", ["example/L0/F7", "example/L1/F2"], B_CELL, round(0.34 * 0.45 * 0.95, 6), 3),
    ]
    rows = embedded_graph.run("library/example_gene_paths",
                              {"circuit": circuit_id(MONOCYTE), "min_weight": 0.22, "limit": 3})
    got = [(r["gene"], r["features"], round(r["score"], 6)) for r in rows]
    assert got == [  # CD14 (|w| 0.21) is below the threshold; direct L0/F7 -> cell type paths count (hops 2)
        ("LYZ", ["example/L0/F7", "example/L1/F5"], round(0.77 * 0.85 * 0.88, 6)),
        ("S100A8", ["example/L0/F7", "example/L1/F5"], round(0.58 * 0.85 * 0.88, 6)),
        ("LYZ", ["example/L0/F7"], round(0.77 * 0.25, 6)),
    ]


def test_hostile_values_are_only_data(embedded_graph):
    hostile = ["`}) DETACH DELETE n //", "x' OR 1=1 --", 'quote"s', "é漢字\u200b", "$rows"]
    embedded_graph.write_batches("write/example_genes", [{"symbol": "CD3E"}] + [{"symbol": h} for h in hostile])
    embedded_graph.write_batches("write/example_genes", [{"symbol": h} for h in hostile])
    assert embedded_graph.run("admin/count_graph")[0]["nodes"] == 1 + len(hostile)


def test_missing_parameter_and_rowless_statement_are_input_errors(embedded_graph):
    with pytest.raises(InputError, match=r"\$min_weight"):
        embedded_graph.run("library/example_gene_paths", {"circuit": "c", "limit": 1})
    with pytest.raises(InputError, match=r"\$rows"):
        embedded_graph.write_batches("library/example_gene_paths", [{}])
    with pytest.raises(InputError, match="no cypher statement"):
        embedded_graph.run("library/no_such_query")


def test_numpy_values_are_sent_as_plain_numbers(embedded_graph):
    np = pytest.importorskip("numpy")
    rows = [{"id": "np/L0/F1", "layer": np.int64(0), "index": np.int32(1), "transcoder_set": "np"}]
    embedded_graph.write_batches("write/example_features", rows)
    embedded_graph.write_batches("write/example_features", rows)
    assert embedded_graph.run("admin/count_graph")[0]["nodes"] == 1


@pytest.mark.slow
def test_data_persists_across_server_restart_and_crash(tmp_path):
    settings = embedded_settings_for(tmp_path / "persist")
    try:
        with open_backend(settings) as graph:
            apply_schema(graph)
            load_example(graph)
        first = arcade.read_state(settings.embedded_dir)
        assert first is not None
        assert arcade.stop_server(settings.embedded_dir) is not None
        assert arcade.read_state(settings.embedded_dir) is None
        assert not (settings.embedded_dir / "server.json").exists()

        with open_backend(settings) as graph:  # a fresh child process on the same data
            assert graph.run("admin/count_graph")[0]["relationships"] == example_graph().n_relationships
        second = arcade.read_state(settings.embedded_dir)
        assert second is not None and second.pid != first.pid

        os.kill(second.pid, signal.SIGKILL)  # crash: stale state file left behind
        deadline = time.monotonic() + 10
        while arcade.read_state(settings.embedded_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        # and lost credentials (the fix the corrupt-credentials error suggests): new password, same data
        (settings.embedded_dir / "credentials.json").unlink()
        with open_backend(settings) as graph:
            assert graph.run("admin/count_graph")[0]["nodes"] == example_graph().n_nodes
            info = graph.ping()
        assert info.backend == "arcadedb"

        # lost while a server runs: that server is replaced, not left with a password nobody knows
        third = arcade.read_state(settings.embedded_dir)
        (settings.embedded_dir / "credentials.json").unlink()
        with open_backend(settings) as graph:
            assert graph.run("admin/count_graph")[0]["nodes"] == example_graph().n_nodes
        fourth = arcade.read_state(settings.embedded_dir)
        assert third is not None and fourth is not None and fourth.pid != third.pid
    finally:
        arcade.stop_server(settings.embedded_dir)
    assert arcade.read_state(settings.embedded_dir) is None


def test_demo_runs_twice_and_second_run_sees_first_graph(embedded_settings):
    env = cli_env(embedded_settings)
    with open_backend(embedded_settings) as graph:
        graph.run("admin/delete_all")
    first = run_cli(["demo", "--json"], env)
    assert first.returncode == 0, first.stderr
    second = run_cli(["demo", "--json"], env)
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    # the 10 shipped demo circuits: written once, then found unchanged
    assert len(a["export"]["circuits"]["written"]) == 10
    assert b["export"]["circuits"]["written"] == [] and len(b["export"]["circuits"]["skipped_unchanged"]) == 10
    assert a["export"]["graph"] == b["export"]["graph"] and a["export"]["graph"]["relationships"] > 0
    rows = b["top_features"]["rows"]
    assert rows and all(r["circuit"].split("|")[3] == "CD19+ B" for r in rows)
    influences = [abs(r["influence"]) for r in rows]
    assert influences == sorted(influences, reverse=True)
    assert a["diff"] == b["diff"] and sum(b["diff"]["counts"].values()) > 0
    table = run_cli(["demo"], env)
    assert table.returncode == 0 and "top features of the CD19+ B circuit" in table.stderr


@pytest.mark.slow
def test_idle_server_stops_itself_but_not_while_a_client_is_connected(tmp_path):
    settings = embedded_settings_for(tmp_path / "idle")
    try:
        server = arcade.ensure_server(settings.embedded_dir, heap=settings.embedded_heap, idle_s=1.5, poll_s=0.3)
        with open_backend(settings) as graph:
            time.sleep(3.0)  # longer than the idle timeout, but a connection is open
            assert graph.run("admin/ping") == [{"ok": 1}]
        deadline = time.monotonic() + 30
        while arcade.read_state(settings.embedded_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert arcade.read_state(settings.embedded_dir) is None
        assert not (settings.embedded_dir / "server.json").exists()
        assert "idle for" in (settings.embedded_dir / "server.log").read_text()
        assert server.pid > 0
    finally:
        arcade.stop_server(settings.embedded_dir)


def test_status_and_down_helpers(tmp_path):
    from circuitdb.cli.db import down_embedded, embedded_status

    settings = embedded_settings_for(tmp_path / "none")
    assert embedded_status(settings)["running"] is False
    assert down_embedded(settings).startswith("no embedded graph server running")
