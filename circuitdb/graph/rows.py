"""The typed graph schema: allow-listed labels and relationship types, deterministic ids,
and the rows a :class:`~circuitdb.attribution.circuit.Circuit` becomes.

Nothing here talks to a database. :mod:`circuitdb.graph.writer` sends the rows built
here through the ``cypher/write/*.cypher`` statements (``UNWIND $rows``); every value
travels as a parameter, and labels/relationship types appear only in those shipped
files, checked against :data:`NODE_LABELS` and :data:`REL_TYPES`.

Ids (stable across runs and machines, so MERGE makes writes idempotent):

(``hash`` below is the digest without an algorithm prefix such as ``sha256:``.)

* ``Model.id``          ``model:{model_hash[:16]}``
* ``TranscoderSet.id``  ``tc:{transcoder_hash[:16]}``
* ``Feature.id``        ``{transcoder_hash[:16]}:{layer}:{index}``
* ``AttentionHead.id``  ``{model_hash[:16]}:{layer}:{head}``
* ``Gene.symbol``, ``CellType.name``, ``Dataset.id`` (the provenance's dataset id),
  ``Circuit.id`` (:attr:`Circuit.id`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from array import array
from dataclasses import asdict, dataclass
from typing import Any

from circuitdb.attribution.circuit import Circuit, CircuitNode
from circuitdb.errors import InputError

#: Node labels the schema defines (the only labels any shipped statement uses).
NODE_LABELS: tuple[str, ...] = (
    "Model", "TranscoderSet", "Feature", "AttentionHead", "Gene", "CellType", "Dataset", "Circuit",
    "GRN", "GeneSet",
)

#: Weighted relationships carrying a ``circuit`` property (circuit id), with a relationship index on it.
WEIGHTED_REL_TYPES: tuple[str, ...] = (
    "GENE_TO_FEATURE", "FEATURE_TO_FEATURE", "FEATURE_TO_CELL_TYPE", "GENE_TO_CELL_TYPE",
    "HEAD_CARRIES", "HAS_FEATURE", "HAS_GENE",
)

#: Structural (provenance) relationships, one per circuit or transcoder set.
STRUCTURAL_REL_TYPES: tuple[str, ...] = (
    "FOR_CELL_TYPE", "ON_DATASET", "USES_TRANSCODERS", "OF_MODEL",
)

#: The hand-written example graph of ``circuitdb demo`` v1 (``circuitdb/graph/example.py``, ``*/example_*.cypher``).
EXAMPLE_REL_TYPES: tuple[str, ...] = ("INPUT_TO", "DRIVES", "PREDICTS")

#: GRN and interpretation relationships (``circuitdb grn import``, ``circuitdb interpret``).
ANNOTATION_REL_TYPES: tuple[str, ...] = ("REGULATES", "ENRICHED_FOR")

REL_TYPES: tuple[str, ...] = WEIGHTED_REL_TYPES + STRUCTURAL_REL_TYPES + EXAMPLE_REL_TYPES + ANNOTATION_REL_TYPES

#: The circuit edge types, keyed by (source kind, target kind) of the circuit's nodes.
EDGE_TYPE_BY_KINDS: dict[tuple[str, str], str] = {
    ("gene", "feature"): "GENE_TO_FEATURE",
    ("feature", "feature"): "FEATURE_TO_FEATURE",
    ("feature", "target"): "FEATURE_TO_CELL_TYPE",
    ("gene", "target"): "GENE_TO_CELL_TYPE",
}


def check_label(label: str) -> str:
    """Return ``label`` if the schema defines it, else raise :class:`InputError`."""
    if label not in NODE_LABELS:
        raise InputError(f"unknown node label {label!r}; use one of {', '.join(NODE_LABELS)}")
    return label


def check_rel_type(rel_type: str) -> str:
    """Return ``rel_type`` if the schema defines it, else raise :class:`InputError`."""
    if rel_type not in REL_TYPES:
        raise InputError(f"unknown relationship type {rel_type!r}; use one of {', '.join(REL_TYPES)}")
    return rel_type


def _hex(digest: str) -> str:
    """A hash without an algorithm prefix (``sha256:ab12...`` -> ``ab12...``), so ids keep 16 hex digits."""
    return digest.rpartition(":")[2]


def model_node_id(model_hash: str) -> str:
    return f"model:{_hex(model_hash)[:16]}"


def transcoder_set_node_id(transcoder_hash: str) -> str:
    return f"tc:{_hex(transcoder_hash)[:16]}"


def feature_node_id(transcoder_hash: str, layer: int, index: int) -> str:
    return f"{_hex(transcoder_hash)[:16]}:{int(layer)}:{int(index)}"


def head_node_id(model_hash: str, layer: int, head: int) -> str:
    return f"{_hex(model_hash)[:16]}:{int(layer)}:{int(head)}"


@dataclass
class CircuitRows:
    """Everything one circuit writes, as parameter rows for the ``cypher/write`` statements.

    ``nodes`` maps a write statement name (``model``, ``gene``, ...) to its rows, shared
    nodes first; ``circuit`` is the Circuit node's row; ``members`` and ``edges`` map
    statement names to rows carrying the circuit id. ``skipped_nodes``/``skipped_edges``
    count error/embedding/bias nodes and their edges, which the schema does not store.
    """

    circuit_id: str
    content_hash: str
    nodes: dict[str, list[dict[str, Any]]]
    circuit: dict[str, Any]
    members: dict[str, list[dict[str, Any]]]
    edges: dict[str, list[dict[str, Any]]]
    skipped_nodes: int = 0
    skipped_edges: int = 0

    def n_edges(self) -> int:
        return sum(len(v) for k, v in self.edges.items() if not k.startswith("head_"))

    def n_members(self) -> int:
        return sum(len(v) for v in self.members.values())

    def n_rows(self) -> int:
        return (sum(len(v) for v in self.nodes.values()) + 1 + self.n_members()
                + sum(len(v) for v in self.edges.values()))


#: Node write statements, in dependency order (a statement may MATCH nodes of an earlier one).
NODE_STATEMENTS: tuple[str, ...] = (
    "model", "transcoder_set", "dataset", "cell_type", "gene", "feature", "attention_head",
)
MEMBER_STATEMENTS: tuple[str, ...] = ("has_gene", "has_feature")
EDGE_STATEMENTS: tuple[str, ...] = (
    "gene_to_feature", "feature_to_feature", "feature_to_cell_type", "gene_to_cell_type",
    "head_to_feature", "head_to_cell_type",
)

_NODE_KEYS = {"model": "id", "transcoder_set": "id", "dataset": "id", "cell_type": "name",
              "gene": "symbol", "feature": "id", "attention_head": "id"}


def content_hash(circuit_row: dict[str, Any], nodes: dict[str, Any], members: dict[str, Any],
                 edges: dict[str, Any]) -> str:
    """A hash of everything a circuit writes: its Circuit node row (without the hash itself) and its
    node, membership and edge rows, in the order :func:`circuit_rows` builds them. It changes when
    the circuit is rebuilt with other content (or its feature annotations change).

    Rows are hashed column by column: a column of floats as its IEEE-754 doubles (little-endian),
    any other column as compact JSON, each behind its statement name, row count and key."""
    h = hashlib.sha256()
    row = {k: v for k, v in circuit_row.items() if k != "content_hash"}
    h.update(json.dumps(row, sort_keys=True, default=str).encode())
    for section in (nodes, members, edges):
        for name in sorted(section):
            rows = section[name]
            h.update(f"\x1e{name}:{len(rows)}".encode())
            for key in (rows[0] if rows else ()):
                col = [r[key] for r in rows]
                h.update(f"\x1d{key}".encode())
                if all(type(v) is float for v in col):
                    doubles = array("d", col)
                    if sys.byteorder == "big":
                        doubles.byteswap()
                    h.update(doubles.tobytes())
                else:
                    h.update(json.dumps(col, separators=(",", ":"), default=str).encode())
    return h.hexdigest()


def merge_key(*parts: str) -> str:
    """A short ``mkey`` a relationship can be MERGEd on (a hash of e.g. a GRN name). It is deliberately
    not indexed: MERGE on an indexed property lets Neo4j's planner pick a relationship-index seek that
    scans every relationship with that value per row (quadratic on a first load); on ``mkey`` it expands
    between the two end nodes instead. (Circuit edges are CREATEd after a purge and need no key.)"""
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def circuit_rows(circuit: Circuit, feature_stats: dict[str, Any] | None = None) -> CircuitRows:
    """Turn a circuit into parameter rows (pure; raises :class:`InputError` on an inconsistent circuit).

    Parameters
    ----------
    circuit
        The aggregated circuit (from :meth:`Circuit.load`).
    feature_stats
        Optional ``{"feat:L:I": {"density": float, "top_genes": [str, ...]}}``: dataset-wide
        feature annotations stored on the Feature nodes.

    Returns
    -------
    CircuitRows
    """
    p = circuit.provenance
    stats = feature_stats or {}
    cid = circuit.id
    model_id = model_node_id(p.model_hash)
    tc_id = transcoder_set_node_id(p.transcoder_hash)

    by_id: dict[str, CircuitNode] = {}
    for n in circuit.nodes:
        if n.id in by_id:
            raise InputError(f"circuit {cid}: node {n.id!r} appears twice; rebuild the circuit file")
        by_id[n.id] = n

    genes: dict[str, dict[str, Any]] = {}
    features: dict[str, dict[str, Any]] = {}
    cell_types: dict[str, dict[str, Any]] = {p.cell_type: {"name": p.cell_type}}
    heads: dict[str, dict[str, Any]] = {}
    key_of: dict[str, tuple[str, str]] = {}  # circuit node id -> (kind, graph key)
    has_gene: list[dict[str, Any]] = []
    has_feature: list[dict[str, Any]] = []
    skipped_nodes = 0

    for n in circuit.nodes:
        if n.kind == "gene":
            symbol = n.gene if n.gene is not None else n.id.split(":", 1)[-1]
            genes[symbol] = {"symbol": symbol}
            key_of[n.id] = ("gene", symbol)
            has_gene.append({"circuit": cid, "symbol": symbol, "influence": _num(n.influence),
                             "frequency": _num(n.frequency)})
        elif n.kind == "feature":
            if n.layer is None or n.index is None:
                raise InputError(f"circuit {cid}: feature node {n.id!r} has no layer/index; rebuild the circuit file")
            fid = feature_node_id(p.transcoder_hash, n.layer, n.index)
            st = stats.get(n.id, {})
            features[fid] = {"id": fid, "layer": int(n.layer), "index": int(n.index), "transcoder_set": tc_id,
                             "density": st.get("density"), "top_genes": st.get("top_genes")}
            key_of[n.id] = ("feature", fid)
            has_feature.append({"circuit": cid, "feature": fid, "influence": _num(n.influence),
                                "frequency": _num(n.frequency), "activation": _num(n.activation)})
        elif n.kind == "target":
            name = n.cell_type if n.cell_type is not None else p.cell_type
            cell_types[name] = {"name": name}
            key_of[n.id] = ("target", name)
        else:  # error / embedding / bias: not part of the stored schema
            skipped_nodes += 1

    edges: dict[str, list[dict[str, Any]]] = {name: [] for name in EDGE_STATEMENTS}
    seen: set[tuple[str, str, str]] = set()
    skipped_edges = 0
    for e in circuit.edges:
        if e.source not in by_id or e.target not in by_id:
            missing = e.source if e.source not in by_id else e.target
            raise InputError(f"circuit {cid}: edge names unknown node {missing!r}; rebuild the circuit file")
        if e.source not in key_of or e.target not in key_of:
            skipped_edges += 1
            continue
        (skind, skey), (tkind, tkey) = key_of[e.source], key_of[e.target]
        rel = EDGE_TYPE_BY_KINDS.get((skind, tkind))
        if rel is None:
            raise InputError(f"circuit {cid}: edge {e.source} -> {e.target} ({skind} -> {tkind}) is not a "
                             "circuit edge type; edges run gene/feature -> feature/target")
        if (rel, skey, tkey) in seen:
            raise InputError(f"circuit {cid}: edge {e.source} -> {e.target} appears twice; rebuild the circuit file")
        seen.add((rel, skey, tkey))
        edges[rel.lower()].append({"circuit": cid, "source": skey, "target": tkey,
                                   "weight": float(e.weight), "frequency": _num(e.frequency)})
        head_stmt = "head_to_feature" if tkind == "feature" else "head_to_cell_type"
        head_seen: set[str] = set()
        for h in e.heads:
            hid = head_node_id(p.model_hash, h.layer, h.head)
            if hid in head_seen:
                raise InputError(f"circuit {cid}: edge {e.source} -> {e.target} lists head {h.layer}.{h.head} "
                                 "twice; rebuild the circuit file")
            head_seen.add(hid)
            heads[hid] = {"id": hid, "model": model_id, "layer": int(h.layer), "head": int(h.head)}
            edges[head_stmt].append({"circuit": cid, "head": hid, "source": skey, "target": tkey,
                                     "weight": float(h.weight), "frequency": _num(h.frequency)})

    nodes = {
        "model": [{"id": model_id, "name": p.model, "architecture": p.architecture, "n_layers": int(p.n_layers),
                   "hash": p.model_hash}],
        "transcoder_set": [{"id": tc_id, "model": model_id, "kind": p.transcoder_kind,
                            "d_features": int(p.d_features), "hash": p.transcoder_hash}],
        "dataset": [{"id": p.dataset_id, "name": p.dataset, "n_cells": int(p.dataset_n_cells),
                     "source": p.dataset_source}],
        "cell_type": list(cell_types.values()),
        "gene": list(genes.values()),
        "feature": list(features.values()),
        "attention_head": list(heads.values()),
    }
    circuit_row = {
        "id": cid, "cell_type": p.cell_type, "dataset": p.dataset_id, "model": model_id, "transcoder_set": tc_id,
        "method": p.method, "thresholds": json.dumps(p.thresholds, sort_keys=True), "n_cells": len(p.cells),
        "cells": json.dumps(p.cells), "created": p.created, "code_version": p.code_version,
        "model_name": p.model, "transcoders": p.transcoders,
    }
    members = {"has_gene": has_gene, "has_feature": has_feature}
    chash = circuit_row["content_hash"] = content_hash(circuit_row, nodes, members, edges)
    return CircuitRows(cid, chash, nodes, circuit_row, members, edges, skipped_nodes, skipped_edges)


def merge_node_rows(rows_list: list[CircuitRows]) -> dict[str, list[dict[str, Any]]]:
    """Union the shared-node rows of several circuits (one row per node key, first wins,
    except that a feature's density/top_genes are taken from any circuit that has them)."""
    merged: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in NODE_STATEMENTS}
    for rows in rows_list:
        for name in NODE_STATEMENTS:
            key = _NODE_KEYS[name]
            bucket = merged[name]
            for row in rows.nodes[name]:
                old = bucket.get(row[key])
                if old is None:
                    bucket[row[key]] = dict(row)
                elif name == "feature":
                    for k in ("density", "top_genes"):
                        if old.get(k) is None and row.get(k) is not None:
                            old[k] = row[k]
    return {name: list(bucket.values()) for name, bucket in merged.items()}


def provenance_dict(circuit: Circuit) -> dict[str, Any]:
    """The circuit's provenance as plain data (for summaries and JSON output)."""
    return asdict(circuit.provenance)


__all__ = [
    "NODE_LABELS", "REL_TYPES", "WEIGHTED_REL_TYPES", "STRUCTURAL_REL_TYPES", "CircuitRows",
    "check_label", "check_rel_type", "circuit_rows", "merge_node_rows", "content_hash",
    "model_node_id", "transcoder_set_node_id", "feature_node_id", "head_node_id",
    "NODE_STATEMENTS", "MEMBER_STATEMENTS", "EDGE_STATEMENTS",
]
