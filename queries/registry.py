"""The registry of named queries: name -> library statement, typed parameters with defaults.

A named query validates and converts its parameters (from Python values or from
``key=value`` text on the command line) before anything reaches the database, and
maps them onto the ``$parameters`` of one ``cypher/library`` file. Which file may
depend on a parameter only through a fixed allow-list (``feature_neighbourhood_{1,2,3}``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.errors import InputError

REQUIRED: Any = object()


@dataclass(frozen=True)
class Param:
    """One typed query parameter. ``default`` is :data:`REQUIRED` when the caller must give it."""

    name: str
    type: type
    description: str
    default: Any = REQUIRED
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def convert(self, value: Any, query: str) -> Any:
        """Check and convert one value (text from the command line is parsed)."""
        where = f"parameter {self.name!r} of query {query!r}"
        if value is None or (isinstance(value, str) and self.nullable and value.lower() in ("null", "none")):
            if self.nullable:
                return None
            raise InputError(f"{where} cannot be null; pass a {self.type.__name__}")
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    out: Any = value.lower() in ("true", "1", "yes")
                else:
                    out = bool(value)
            elif self.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError(value)
                out = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError(value)
                out = float(value)
                if not math.isfinite(out):
                    raise ValueError(value)
            else:
                if not isinstance(value, str):
                    raise ValueError(value)
                out = value
        except (TypeError, ValueError):
            raise InputError(f"{where} must be a {self.type.__name__}, got {value!r}; pass e.g. "
                             f"{self.example()}") from None
        if self.choices is not None and out not in self.choices:
            raise InputError(f"{where} is {out!r}; use one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and out < self.minimum:
            raise InputError(f"{where} is {out}; it must be at least {self.minimum}")
        if self.maximum is not None and out > self.maximum:
            raise InputError(f"{where} is {out}; it must be at most {self.maximum}")
        return out

    def example(self) -> str:
        sample = {int: "10", float: "0.1", bool: "true", str: "text"}[self.type]
        return f"--param {self.name}={sample}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.__name__, "required": self.required,
                "default": None if self.required else self.default, "nullable": self.nullable,
                "choices": list(self.choices) if self.choices else None, "description": self.description}


@dataclass(frozen=True)
class NamedQuery:
    """A named query: one library statement (or an allow-listed family), its typed parameters,
    and how they map onto the statement's ``$parameters``."""

    name: str
    description: str
    statement: str
    params: tuple[Param, ...]
    to_cypher: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    statement_for: Callable[[dict[str, Any]], str] | None = None
    result: str = "table"
    checks: tuple[Callable[[dict[str, Any]], None], ...] = field(default_factory=tuple)

    def bind(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate ``values`` (unknown names, missing required ones, types) and fill in defaults."""
        values = dict(values or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            listed = ", ".join(sorted(known)) or "none"
            raise InputError(f"query {self.name!r} has no parameter {unknown[0]!r}; its parameters: {listed}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in values:
                out[p.name] = p.convert(values[p.name], self.name)
            elif p.required:
                raise InputError(f"query {self.name!r} needs parameter {p.name!r} ({p.description}); "
                                 f"pass {p.example()}")
            else:
                out[p.name] = p.default
        for check in self.checks:
            check(out)
        return out

    def compile(self, values: Mapping[str, Any] | None = None) -> tuple[CypherStatement, dict[str, Any]]:
        """The library statement and its ``$parameters`` for validated ``values``."""
        bound = self.bind(values)
        name = self.statement_for(bound) if self.statement_for else self.statement
        stmt = catalog.load("library", name)
        cypher_params = self.to_cypher(bound) if self.to_cypher else dict(bound)
        cypher_params = {k: v for k, v in cypher_params.items() if k in stmt.params}
        missing = [p for p in stmt.params if p not in cypher_params]
        if missing:  # a registry bug, not a user error
            raise AssertionError(f"query {self.name} does not fill {missing} of library/{name}")
        return stmt, cypher_params

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "statement": f"library/{self.statement}",
                "result": self.result, "params": [p.describe() for p in self.params]}


# -- shared parameters -----------------------------------------------------------------------

def _cell_type(name: str = "cell_type", what: str = "cell type (as in the dataset's labels)") -> Param:
    return Param(name, str, what)


def _dataset(name: str = "dataset", what: str = "dataset id (null: any dataset)", required: bool = False) -> Param:
    return Param(name, str, what, REQUIRED if required else None, nullable=not required)


def _limit(default: int = 25) -> Param:
    return Param("limit", int, "maximum rows returned", default, minimum=1, maximum=10_000_000)


def _min_weight(default: float = 0.0) -> Param:
    return Param("min_weight", float, "keep edges with |weight| at least this", default, minimum=0.0)


def _distinct_sides(bound: dict[str, Any]) -> None:
    a = (bound.get("cell_type_a", bound.get("cell_type")), bound.get("dataset_a", bound.get("dataset")))
    b = (bound.get("cell_type_b", bound.get("cell_type")), bound.get("dataset_b", bound.get("dataset")))
    if a == b:
        raise InputError(f"both sides of the diff are the same circuit ({a[0]!r}, dataset {a[1]!r}); "
                         "pass a different cell type or dataset for the second side")


HOPS = (1, 2, 3)


def _neighbourhood_file(bound: dict[str, Any]) -> str:
    hops = int(bound["hops"])
    if hops not in HOPS:  # bind() already checked; the file name comes only from this allow-list
        raise InputError(f"hops {hops} is not allowed; use one of {HOPS}")
    return f"feature_neighbourhood_{hops}"


REGISTRY: dict[str, NamedQuery] = {}


def register(query: NamedQuery) -> NamedQuery:
    if query.name in REGISTRY:
        raise ValueError(f"query {query.name} registered twice")
    REGISTRY[query.name] = query
    return query


register(NamedQuery(
    "circuits", "Stored circuits with their provenance (model, transcoders, dataset, method, thresholds).",
    "circuits", (Param("cell_type", str, "cell type (null: all)", None, nullable=True), _dataset()),
))
register(NamedQuery(
    "top_features", "A cell type's circuit: its features ranked by |influence|, with direct weights into the cell type.",
    "cell_type_top_features", (_cell_type(), _dataset(), _limit()),
))
register(NamedQuery(
    "gene_paths", "Gene -> cell type paths whose every edge has |weight| >= min_weight (at most 4 edges).",
    "gene_paths_to_cell_type", (_cell_type(), _dataset(), _min_weight(0.1), _limit()),
))
register(NamedQuery(
    "top_heads", "Attention heads carrying the most weight in a cell type's circuit.",
    "top_heads_into_cell_type", (_cell_type(), _dataset(), _limit(10)),
))
register(NamedQuery(
    "neighbourhood", "Circuit edges within k hops of a feature (k = 1, 2 or 3).",
    "feature_neighbourhood_1",
    (Param("feature", str, "feature id (<transcoder hash16>:<layer>:<index>)"),
     Param("hops", int, "hops from the feature", 1, choices=HOPS),
     Param("circuit", str, "circuit id (null: all circuits)", None, nullable=True),
     _min_weight()),
    statement_for=_neighbourhood_file, result="graph",
))
register(NamedQuery(
    "shared_features", "Features shared by all cell types' circuits vs specific to one (or in between).",
    "shared_features",
    (_dataset(), Param("category", str, "shared, specific or partial (null: all)", None, nullable=True,
                       choices=("shared", "specific", "partial"))),
))
register(NamedQuery(
    "diff_cell_types", "Edge diff between two cell types' circuits: only A, only B, both with weight delta.",
    "diff_edges",
    (_cell_type("cell_type_a", "cell type A"), _cell_type("cell_type_b", "cell type B"), _dataset(),
     _limit(100000)),
    to_cypher=lambda b: {"cell_type_a": b["cell_type_a"], "dataset_a": b["dataset"],
                         "cell_type_b": b["cell_type_b"], "dataset_b": b["dataset"], "limit": b["limit"]},
    checks=(_distinct_sides,),
))
register(NamedQuery(
    "diff_cell_types_features", "Feature diff between two cell types' circuits (influence delta).",
    "diff_features",
    (_cell_type("cell_type_a", "cell type A"), _cell_type("cell_type_b", "cell type B"), _dataset()),
    to_cypher=lambda b: {"cell_type_a": b["cell_type_a"], "dataset_a": b["dataset"],
                         "cell_type_b": b["cell_type_b"], "dataset_b": b["dataset"]},
    checks=(_distinct_sides,),
))
register(NamedQuery(
    "diff_datasets", "Edge diff of one cell type's circuits in two datasets: only A, only B, both with delta.",
    "diff_edges",
    (_cell_type(), _dataset("dataset_a", "dataset A", True), _dataset("dataset_b", "dataset B", True),
     _limit(100000)),
    to_cypher=lambda b: {"cell_type_a": b["cell_type"], "dataset_a": b["dataset_a"],
                         "cell_type_b": b["cell_type"], "dataset_b": b["dataset_b"], "limit": b["limit"]},
    checks=(_distinct_sides,),
))
register(NamedQuery(
    "diff_datasets_features", "Feature diff of one cell type's circuits in two datasets.",
    "diff_features",
    (_cell_type(), _dataset("dataset_a", "dataset A", True), _dataset("dataset_b", "dataset B", True)),
    to_cypher=lambda b: {"cell_type_a": b["cell_type"], "dataset_a": b["dataset_a"],
                         "cell_type_b": b["cell_type"], "dataset_b": b["dataset_b"]},
    checks=(_distinct_sides,),
))
register(NamedQuery(
    "gene_influence_change", "Genes whose influence on a cell type changes most between two datasets.",
    "gene_influence_change",
    (_cell_type(), _dataset("dataset_a", "dataset A", True), _dataset("dataset_b", "dataset B", True), _limit()),
    checks=(_distinct_sides,),
))
register(NamedQuery(
    "circuit_edges", "All weighted edges of one circuit, strongest first.", "circuit_edges",
    (Param("circuit", str, "circuit id (see the circuits query)"),),
))
register(NamedQuery(
    "graph_counts", "Nodes per label and relationships per type in the graph.", "graph_counts", (),
))

# -- gene regulatory networks and interpretation (circuitdb grn / circuitdb interpret) ---------

def _grn() -> Param:
    return Param("grn", str, "GRN name (null: every imported GRN)", None, nullable=True)


register(NamedQuery("grns", "Imported gene regulatory networks and their provenance.", "grns", ()))
register(NamedQuery(
    "grn_pairs", "TF -> target pairs of a GRN whose two genes both sit in a cell type's circuit.",
    "grn_pairs_in_circuit", (_cell_type(), _dataset(), _grn()),
))
register(NamedQuery(
    "grn_paths", "Circuit paths gene -> feature(s) -> cell type whose input gene is a GRN target of a TF in the circuit.",
    "grn_regulated_paths", (_cell_type(), _dataset(), _grn(), _min_weight(0.0), _limit(100)),
))
register(NamedQuery(
    "circuit_gene_features", "Gene -> feature edges of a cell type's circuit (input of the GRN-agreement score).",
    "circuit_gene_features", (_cell_type(), _dataset()),
))
register(NamedQuery("grn_edges", "Every TF -> target edge of a GRN.", "grn_edges", (_grn(),)))
register(NamedQuery(
    "circuit_datasets", "The datasets a cell type has circuits in, with their source files.",
    "circuit_datasets", (_cell_type(), _dataset()),
))
register(NamedQuery(
    "feature_enrichments", "A feature's automatic label, top genes and significant gene-set enrichments.",
    "feature_enrichments", (Param("feature", str, "feature id (<transcoder hash16>:<layer>:<index>)"),),
))


def get(name: str) -> NamedQuery:
    """The named query, or an :class:`InputError` listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"no query named {name!r}; known: {', '.join(sorted(REGISTRY))} "
                         "(see 'circuitdb queries list')") from None


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}`` (command-line ``--param`` values)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--param {item!r} is not key=value; pass e.g. --param cell_type='CD19+ B'")
        if key in out:
            raise InputError(f"--param {key} given twice; pass each parameter once")
        out[key] = value
    return out
