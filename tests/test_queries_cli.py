"""The query CLIs (query, queries list, diff, subgraph, export) end to end on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from graphfix import backend, cli_env_for, graph, settings_of  # noqa: F401 - fixtures
from known_graph import fid, known_circuits


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "circuitdb", "--hide-progress", *args], capture_output=True,
                          text=True, env=env, timeout=180)


def test_queries_list_names_parameters_and_descriptions() -> None:
    r = cli(["queries", "list", "--json"])
    assert r.returncode == 0, r.stderr
    listed = {q["name"]: q for q in json.loads(r.stdout)}
    assert {"top_features", "gene_paths", "top_heads", "neighbourhood", "shared_features", "diff_cell_types",
            "diff_datasets", "gene_influence_change"} <= set(listed)
    params = {p["name"]: p for p in listed["gene_paths"]["params"]}
    assert params["cell_type"]["required"] and params["min_weight"]["default"] == 0.1
    assert listed["gene_paths"]["description"]


def test_query_cli_rejects_bad_parameters_before_connecting() -> None:
    for args, needle in ((["query", "nope"], "no query named 'nope'"),
                         (["query", "top_features"], "needs parameter 'cell_type'"),
                         (["query", "top_features", "--param", "cell_type=A", "--param", "limit=0"], "at least 1"),
                         (["query", "top_features", "--param", "cell_type"], "not key=value")):
        r = cli(args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


@pytest.mark.slow
def test_cli_end_to_end(graph: Any, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = cli_env_for(settings_of(request, graph.kind))
    for c in known_circuits():
        c.save(tmp_path / "circuits" / f"{c.provenance.dataset}-{c.provenance.cell_type}.json")
    r = cli(["export", str(tmp_path / "circuits"), "--batch-size", "4", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["circuits"]["written"]) == 3

    r = cli(["query", "top_features", "--param", "cell_type=A", "--param", "dataset=D1", "--param", "limit=2",
             "--json"], env)
    assert r.returncode == 0, r.stderr
    assert [row["feature"] for row in json.loads(r.stdout)] == [fid(0, 1), fid(1, 3)]

    r = cli(["diff", "--cell-type", "A", "--vs", "B", "--json"], env)  # D1 is the one dataset with both
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["counts"] == {"only_a": 5, "only_b": 3, "both": 2}
    both = {(e["source"], e["target"]): e for e in d["both"]}
    g1 = both[("g1", fid(0, 1))]
    assert (g1["weight_a"], g1["weight_b"]) == (0.9, 0.5) and g1["delta"] == pytest.approx(-0.4)
    assert set(d["only_a"][0]) == {"type", "source", "target", "weight_a", "weight_b", "delta"}
    assert d["only_a"][0]["weight_b"] is None

    r = cli(["diff", "--cell-type", "A", "--dataset", "D1", "--vs-dataset", "D2", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"] == {"only_a": 4, "only_b": 1, "both": 3}
    r = cli(["diff", "--cell-type", "A", "--dataset", "D1", "--vs-dataset", "D2"], env)
    assert r.returncode == 0 and "4 only in A" in r.stderr

    r = cli(["diff", "--cell-type", "A", "--vs", "Nope", "--dataset", "D1"], env)
    assert r.returncode == 2 and "no circuit for cell type 'Nope'" in r.stderr

    out = tmp_path / "sub.graphml"
    r = cli(["subgraph", fid(1, 3), "--hops", "2", "--circuit", known_circuits()[0].id, "--out", str(out)], env)
    assert r.returncode == 0, r.stderr
    g = nx.read_graphml(out)
    assert g.number_of_edges() == 7 and g.nodes["A"]["label"] == "CellType"
    out = tmp_path / "sub.json"
    r = cli(["subgraph", fid(1, 3), "--hops", "1", "--out", str(out)], env)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(out.read_text())["edges"]) == 6
    r = cli(["subgraph", "no-such-feature", "--out", str(tmp_path / "x.json")], env)
    assert r.returncode == 2 and "no feature" in r.stderr and not (tmp_path / "x.json").exists()
