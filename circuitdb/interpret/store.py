"""Write an :class:`~circuitdb.interpret.features.Interpretation` into the graph.

* ``Feature`` nodes (MERGE by the graph export's id ``{transcoder_hash[:16]}:{layer}:{index}``)
  get ``label`` (short automatic label), ``top_genes``, ``density``, ``interpretable``,
  ``best_term``, ``best_q``, ``best_cell_type``, ``best_auroc``, ``transcoder_set``.
* ``GeneSet {id: "{library}:{name}", library, name, size}`` nodes, one per set that some
  feature is significantly enriched for.
* ``(Feature)-[:ENRICHED_FOR {library, p, q, odds, overlap, genes}]->(GeneSet)`` for every row that
  meets the interpretability criteria (q, odds and overlap thresholds).

Reruns are exact: the features' old ``ENRICHED_FOR`` rows are deleted first, everything else MERGEs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.graph.grn import write_checked
from circuitdb.graph.rows import transcoder_set_node_id
from circuitdb.interpret.enrichment import interpretable
from circuitdb.interpret.features import Interpretation


class Runner(Protocol):
    def run(self, statement: CypherStatement, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass
class StoreSummary:
    features: int = 0
    gene_sets: int = 0
    enriched_for: int = 0
    purged: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def gene_set_id(library: str, term: str) -> str:
    return f"{library}:{term}"


def _opt(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and pd.isna(x)) else x


def interpretation_rows(interp: Interpretation, tc_hash: str) -> tuple[list[dict], list[dict], list[dict]]:
    """(feature rows, gene-set rows, ENRICHED_FOR rows) for the ``cypher/write`` statements.

    ``interp.table`` must hold ``feature_id`` values equal to the graph's Feature ids.
    """
    t = interp.table
    feats = [
        {
            "id": r.feature_id, "layer": int(r.layer), "index": int(r.index), "transcoder_set": transcoder_set_node_id(tc_hash),
            "label": str(r.label), "top_genes": [str(g) for g in r.top_genes], "density": float(r.density),
            "interpretable": bool(r.gene_level_interpretable), "best_term": _opt(r.best_term), "best_q": _opt(r.best_q),
            "best_cell_type": _opt(r.best_label), "best_auroc": _opt(r.best_auroc),
        }
        for r in t.itertuples(index=False)
    ]
    hits = interpretable(interp.enrichment, interp.criteria)
    sets: dict[str, dict] = {}
    edges = []
    for r in hits.itertuples(index=False):
        sid = gene_set_id(r.library, r.term)
        sets.setdefault(sid, {"id": sid, "library": str(r.library), "name": str(r.term), "size": int(r.set_size)})
        edges.append({"feature": r.feature, "gene_set": sid, "library": str(r.library), "p": float(r.p), "q": float(r.q),
                      "odds": float(r.odds), "overlap": int(r.overlap), "genes": str(r.genes).split(";") if r.genes else []})
    return feats, sorted(sets.values(), key=lambda s: s["id"]), edges


def store_interpretation(
    runner: Runner,
    interp: Interpretation,
    tc_hash: str,
    *,
    batch_size: int = 2000,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> StoreSummary:
    """Write labels, top genes and significant enrichments (see the module docstring)."""
    feats, sets, edges = interpretation_rows(interp, tc_hash)
    summary = StoreSummary()
    total = len(feats) + len(sets) + len(edges)
    purge = catalog.load("write", "purge_enriched_for")
    for i in range(0, len(feats), batch_size):
        res = runner.run(purge, {"ids": [f["id"] for f in feats[i:i + batch_size]]})
        summary.purged += int(res[0]["n"]) if res else 0
    for name, rows in (("feature_interpretation", feats), ("gene_set", sets), ("enriched_for", edges)):
        write_checked(runner, name, rows, batch_size, summary.rows, total, on_progress)
    summary.features, summary.gene_sets, summary.enriched_for = len(feats), len(sets), len(edges)
    return summary
