"""Gene regulatory networks in the graph: import, and links between circuits and GRNs.

Import writes ``(:Gene)-[:REGULATES {grn, weight, sign, resource}]->(:Gene)`` plus one
``(:GRN {name, ...})`` provenance node, in ``UNWIND $rows`` batches that ``MERGE`` on
(TF, target, GRN name), so importing the same file twice leaves the same counts. Gene
symbols are written upper-case, as cell sentences write them (so they meet the genes
of exported circuits). Like circuits, a GRN node is marked ``complete`` only after its
last batch; re-importing changed content under the same name first deletes the old
``REGULATES`` rows of that name.

Linking (:func:`link_circuit`) runs the library queries ``grn_pairs_in_circuit`` and
``grn_regulated_paths`` and computes the GRN-agreement score of
:mod:`circuitdb.interpret.grn_agreement` from the circuit's gene -> feature edges.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.errors import InputError
from circuitdb.interpret.grn_agreement import Agreement, grn_agreement, linked_gene_pairs
from circuitdb.loaders.grn import GRN, GeneMatch

ProgressFn = Callable[[int, int, str], None]


class Runner(Protocol):
    def run(self, statement: CypherStatement, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass
class GRNImportSummary:
    """What :func:`import_grn` wrote. ``rows`` counts rows sent per write statement."""

    name: str
    n_edges: int
    n_genes: int
    n_tfs: int
    match_rate: float | None
    dataset_coverage: float | None
    dropped: dict[str, int]
    replaced: bool
    skipped_unchanged: bool
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def grn_content_hash(edges_rows: list[dict[str, Any]]) -> str:
    """A hash of the edge rows a GRN import writes (changes when the table changes)."""
    return hashlib.sha256(json.dumps(edges_rows, sort_keys=True).encode()).hexdigest()


def write_checked(runner: Runner, name: str, rows: list[dict[str, Any]], batch_size: int, counts: dict[str, int],
                  total: int, on_progress: ProgressFn | None) -> None:
    """Run ``cypher/write/{name}`` over ``rows`` in UNWIND batches; every row must match (``n`` = batch size)."""
    stmt = catalog.load("write", name)
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size]
        res = runner.run(stmt, {"rows": batch})
        n = int(res[0]["n"]) if res else 0
        if n != len(batch):
            raise InputError(f"write/{name}: {len(batch) - n} of {len(batch)} rows found no end node; rerun the import")
        counts[name] = counts.get(name, 0) + len(batch)
        if on_progress is not None:
            on_progress(len(batch), total, name)


def import_grn(
    runner: Runner,
    grn: GRN,
    *,
    source: str,
    match: GeneMatch | None = None,
    dataset: str | None = None,
    only_matched: bool = False,
    batch_size: int = 5000,
    on_progress: ProgressFn | None = None,
    purge_batch: int = 10000,
) -> GRNImportSummary:
    """Write a GRN into the graph (schema applied beforehand).

    Parameters
    ----------
    runner
        An open backend (``run(statement, params) -> rows``).
    grn
        The network (:func:`circuitdb.loaders.grn.read_grn`).
    source
        Where it came from (file path), stored on the GRN node.
    match
        Its match against a dataset's genes (:func:`~circuitdb.loaders.grn.match_genes`); the
        rate is stored on the GRN node.
    dataset
        The dataset the match was computed on (stored).
    only_matched
        Write only the edges whose two genes are in the dataset (needs ``match``).
    batch_size
        Rows per ``UNWIND`` transaction.
    on_progress
        ``(rows_just_written, rows_total, status)`` after each batch.

    Returns
    -------
    GRNImportSummary
    """
    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be at least 1; pass --batch-size 5000")
    if only_matched and match is None:
        raise InputError("--only-matched needs --data (the dataset whose genes to keep)")
    from circuitdb.graph.rows import merge_key

    edges = match.edges if only_matched and match is not None else grn.edges
    mkey = merge_key("grn", grn.name)
    edge_rows = [
        {"grn": grn.name, "mkey": mkey, "source": str(s), "target": str(t), "weight": float(w), "sign": int(sg),
         "resource": str(r)}
        for s, t, w, sg, r in edges[["source", "target", "weight", "sign", "resource"]].itertuples(index=False)
    ]
    genes = sorted({r["source"] for r in edge_rows} | {r["target"] for r in edge_rows})
    chash = grn_content_hash(edge_rows)
    summary = GRNImportSummary(
        name=grn.name, n_edges=len(edge_rows), n_genes=len(genes), n_tfs=len({r["source"] for r in edge_rows}),
        match_rate=None if match is None else float(match.match_rate),
        dataset_coverage=None if match is None else float(match.dataset_coverage),
        dropped=dict(grn.dropped), replaced=False, skipped_unchanged=False,
    )
    status = runner.run(catalog.load("write", "grn_status"), {"name": grn.name})
    if status and status[0].get("content_hash") == chash and status[0].get("complete"):
        summary.skipped_unchanged = True
    if status and status[0].get("content_hash") != chash:
        purge = catalog.load("write", "purge_grn_edges")
        while True:
            res = runner.run(purge, {"grn": grn.name, "limit": purge_batch})
            if not res or int(res[0]["n"]) == 0:
                break
        summary.replaced = True
    grn_row = {
        "name": grn.name, "source": source, "format": grn.format, "content_hash": chash, "n_edges": len(edge_rows),
        "n_edges_file": int(len(grn.edges)), "n_tfs": summary.n_tfs, "n_genes": len(genes),
        "dropped": json.dumps(grn.dropped, sort_keys=True), "match_rate": summary.match_rate,
        "dataset_coverage": summary.dataset_coverage, "dataset": dataset,
        "imported": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if summary.skipped_unchanged:
        # same edges already complete: refresh provenance (match rate may differ), touch nothing else
        runner.run(catalog.load("write", "grn"), {"rows": [grn_row]})
        runner.run(catalog.load("write", "grn_complete"), {"name": grn.name})
        return summary
    total = 1 + len(genes) + len(edge_rows)
    counts: dict[str, int] = {}
    write_checked(runner, "grn", [grn_row], 1, counts, total, on_progress)
    write_checked(runner, "gene", [{"symbol": g} for g in genes], batch_size, counts, total, on_progress)
    write_checked(runner, "regulates", edge_rows, batch_size, counts, total, on_progress)
    runner.run(catalog.load("write", "grn_complete"), {"name": grn.name})
    summary.rows = counts
    return summary


@dataclass
class CircuitLink:
    """A circuit's links to a GRN: TF -> target pairs inside it, regulated paths and the agreement score."""

    cell_type: str
    circuits: list[str]
    pairs: list[dict[str, Any]]
    paths: list[dict[str, Any]]
    agreement: Agreement | None
    n_linked_pairs: int
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        ag = None if self.agreement is None else asdict(self.agreement)
        return {"cell_type": self.cell_type, "circuits": self.circuits, "pairs": self.pairs, "paths": self.paths,
                "agreement": ag, "n_linked_pairs": self.n_linked_pairs, "note": self.note}


