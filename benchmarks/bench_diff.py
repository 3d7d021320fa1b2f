"""Circuit diff latency on a synthetic graph of ~1M relationships (100 circuits) in Neo4j (NEO4J_URI).

Goal (issue 7): median latency of the diff (edges + features) under 300 ms. Baseline in the same run:
the client-side diff (fetch both circuits' edges with library/circuit_edges, diff them in pandas).
The graph is built with the exporter; a rerun reuses it (complete circuits are skipped). One untimed
diff of a pair outside the timed ones runs first, so the server has compiled the statements (its plan
cache keeps them for every later client) and the timings are steady-state latencies.

    python benchmarks/bench_diff.py [--circuits 100] [--edges 8000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import pandas as pd

from circuitdb import catalog
from circuitdb.config import Settings
from circuitdb.graph.backend import open_backend
from circuitdb.graph.synthetic import synthetic_circuit
from circuitdb.graph.writer import export_circuits, graph_totals
from circuitdb.queries import circuit_diff, run_rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--circuits", type=int, default=100)
    ap.add_argument("--edges", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=10000)
    ap.add_argument("--embedded", action="store_true", help="Measure the embedded default instead of NEO4J_URI.")
    a = ap.parse_args()
    settings = Settings.from_env()
    if a.embedded:
        settings = settings.with_(neo4j_uri=None)
    elif not os.environ.get("NEO4J_URI"):
        raise SystemExit("set NEO4J_URI (start one with 'circuitdb db up --local')")
    types = [f"type{i:03d}" for i in range(a.circuits)]
    with open_backend(settings) as graph:
        for name in catalog.names("schema"):
            graph.run(catalog.load("schema", name), {})
        t0 = time.perf_counter()
        written = 0
        for start in range(0, len(types), 10):  # build in chunks to bound memory
            chunk = [synthetic_circuit(t, n_edges=a.edges, n_features=max(60, a.edges // 25), n_genes=40, n_heads=1,
                                       feature_pool=4000, gene_pool=700, seed=i)
                     for i, t in enumerate(types[start:start + 10], start)]
            written += export_circuits(graph, chunk, batch_size=a.batch_size).relationships_written
        build = time.perf_counter() - t0
        totals = graph_totals(graph)
        n_rels = sum(totals["relationships"].values())
        print(f"graph: {n_rels:,} relationships, {totals['nodes'].get('Circuit', 0)} circuits "
              f"(built now: {written:,} rel in {build:.0f} s)")
        rng = random.Random(0)
        pairs = [tuple(rng.sample(types, 2)) for _ in range(a.repeats)]
        warm = next((x, y) for x in types for y in types if x != y and (x, y) not in pairs)
        circuit_diff(graph, *warm, limit=50)  # warm-up (not timed): statement compilation
        circuit_diff(graph, *warm)
        run_rows(graph, "circuit_edges", {"circuit": "warm-up"})
        diff_ms, full_ms, base_ms = [], [], []
        for ta, tb in pairs:
            t0 = time.perf_counter()
            top = circuit_diff(graph, ta, tb, limit=50)  # what 'circuitdb diff' shows: counts + top changes
            diff_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            full = circuit_diff(graph, ta, tb)  # what 'circuitdb diff --json' emits: every row
            full_ms.append((time.perf_counter() - t0) * 1000)
            assert top.counts() == full.counts()
            e = full.edges
            t0 = time.perf_counter()
            ids = {r["cell_type"]: r["id"] for r in run_rows(graph, "circuits", {}) if r["cell_type"] in (ta, tb)}
            ea = pd.DataFrame(run_rows(graph, "circuit_edges", {"circuit": ids[ta]}))
            eb = pd.DataFrame(run_rows(graph, "circuit_edges", {"circuit": ids[tb]}))
            for df in (ea, eb):
                df.loc[df["type"].str.endswith("CELL_TYPE"), "target"] = "target"
            m = ea.merge(eb, on=["type", "source", "target"], how="outer", suffixes=("_a", "_b"))
            m["delta"] = m["weight_b"].fillna(0) - m["weight_a"].fillna(0)
            base_ms.append((time.perf_counter() - t0) * 1000)
            assert len(m) == len(e), (len(m), len(e))
        ping_ms = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            graph.run("admin/ping")
            ping_ms.append((time.perf_counter() - t0) * 1000)
        md, mb = statistics.median(diff_ms), statistics.median(base_ms)
        print(f"context: median round trip of 'RETURN 1' {statistics.median(ping_ms):.1f} ms; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        mf = statistics.median(full_ms)
        print(f"[{graph.backend}] diff (counts + top 50 edge changes + feature diff) median {md:.0f} ms over "
              f"{a.repeats} pairs (min {min(diff_ms):.0f}, max {max(diff_ms):.0f}); full diff with all "
              f"{len(e):,} edge rows to the client median {mf:.0f} ms; client-side baseline (fetch both circuits, "
              f"pandas merge) median {mb:.0f} ms; baseline/diff {mb / md:.1f}x; goal < 300 ms: "
              f"{'met' if md < 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
