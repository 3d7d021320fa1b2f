"""Named Cypher queries with validated parameters; results as DataFrames or networkx.

Installed as ``circuitdb.queries`` (mapped from the top-level ``queries/`` folder).

>>> from circuitdb.queries import run_query, circuit_diff, neighbourhood_graph
>>> df = run_query(backend, "top_features", cell_type="CD19+ B")          # doctest: +SKIP
>>> diff = circuit_diff(backend, "CD19+ B", "CD14+ Monocyte")             # doctest: +SKIP
>>> g = neighbourhood_graph(backend, feature_id, hops=2)                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
import pandas as pd

from circuitdb.catalog import CypherStatement
from circuitdb.errors import InputError
from circuitdb.queries.registry import REGISTRY, NamedQuery, Param, get, parse_assignments


class Runner(Protocol):
    """A graph backend: ``run(statement, params) -> list of row dicts``."""

    def run(self, statement: CypherStatement, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


def run_rows(runner: Runner, name: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a named query with validated parameters; rows as dicts."""
    stmt, values = get(name).compile(params)
    return runner.run(stmt, values)


def run_query(runner: Runner, name: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> pd.DataFrame:
    """Run a named query; rows as a DataFrame (columns in ``RETURN`` order, also when empty).

    Parameters
    ----------
    runner
        An open graph backend.
    name
        A registry name (see ``circuitdb queries list``).
    params, **kwargs
        Parameter values (validated and converted; text is parsed).

    Returns
    -------
    pandas.DataFrame
    """
    values = {**dict(params or {}), **kwargs}
    stmt, cypher_params = get(name).compile(values)
    rows = runner.run(stmt, cypher_params)
    return pd.DataFrame(rows, columns=_columns(stmt) if not rows else None)


def _columns(stmt: CypherStatement) -> list[str] | None:
    for line in stmt.text.splitlines():
        s = line.strip().lstrip("/").strip()
        if s.lower().startswith("returns:"):
            cols = []
            for part in s.split(":", 1)[1].split(","):
                token = part.strip().split(" ")[0].strip("()")
                if token.isidentifier():
                    cols.append(token)
            return cols or None
    return None


def resolve_dataset(runner: Runner, cell_type: str, dataset: str | None) -> str | None:
    """A dataset id, given an id or the name of a dataset (``Dataset.name``) with a circuit of ``cell_type``.

    Ids look like ``pbmc68k_reduced-a47395f14b16f3a4`` (name plus the file's hash); a name is
    accepted when it names exactly one dataset that has the cell type. Anything else is
    returned unchanged (the caller reports a miss).

    Raises
    ------
    InputError
        The name fits several datasets (listed: pass one id).
    """
    if dataset is None:
        return None
    rows = run_rows(runner, "circuit_datasets", {"cell_type": cell_type, "dataset": None})
    if any(str(r["dataset"]) == dataset for r in rows):
        return dataset
    named = sorted({str(r["dataset"]) for r in rows if r.get("name") == dataset})
    if len(named) > 1:
        raise InputError(f"dataset name {dataset!r} fits {len(named)} datasets with a {cell_type!r} circuit "
                         f"({', '.join(named)}); pass one of these ids")
    return named[0] if named else dataset


def resolve_circuit(runner: Runner, cell_type: str, dataset: str | None) -> dict[str, Any]:
    """The one stored circuit of a cell type (in a dataset); a one-line error when none or several match."""
    return _pick_circuit(runner, run_rows(runner, "circuits", {"cell_type": cell_type, "dataset": dataset}),
                         cell_type, dataset)


def _pick_circuit(runner: Runner, rows: list[dict[str, Any]], cell_type: str, dataset: str | None) -> dict[str, Any]:
    """The one circuit among a cell type's ``rows`` that is in ``dataset`` (any when None), else a one-line error."""
    rows = [r for r in rows if dataset is None or r["dataset"] == dataset]
    where = f" in dataset {dataset!r}" if dataset else ""
    if not rows:
        known = sorted({r["cell_type"] for r in run_rows(runner, "circuits", {"dataset": dataset})})
        listed = ", ".join(repr(k) for k in known[:12]) or "none (run 'circuitdb export' first)"
        raise InputError(f"no circuit for cell type {cell_type!r}{where}; stored cell types: {listed}")
    if len(rows) > 1:
        datasets = sorted({str(r["dataset"]) for r in rows})
        raise InputError(f"{len(rows)} circuits for cell type {cell_type!r}{where} (datasets: {', '.join(datasets)}); "
                         "pass --dataset to pick one")
    return rows[0]


@dataclass
class CircuitDiff:
    """A circuit diff: edge rows and feature rows, each with a ``status`` of only_a/only_b/both."""

    a: dict[str, Any]
    b: dict[str, Any]
    edges: pd.DataFrame
    features: pd.DataFrame
    edge_counts: dict[str, int] | None = None

    def counts(self, what: str = "edges") -> dict[str, int]:
        """Edges (or features) only in A, only in B, in both: exact even when ``edges`` holds only the top rows."""
        if what == "edges" and self.edge_counts is not None:
            return {k: int(self.edge_counts.get(k, 0)) for k in ("only_a", "only_b", "both")}
        df = self.edges if what == "edges" else self.features
        vc = df["status"].value_counts() if len(df) else {}
        return {k: int(vc.get(k, 0)) for k in ("only_a", "only_b", "both")}

    def as_json(self) -> dict[str, Any]:
        """``{counts, only_a, only_b, both}`` over edges, plus ``features`` in the same shape and the two circuits."""
        def rows(df: pd.DataFrame, status: str, cols: list[str]) -> list[dict[str, Any]]:
            part = df[df["status"] == status] if len(df) else df
            return [{c: _plain(r[c]) for c in cols} for r in part.to_dict("records")]

        ecols = ["type", "source", "target", "weight_a", "weight_b", "delta"]
        fcols = ["feature", "layer", "index", "influence_a", "influence_b", "delta"]
        return {
            "a": self.a, "b": self.b,
            "counts": self.counts("edges"),
            "only_a": rows(self.edges, "only_a", ecols),
            "only_b": rows(self.edges, "only_b", ecols),
            "both": rows(self.edges, "both", ecols),
            "features": {
                "counts": self.counts("features"),
                "only_a": rows(self.features, "only_a", fcols),
                "only_b": rows(self.features, "only_b", fcols),
                "both": rows(self.features, "both", fcols),
            },
        }


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas for a missing weight
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def circuit_diff(
    runner: Runner,
    cell_type_a: str,
    cell_type_b: str | None = None,
    *,
    dataset_a: str | None = None,
    dataset_b: str | None = None,
    limit: int | None = None,
) -> CircuitDiff:
    """Diff two circuits: two cell types (one dataset), or one cell type in two datasets.

    Parameters
    ----------
    cell_type_a, cell_type_b
        Side A's and side B's cell type (B defaults to A, for a dataset diff).
    dataset_a, dataset_b
        Side A's and side B's dataset, by id or by name (:func:`resolve_dataset`); B defaults to A;
        null: the one dataset that has the cell type.
    limit
        Keep only the ``limit`` edge rows with the largest |delta| (None: all); counts stay exact.

    Returns
    -------
    CircuitDiff
    """
    cell_type_b = cell_type_a if cell_type_b is None else cell_type_b
    dataset_a = resolve_dataset(runner, cell_type_a, dataset_a)
    dataset_b = resolve_dataset(runner, cell_type_b, dataset_b)
    # one lookup per cell type; the sides are picked from those rows
    rows_a = run_rows(runner, "circuits", {"cell_type": cell_type_a, "dataset": None})
    rows_b = rows_a if cell_type_b == cell_type_a else run_rows(runner, "circuits",
                                                                {"cell_type": cell_type_b, "dataset": None})
    if dataset_a is None and dataset_b is None and cell_type_a != cell_type_b:
        # two cell types, no dataset named: the one dataset that has both, if there is exactly one
        common = {r["dataset"] for r in rows_a} & {r["dataset"] for r in rows_b}
        if len(common) == 1:
            dataset_a = common.pop()
    dataset_b = dataset_a if dataset_b is None else dataset_b
    a = _pick_circuit(runner, rows_a, cell_type_a, dataset_a)
    b = _pick_circuit(runner, rows_b, cell_type_b, dataset_b)
    if a["id"] == b["id"]:
        raise InputError(f"both sides are circuit {a['id']!r}; pass a different cell type (--vs) or dataset (--vs-dataset)")
    # the whole diff in one statement and one round trip: the edges are aggregated once for counts and rows
    from circuitdb import catalog  # noqa: PLC0415

    stmt = catalog.load("library", "diff_circuits")
    out = runner.run(stmt, {"ids_a": [a["id"]], "ids_b": [b["id"]],
                            "limit": _ALL_ROWS if limit is None else max(0, int(limit))})[0]
    edges = pd.DataFrame(out["edges"], columns=list(_EDGE_COLUMNS))
    features = pd.DataFrame(out["features"], columns=list(_FEATURE_COLUMNS))
    counts = {k: int(out[k]) for k in ("only_a", "only_b", "both")}
    return CircuitDiff(a, b, edges, features, counts)


_ALL_ROWS = 10_000_000
_EDGE_COLUMNS = ("status", "type", "source", "target", "weight_a", "weight_b", "delta")
_FEATURE_COLUMNS = ("status", "feature", "layer", "index", "influence_a", "influence_b", "delta")


@dataclass
class CellTypeDatasetDiff:
    """One cell type's circuit in two datasets: the circuit diff and the genes whose influence changes most."""

    cell_type: str
    diff: CircuitDiff
    genes: pd.DataFrame


def dataset_ids(runner: Runner) -> dict[str, str]:
    """Every dataset id with a stored circuit, mapped to its name (``Dataset.name``; the id itself when unnamed)."""
    out: dict[str, str] = {}
    for ct in sorted({str(r["cell_type"]) for r in run_rows(runner, "circuits", {})}):
        for r in run_rows(runner, "circuit_datasets", {"cell_type": ct, "dataset": None}):
            out.setdefault(str(r["dataset"]), str(r["name"] or r["dataset"]))
    return out


def _one_dataset(ids: Mapping[str, str], dataset: str) -> str:
    if dataset in ids:
        return dataset
    named = sorted(i for i, n in ids.items() if n == dataset)
    if len(named) == 1:
        return named[0]
    if named:
        raise InputError(f"dataset name {dataset!r} fits {len(named)} datasets ({', '.join(named)}); pass one of these ids")
    listed = ", ".join(f"{i} ({n})" for i, n in sorted(ids.items())) or "none (run 'circuitdb export' first)"
    raise InputError(f"no circuits of dataset {dataset!r}; stored datasets: {listed}")


def dataset_diffs(runner: Runner, dataset_a: str, dataset_b: str, *, top_genes: int = 10,
                  top_edges: int | None = None) -> list[CellTypeDatasetDiff]:
    """Diff every cell type that has a circuit in both datasets (library queries ``diff_*`` and ``gene_influence_change``).

    Parameters
    ----------
    dataset_a, dataset_b
        Dataset ids or names.
    top_genes
        Gene rows kept per cell type (largest |influence change| first).
    top_edges
        Edge rows kept per cell type (None: all); the counts stay exact.

    Returns
    -------
    list of CellTypeDatasetDiff
        One per shared cell type, sorted by name.
    """
    ids = dataset_ids(runner)
    a, b = _one_dataset(ids, dataset_a), _one_dataset(ids, dataset_b)
    if a == b:
        raise InputError(f"both sides are dataset {a!r}; pass two different datasets")
    types_a = {str(r["cell_type"]) for r in run_rows(runner, "circuits", {"dataset": a})}
    types_b = {str(r["cell_type"]) for r in run_rows(runner, "circuits", {"dataset": b})}
    out = []
    for ct in sorted(types_a & types_b):
        diff = circuit_diff(runner, ct, dataset_a=a, dataset_b=b, limit=top_edges)
        genes = run_query(runner, "gene_influence_change", cell_type=ct, dataset_a=a, dataset_b=b, limit=top_genes)
        out.append(CellTypeDatasetDiff(ct, diff, genes))
    return out


def neighbourhood_graph(
    runner: Runner,
    feature: str,
    *,
    hops: int = 1,
    circuit: str | None = None,
    min_weight: float = 0.0,
) -> nx.MultiDiGraph:
    """The circuit edges within ``hops`` of a feature as a networkx MultiDiGraph.

    Nodes are keyed by their graph key (feature id, gene symbol, cell type name) with a
    ``label`` attribute; edges carry ``type``, ``circuit`` and ``weight`` (one edge per circuit).
    """
    rows = run_rows(runner, "neighbourhood", {"feature": feature, "hops": hops, "circuit": circuit,
                                              "min_weight": min_weight})
    g = nx.MultiDiGraph(feature=feature, hops=hops, circuit=circuit or "", min_weight=min_weight)
    if not rows:
        exists = runner.run(_feature_exists(), {"feature": feature})
        if not exists:
            raise InputError(f"no feature {feature!r} in the graph; list features with "
                             "'circuitdb query top_features --param cell_type=...'")
        g.add_node(feature, label="Feature")
        return g
    for r in rows:
        g.add_node(r["source"], label=r["source_label"])
        g.add_node(r["target"], label=r["target_label"])
        g.add_edge(r["source"], r["target"], key=f"{r['type']}|{r['circuit']}", type=r["type"],
                   circuit=r["circuit"], weight=float(r["weight"]))
    return g


def _feature_exists() -> CypherStatement:
    from circuitdb import catalog  # noqa: PLC0415

    return catalog.load("library", "feature_exists")


__all__ = [
    "REGISTRY", "NamedQuery", "Param", "get", "parse_assignments", "run_rows", "run_query", "resolve_circuit", "resolve_dataset",
    "CircuitDiff", "circuit_diff", "CellTypeDatasetDiff", "dataset_ids", "dataset_diffs", "neighbourhood_graph",
]