def link_circuit(
    runner: Runner,
    cell_type: str,
    *,
    dataset: str | None = None,
    grn: str | None = None,
    expression: Mapping[str, float] | None = None,
    min_weight: float = 0.0,
    limit: int = 100,
    n_permutations: int = 1000,
    seed: int = 0,
) -> CircuitLink:
    """TF -> target pairs in a cell type's circuit, GRN-regulated circuit paths and the GRN-agreement score.

    Parameters
    ----------
    runner
        An open backend.
    cell_type, dataset
        Which circuit (dataset ``None``: every dataset that has the cell type; pairs are pooled).
    grn
        GRN name (``None``: every imported GRN).
    expression
        Mean expression of every gene of the dataset (upper-case symbol -> value); the agreement's
        null draws expression-matched genes from it. ``None``: no agreement score.
    """
    from circuitdb.queries import run_rows

    circuits = run_rows(runner, "circuit_datasets", {"cell_type": cell_type, "dataset": dataset})
    if not circuits:
        where = f" in dataset {dataset!r}" if dataset else ""
        raise InputError(f"no circuit for cell type {cell_type!r}{where}; list them with 'circuitdb query circuits'")
    grns = run_rows(runner, "grns", {})
    if not grns:
        raise InputError("no GRN in the graph; import one with 'circuitdb grn import FILE --name NAME'")
    if grn is not None and grn not in {g["name"] for g in grns}:
        raise InputError(f"no GRN named {grn!r}; imported: {', '.join(g['name'] for g in grns)}")
    params = {"cell_type": cell_type, "dataset": dataset, "grn": grn}
    pairs = run_rows(runner, "grn_pairs", params)
    paths = run_rows(runner, "grn_paths", {**params, "min_weight": min_weight, "limit": limit})
    gf = run_rows(runner, "circuit_gene_features", {"cell_type": cell_type, "dataset": dataset})
    linked = linked_gene_pairs((r["gene"], f"{r['circuit']}|{r['feature']}") for r in gf)
    agreement, note = None, None
    if expression is None:
        note = "no expression given (--data), so no GRN-agreement score"
    elif not linked:
        note = "the circuit has no gene pair sharing a feature, so no GRN-agreement score"
    else:
        edges = [(r["tf"], r["target"]) for r in run_rows(runner, "grn_edges", {"grn": grn})]
        expr = {str(k).upper(): float(v) for k, v in expression.items()}
        missing = {g for p in linked for g in p} - set(expr)
        if missing:
            note = f"{len(missing)} circuit gene(s) not in the expression table (e.g. {sorted(missing)[0]}); they stay fixed in the null"
        agreement = grn_agreement(linked, edges, expr, n_permutations=n_permutations, seed=seed)
    return CircuitLink(cell_type=cell_type, circuits=[c["circuit"] for c in circuits], pairs=pairs, paths=paths,
                       agreement=agreement, n_linked_pairs=len(linked), note=note)
