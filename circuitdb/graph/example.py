"""A tiny, hand-written example circuit graph for ``circuitdb demo`` v1 and backend tests.

Two cell types of pbmc68k_reduced, a few marker genes, four transcoder features
in two layers and weighted edges carrying their circuit id. Ids are
deterministic and every write is a ``MERGE``, so loading twice changes nothing.
The numbers are illustrative, not results: later stages replace this graph by
circuits computed from the demo model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from circuitdb.graph.backend import GraphBackend, WriteSummary

TRANSCODER_SET = "example"


def feature_id(layer: int, index: int, transcoder_set: str = TRANSCODER_SET) -> str:
    """Deterministic feature id ``{transcoder_set}/L{layer}/F{index}``."""
    return f"{transcoder_set}/L{layer}/F{index}"


def circuit_id(cell_type: str, dataset: str = "example") -> str:
    """Deterministic circuit id of one cell type in one dataset."""
    return f"{dataset}/{cell_type}"


B_CELL = "CD19+ B"
MONOCYTE = "CD14+ Monocyte"

GENES = ["CD79A", "MS4A1", "CD19", "LYZ", "S100A8", "CD14"]
FEATURES = [(0, 3), (0, 7), (1, 2), (1, 5)]
CELL_TYPES = [B_CELL, MONOCYTE]

#: (source gene, (layer, index), cell type, weight)
_GENE_EDGES = [
    ("CD79A", (0, 3), B_CELL, 0.82),
    ("MS4A1", (0, 3), B_CELL, 0.61),
    ("CD19", (0, 7), B_CELL, 0.34),
    ("LYZ", (0, 7), MONOCYTE, 0.77),
    ("S100A8", (0, 7), MONOCYTE, 0.58),
    ("CD14", (0, 3), MONOCYTE, -0.21),
]
#: ((layer, index) source, (layer, index) target, cell type, weight)
_FEATURE_EDGES = [
    ((0, 3), (1, 2), B_CELL, 0.9),
    ((0, 7), (1, 2), B_CELL, 0.45),
    ((0, 7), (1, 5), MONOCYTE, 0.85),
    ((0, 3), (1, 5), MONOCYTE, -0.3),
]
#: ((layer, index), cell type, weight); the circuit is the cell type's own
_CELL_TYPE_EDGES = [
    ((1, 2), B_CELL, 0.95),
    ((1, 5), MONOCYTE, 0.88),
    ((0, 7), MONOCYTE, 0.25),
]


@dataclass(frozen=True)
class ExampleGraph:
    """Rows for each write statement of the example graph."""

    genes: list[dict]
    features: list[dict]
    cell_types: list[dict]
    gene_edges: list[dict]
    feature_edges: list[dict]
    cell_type_edges: list[dict]

    @property
    def n_nodes(self) -> int:
        return len(self.genes) + len(self.features) + len(self.cell_types)

    @property
    def n_relationships(self) -> int:
        return len(self.gene_edges) + len(self.feature_edges) + len(self.cell_type_edges)


def example_graph() -> ExampleGraph:
    """The example graph as write rows (deterministic)."""
    return ExampleGraph(
        genes=[{"symbol": g} for g in GENES],
        features=[{"id": feature_id(layer, index), "layer": layer, "index": index, "transcoder_set": TRANSCODER_SET}
                  for layer, index in FEATURES],
        cell_types=[{"name": c} for c in CELL_TYPES],
        gene_edges=[{"source": g, "target": feature_id(*f), "circuit": circuit_id(c), "weight": w}
                    for g, f, c, w in _GENE_EDGES],
        feature_edges=[{"source": feature_id(*a), "target": feature_id(*b), "circuit": circuit_id(c), "weight": w}
                       for a, b, c, w in _FEATURE_EDGES],
        cell_type_edges=[{"source": feature_id(*f), "target": c, "circuit": circuit_id(c), "weight": w}
                         for f, c, w in _CELL_TYPE_EDGES],
    )


#: (write statement, ExampleGraph attribute), nodes before the edges that match them
WRITE_PLAN = [
    ("write/example_genes", "genes"),
    ("write/example_features", "features"),
    ("write/example_cell_types", "cell_types"),
    ("write/example_gene_edges", "gene_edges"),
    ("write/example_feature_edges", "feature_edges"),
    ("write/example_cell_type_edges", "cell_type_edges"),
]


def load_example(
    backend: GraphBackend, *, batch_size: int = 1000, on_batch: Callable[[int], None] | None = None
) -> WriteSummary:
    """MERGE the example graph into ``backend`` (idempotent).

    Parameters
    ----------
    backend
        An open graph backend (schema applied, so MERGE uses the uniqueness indexes).
    batch_size
        Rows per transaction.
    on_batch
        Progress callback with the rows of each committed batch.

    Returns
    -------
    WriteSummary
        Totals over all statements (``counters`` shows what this run created).
    """
    graph = example_graph()
    total = WriteSummary()
    for statement, attr in WRITE_PLAN:
        part = backend.write_batches(statement, getattr(graph, attr), batch_size, on_batch=on_batch)
        total.rows += part.rows
        total.batches += part.batches
        for key, value in part.counters.items():
            total.counters[key] = total.counters.get(key, 0) + value
    return total
