"""circuitdb demo --second-dataset: both datasets in one graph, one cross-dataset diff; the plain demo stays pinned."""

from __future__ import annotations

import json

import pytest

from backend_helpers import cli_env, run_cli
from circuitdb.graph.backend import open_backend

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_demo_second_dataset_then_plain_demo_and_diff_by_name(embedded_settings):
    env = cli_env(embedded_settings)
    with open_backend(embedded_settings) as graph:
        graph.run("admin/delete_all")
    r = run_cli(["demo", "--second-dataset", "--json"], env, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    sd = out["second_dataset"]
    assert sd["dataset"].startswith("celltypist_pbmc_sample-") and sd["written"] == 9
    assert sd["cell_type"] == "CD14+ Monocyte" and sum(sd["counts"].values()) > 0 and sd["features"]["both"] > 0
    deltas = [abs(g["delta"]) for g in sd["genes"]]
    assert deltas and deltas == sorted(deltas, reverse=True)
    # the graph now holds two datasets: the plain demo is pinned to its own and answers as before
    plain = run_cli(["demo", "--json"], env, timeout=600)
    assert plain.returncode == 0, plain.stderr
    again = json.loads(plain.stdout)
    assert again["diff"] == out["diff"] and again["top_features"] == out["top_features"]
    assert again["top_features"]["params"]["dataset"] == out["export"]["circuits"]["written"][0].split("|")[2]
    # an unpinned two-type diff is now ambiguous (one line, exit 2); a dataset name resolves it
    amb = run_cli(["diff", "--cell-type", "CD19+ B", "--vs", "CD14+ Monocyte", "--json"], env)
    assert amb.returncode == 2 and "pass --dataset" in amb.stderr
    named = run_cli(["diff", "--cell-type", "CD14+ Monocyte", "--dataset", "pbmc68k_reduced",
                     "--vs-dataset", "celltypist_pbmc_sample", "--json"], env)
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["counts"] == sd["counts"]
    with open_backend(embedded_settings) as graph:
        graph.run("admin/delete_all")
