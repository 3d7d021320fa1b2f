"""Export rate (relationships/s) of the batched UNWIND writer vs a naive one-row-per-transaction MERGE,
in the same run, into Neo4j (NEO4J_URI, e.g. from 'circuitdb db up --local') and the embedded default.

Goal (issue 7): >= 50,000 rel/s into the local Neo4j and >= 50x the naive baseline.

The exporter CREATEs a circuit's relationships (after purging a partly written circuit) in
columnar batches shared by several circuits, with two transactions in flight on Neo4j. The naive baseline is what a first attempt looks like: one
transaction per relationship, MERGEd between its two end nodes on a per-circuit key (the
exporter's earlier statement, which avoids the quadratic MERGE-on-indexed-property plan).
Before timing, two warm-up exports of 4 circuits (wiped again) let the server compile the statements and
the JVM warm up, so the numbers are steady-state rates, not first-query compile time.

    python benchmarks/bench_export.py [--circuits 20] [--edges 5000] [--baseline-rows 2000] [--backend neo4j|embedded|both]
"""

from __future__ import annotations

import argparse
import os
import time

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.config import Settings
from circuitdb.graph.backend import open_backend
from circuitdb.graph.rows import NODE_STATEMENTS, circuit_rows, merge_key, merge_node_rows
from circuitdb.graph.synthetic import synthetic_circuit
from circuitdb.graph.writer import default_workers, export_circuits

WIPES = (
    CypherStatement("admin", "bench_wipe_rels", "MATCH ()-[r]->() WITH r LIMIT 50000 DELETE r RETURN count(*) AS n",
                    "bench: delete up to 50,000 relationships", ()),
    CypherStatement("admin", "bench_wipe", "MATCH (n) WITH n LIMIT 50000 DETACH DELETE n RETURN count(*) AS n",
                    "bench: delete up to 50,000 nodes", ()),
)


#: The naive baseline's statements: MERGE one relationship between its end nodes per transaction.
NAIVE = {
    "gene_to_feature": CypherStatement(
        "bench", "naive_gene_to_feature",
        "MATCH (s:Gene {symbol: $source}) MATCH (t:Feature {id: $target}) "
        "MERGE (s)-[e:GENE_TO_FEATURE {mkey: $mkey}]->(t) "
        "SET e.circuit = $circuit, e.weight = $weight, e.frequency = $frequency",
        "bench: naive MERGE of one gene -> feature edge", ("source", "target", "mkey", "circuit", "weight", "frequency")),
    "feature_to_feature": CypherStatement(
        "bench", "naive_feature_to_feature",
        "MATCH (s:Feature {id: $source}) MATCH (t:Feature {id: $target}) "
        "MERGE (s)-[e:FEATURE_TO_FEATURE {mkey: $mkey}]->(t) "
        "SET e.circuit = $circuit, e.weight = $weight, e.frequency = $frequency",
        "bench: naive MERGE of one feature -> feature edge", ("source", "target", "mkey", "circuit", "weight", "frequency")),
    "feature_to_cell_type": CypherStatement(
        "bench", "naive_feature_to_cell_type",
        "MATCH (s:Feature {id: $source}) MATCH (t:CellType {name: $target}) "
        "MERGE (s)-[e:FEATURE_TO_CELL_TYPE {mkey: $mkey}]->(t) "
        "SET e.circuit = $circuit, e.weight = $weight, e.frequency = $frequency",
        "bench: naive MERGE of one feature -> cell type edge", ("source", "target", "mkey", "circuit", "weight", "frequency")),
}


def wipe(graph) -> None:  # type: ignore[no-untyped-def]
    for stmt in WIPES:
        while graph.run(stmt, {})[0]["n"]:
            pass


def apply_schema(graph) -> None:  # type: ignore[no-untyped-def]
    for name in catalog.names("schema"):
        graph.run(catalog.load("schema", name), {})


def make_circuits(n_circuits: int, n_edges: int, prefix: str = "type", seed0: int = 0) -> list:  # type: ignore[type-arg]
    return [synthetic_circuit(f"{prefix}{i}", n_edges=n_edges, n_features=max(60, n_edges // 25), n_genes=40,
                              n_heads=1, feature_pool=4000, gene_pool=700, seed=seed0 + i) for i in range(n_circuits)]


def naive_rows(graph, n: int) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def, type-arg]
    """Fresh edge rows of one more circuit, its nodes and Circuit node written, for the naive baseline."""
    extra = make_circuits(1, n, prefix="baseline", seed0=999)[0]
    rows = circuit_rows(extra)
    nodes = merge_node_rows([rows])
    for name in NODE_STATEMENTS:
        if nodes[name]:
            graph.run(catalog.load("write", name), {"rows": nodes[name]})
    graph.run(catalog.load("write", "circuit"), {"rows": [rows.circuit]})
    key = merge_key(rows.circuit_id)
    return [(name, {**r, "mkey": key}) for name in NAIVE for r in rows.edges[name]][:n]


def bench(kind: str, n_circuits: int, n_edges: int, baseline_rows: int, batch_size: int,
          workers: int | None) -> None:
    settings = Settings.from_env() if kind == "neo4j" else Settings.from_env().with_(neo4j_uri=None)
    circuits = make_circuits(n_circuits, n_edges)
    with open_backend(settings) as graph:
        apply_schema(graph)
        wipe(graph)
        workers = default_workers(graph) if workers is None else workers
        # warm-up (not timed): compile the write statements, warm the JVM, then start from an empty graph
        for _ in range(2):
            export_circuits(graph, make_circuits(4, n_edges, prefix="warmup", seed0=500), batch_size=batch_size,
                            workers=workers)
            for name, row in naive_rows(graph, 100):
                graph.run(NAIVE[name], row)
            wipe(graph)
        t0 = time.perf_counter()
        summary = export_circuits(graph, circuits, batch_size=batch_size, workers=workers)
        dt = time.perf_counter() - t0
        rels = summary.relationships_written
        fast = rels / dt
        edge_rows = naive_rows(graph, baseline_rows)
        t0 = time.perf_counter()
        for name, row in edge_rows:
            graph.run(NAIVE[name], row)
        naive = len(edge_rows) / (time.perf_counter() - t0)
        print(f"[{kind}] {graph.uri}: batched export {rels:,} relationships of {n_circuits} circuits in {dt:.1f} s "
              f"= {fast:,.0f} rel/s (batch {batch_size}, {workers} writer(s)); naive one-row-per-transaction MERGE "
              f"{len(edge_rows):,} rows = {naive:,.0f} rel/s; ratio {fast / naive:.1f}x "
              f"(goal >= 50,000 rel/s and >= 50x); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        wipe(graph)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--circuits", type=int, default=20)
    ap.add_argument("--edges", type=int, default=5000)
    ap.add_argument("--baseline-rows", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=5000, help="rows per transaction (default: the CLI default)")
    ap.add_argument("--workers", type=int, default=None, help="concurrent writers (default: 2 on Neo4j, 1 embedded)")
    ap.add_argument("--backend", choices=("neo4j", "embedded", "both"), default="both")
    a = ap.parse_args()
    kinds = ["neo4j", "embedded"] if a.backend == "both" else [a.backend]
    if "neo4j" in kinds and not os.environ.get("NEO4J_URI"):
        raise SystemExit("set NEO4J_URI (start one with 'circuitdb db up --local')")
    for kind in kinds:
        bench(kind, a.circuits, a.edges, a.baseline_rows, a.batch_size, a.workers)


if __name__ == "__main__":
    main()
