"""Write circuits into the graph: batched ``UNWIND`` statements, idempotent and resumable.

Node rows go as ``$rows``; relationship batches go columnar (:func:`columns`), their end nodes as
the element ids the node MERGEs returned, with up to ``workers`` transactions in flight.

How a rerun stays exact:

* shared nodes (genes, features, heads, ...) and Circuit nodes are MERGEd on deterministic ids
  (:mod:`circuitdb.graph.rows`), so writing them twice changes nothing;
* a circuit's relationships (memberships, edges, head rows) are CREATEd, which is several times
  faster than MERGE on a relationship (no expand between the end nodes per row, which on the
  embedded ArcadeDB runs from the high-degree side). A relationship is therefore only ever
  created for a circuit whose old relationships are gone: before writing a circuit that is
  already stored but not complete with the same content hash (an interrupted export, or a
  rebuilt circuit), the writer deletes all of its relationships (``purge_circuit_edges``,
  through the relationship index on ``circuit``);
* each batch is its own transaction, so a kill leaves whole batches;
* circuits are written in groups (several circuits' rows share each batch, so small circuits do
  not cost a round trip per statement each): the group's Circuit nodes are written with
  ``complete = false`` first and set ``complete = true`` (with their content hash) only after
  every relationship batch of the group has been written (the next group's batches may already be
  in flight). A rerun skips complete circuits whose hash matches and purges
  and rewrites every other stored one.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.attribution.circuit import Circuit
from circuitdb.errors import InputError
from circuitdb.graph.rows import (
    EDGE_STATEMENTS,
    MEMBER_STATEMENTS,
    NODE_STATEMENTS,
    CircuitRows,
    circuit_rows,
    merge_node_rows,
)

#: Optional sidecar in a circuits folder: ``{"feat:L:I": {"density": float, "top_genes": [...]}}``.
FEATURE_STATS_FILE = "feature_stats.json"

ProgressFn = Callable[[int, int, str], None]
"""``on_progress(advance, total, status)``: rows just written, rows planned in all, a short status."""


class GraphRunner(Protocol):
    """What the writer and the queries need from a backend: run one statement with parameters."""

    def run(self, statement: CypherStatement, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass
class ExportSummary:
    """What an export did. ``rows`` counts rows sent per write statement (a rerun sends only the rows
    of circuits it (re)writes); ``totals`` are the graph's node/relationship counts after it."""

    circuits_written: list[str] = field(default_factory=list)
    circuits_skipped: list[str] = field(default_factory=list)
    circuits_replaced: list[str] = field(default_factory=list)
    files_ignored: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    skipped_nodes: int = 0
    skipped_edges: int = 0
    relationships_written: int = 0
    seconds: float = 0.0
    totals: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "circuits": {"written": self.circuits_written, "skipped_unchanged": self.circuits_skipped,
                         "replaced": self.circuits_replaced},
            "files_ignored": self.files_ignored,
            "rows": self.rows,
            "relationships_written": self.relationships_written,
            "skipped": {"nodes": self.skipped_nodes, "edges": self.skipped_edges},
            "seconds": round(self.seconds, 3),
            "totals": self.totals,
        }


def _is_circuit_json(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("metadata"), dict) and "circuitdb" in data["metadata"]


def find_circuit_files(circuits_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """Circuit JSON files under a folder (recursive, sorted) and the JSON files that are not circuits."""
    root = Path(circuits_dir)
    if not root.is_dir():
        raise InputError(f"circuits folder {root} does not exist; pass the folder the attribution step wrote")
    circuits, other = [], []
    for path in sorted(root.rglob("*.json")):
        if path.name == FEATURE_STATS_FILE:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not readable JSON ({exc.__class__.__name__}); rebuild or remove it") from None
        (circuits if _is_circuit_json(data) else other).append(path)
    return circuits, other


def load_circuits(paths: Iterable[Path]) -> list[Circuit]:
    """Load circuit files, one line of error naming the file when one is malformed."""
    out = []
    for path in paths:
        try:
            out.append(Circuit.load(path))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is not a valid circuit file ({exc.__class__.__name__}: {exc}); "
                             "rebuild it with the attribution step") from None
    return out


def load_feature_stats(circuits_dir: str | Path) -> dict[str, Any]:
    path = Path(circuits_dir) / FEATURE_STATS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc.__class__.__name__}); fix or remove it") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must map feature ids to {{density, top_genes}}; fix or remove it")
    return data


#: How each relationship statement finds its end nodes: (column sent, row key, node kind) for the
#: element-id columns, and the row keys that are also stored on the relationship (so sent as they are).
_END_NODES: dict[str, tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]] = {
    "has_gene": ((("t", "symbol", "gene"),), ()),
    "has_feature": ((("t", "feature", "feature"),), ()),
    "gene_to_feature": ((("s", "source", "gene"), ("t", "target", "feature")), ()),
    "feature_to_feature": ((("s", "source", "feature"), ("t", "target", "feature")), ()),
    "feature_to_cell_type": ((("s", "source", "feature"), ("t", "target", "cell_type")), ()),
    "gene_to_cell_type": ((("s", "source", "gene"), ("t", "target", "cell_type")), ()),
    "head_to_feature": ((("s", "head", "attention_head"), ("t", "target", "feature")), ("source", "target")),
    "head_to_cell_type": ((("s", "head", "attention_head"), ("t", "target", "cell_type")), ("source", "target")),
}

#: Node write statements that return their nodes' element ids (``eids``); a node kind is named by its statement.
_ELEMENT_ID_STATEMENTS = ("gene", "feature", "attention_head", "cell_type")

ElementIds = dict[str, dict[str, str]]
"""Node kind (its write statement) -> node key -> element id (as the node MERGEs of one export returned them)."""


def columns(name: str, rows: Sequence[dict[str, Any]], eids: ElementIds) -> dict[str, list[Any]]:
    """A batch of rows of relationship statement ``name`` as its columnar parameters: one list per
    column, row ``i`` across them; the ``circuit`` key as the batch's distinct circuit ids
    (``circuits``) plus one index per row (``ci``); end nodes as element ids (``s``, ``t``) from
    ``eids`` (what the node MERGEs returned). Raises :class:`InputError` when an end node was not looked up."""
    ends, kept = _END_NODES[name]
    end_keys = {key for _, key, _ in ends}
    out: dict[str, list[Any]] = {}
    if rows:
        for k in rows[0]:
            if k != "circuit" and (k not in end_keys or k in kept):
                out[k] = [r[k] for r in rows]
    for col, key, kind in ends:
        table = eids[kind]
        try:
            out[col] = [table[r[key]] for r in rows]
        except KeyError as exc:
            raise InputError(f"write/{name}: {kind} {exc.args[0]!r} is not in the graph (shared nodes missing); "
                             "rerun the export") from None
    index: dict[str, int] = {}
    out["ci"] = [index.setdefault(r["circuit"], len(index)) for r in rows]
    out["circuits"] = list(index)
    return out


class _Batcher:
    """Sends batches, on up to ``workers`` connections at once (Neo4j runs concurrent transactions on
    separate cores, and the next batch is encoded while one is on the server). Progress is reported
    from the calling thread, in submission order. A failed batch is raised once the batches already
    in flight have finished (queued ones are cancelled), so nothing is being written when the error
    surfaces. ``tag`` marks the group the batches submitted now belong to (see :meth:`drain`)."""

    def __init__(self, runner: GraphRunner, batch_size: int, total: int, on_progress: ProgressFn | None,
                 workers: int = 1) -> None:
        self.runner, self.batch_size, self.total, self.on_progress = runner, batch_size, total, on_progress
        self.rows: dict[str, int] = {}
        self.eids: ElementIds = {name: {} for name in _ELEMENT_ID_STATEMENTS}
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="circuitdb-export") if workers > 1 else None
        self._pending: deque[tuple[str, int, str, int, Future[list[dict[str, Any]]]]] = deque()
        self.tag = 0

    def write(self, name: str, rows: Sequence[dict[str, Any]], status: str, *,
              eids: ElementIds | None = None, split: bool = False) -> None:
        """Send ``rows`` in batches: as ``$rows``, or as :func:`columns` when ``eids`` are given.
        ``split`` cuts the rows into at least one batch per worker (rows that may be written together)."""
        text = catalog.load("write", name)
        size = min(self.batch_size, -(-len(rows) // self.workers)) if split and rows else self.batch_size
        for i in range(0, len(rows), size):
            batch = rows[i:i + size]
            params = columns(name, batch, eids) if eids is not None else {"rows": list(batch)}
            if self._pool is None:
                self._done(name, len(batch), status, self.runner.run(text, params))
                continue
            # at most two batches per writer not finished (one running, one queued); finished ones are
            # reported in order as soon as every earlier one is
            while len(running := [e[-1] for e in self._pending if not e[-1].done()]) >= 2 * self.workers:
                wait(running, return_when=FIRST_COMPLETED)
                self._reap_done()
            self._pending.append((name, len(batch), status, self.tag,
                                  self._pool.submit(self.runner.run, text, params)))

    def write_now(self, name: str, rows: Sequence[dict[str, Any]], status: str) -> None:
        """Write ``rows`` from the calling thread, before returning (batches in flight keep going)."""
        text = catalog.load("write", name)
        for i in range(0, len(rows), self.batch_size):
            batch = rows[i:i + self.batch_size]
            self._done(name, len(batch), status, self.runner.run(text, {"rows": list(batch)}))

    def flush(self) -> None:
        """Wait for every batch in flight."""
        while self._pending:
            self._reap()

    def drain(self, tag: int) -> None:
        """Wait for the batches in flight that were submitted with tags up to ``tag`` (later ones keep going)."""
        while self._pending and self._pending[0][3] <= tag:
            self._reap()

    def close(self) -> None:
        if self._pool is not None:
            for *_, fut in self._pending:
                fut.cancel()
            wait([entry[-1] for entry in self._pending])
            self._pending.clear()
            self._pool.shutdown(wait=True)

    def _reap_done(self) -> None:
        """Raise the error of any failed batch; report the finished ones at the front, in order."""
        for entry in self._pending:
            if entry[-1].done() and entry[-1].exception() is not None:
                self.close()
                raise entry[-1].exception()  # type: ignore[misc]
        while self._pending and self._pending[0][-1].done():
            self._reap()

    def _reap(self) -> None:
        name, n_rows, status, _, fut = self._pending[0]
        try:
            result = fut.result()
        except BaseException:
            self.close()
            raise
        self._pending.popleft()
        self._done(name, n_rows, status, result)

    def _done(self, name: str, n_rows: int, status: str, result: list[dict[str, Any]]) -> None:
        n = int(result[0]["n"]) if result else 0
        if n != n_rows:
            self.close()
            raise InputError(f"write/{name}: {n_rows - n} of {n_rows} rows found no end node "
                             "(shared nodes missing); rerun the export")
        self.rows[name] = self.rows.get(name, 0) + n_rows
        if name in _ELEMENT_ID_STATEMENTS:
            self.eids[name].update(result[0]["eids"])
        if self.on_progress is not None:
            self.on_progress(n_rows, self.total, status)


def _groups(todo: Sequence[CircuitRows], group_rows: int) -> list[list[CircuitRows]]:
    """Consecutive circuits whose rows add up to about ``group_rows`` (a circuit is never split)."""
    groups: list[list[CircuitRows]] = []
    current: list[CircuitRows] = []
    size = 0
    for b in todo:
        current.append(b)
        size += b.n_rows()
        if size >= group_rows:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def export_circuits(
    runner: GraphRunner,
    circuits: Sequence[Circuit],
    *,
    batch_size: int = 5000,
    feature_stats: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    purge_batch: int = 10000,
    group_rows: int | None = None,
    workers: int | None = None,
) -> ExportSummary:
    """Write circuits into the graph (schema applied beforehand by ``circuitdb db init``).

    Parameters
    ----------
    runner
        A backend with ``run(statement, params) -> list[dict]``.
    circuits
        The circuits to write; their ids must be distinct.
    batch_size
        Rows per ``UNWIND`` transaction.
    feature_stats
        Optional dataset-wide feature annotations (see :data:`FEATURE_STATS_FILE`).
    on_progress
        Called after each batch with ``(rows_written, rows_total, status)``.
    purge_batch
        Relationships deleted per transaction when a stored circuit is rewritten.
    group_rows
        Rows of consecutive circuits written together before they are marked complete
        (default ``4 * batch_size``); a killed export rewrites at most the groups in flight.
    workers
        Batches in flight at once, each its own transaction on its own connection. Default
        :func:`default_workers`: 2 on a Neo4j server, 1 on the embedded default (whose
        concurrent writers would conflict on shared nodes).

    Returns
    -------
    ExportSummary
    """
    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be at least 1; pass --batch-size 5000")
    workers = default_workers(runner) if workers is None else workers
    if workers < 1:
        raise InputError(f"workers {workers} must be at least 1; pass --workers 1 or 2")
    if workers > 1 and getattr(runner, "backend", None) == "arcadedb":
        raise InputError(f"the embedded default takes one writer at a time (concurrent writers conflict on "
                         f"shared nodes), not {workers}; drop --workers or export into a Neo4j server")
    t0 = time.perf_counter()
    summary = ExportSummary()
    built: list[CircuitRows] = []
    seen: set[str] = set()
    for c in circuits:
        rows = circuit_rows(c, feature_stats)
        if rows.circuit_id in seen:
            raise InputError(f"two circuit files have the same circuit id {rows.circuit_id!r}; remove the duplicate")
        seen.add(rows.circuit_id)
        built.append(rows)

    status_text = catalog.load("write", "circuit_status")
    stored = {r["id"]: r for r in runner.run(status_text, {"ids": [b.circuit_id for b in built]})}
    todo: list[CircuitRows] = []
    for b in built:
        s = stored.get(b.circuit_id)
        if s is not None and s.get("complete") and s.get("content_hash") == b.content_hash:
            summary.circuits_skipped.append(b.circuit_id)
            continue
        if s is not None and s.get("content_hash") != b.content_hash:
            summary.circuits_replaced.append(b.circuit_id)
        todo.append(b)

    node_rows = merge_node_rows(todo)
    total = sum(len(v) for v in node_rows.values()) + sum(b.n_rows() - sum(len(v) for v in b.nodes.values())
                                                          for b in todo)
    batcher = _Batcher(runner, batch_size, total, on_progress, workers)
    try:
        # shared nodes, in dependency order (a statement may MATCH nodes an earlier one wrote); the
        # batches of one statement MERGE distinct keys and are in flight together
        for name in NODE_STATEMENTS:
            batcher.write(name, node_rows[name], f"nodes: {name}", split=True)
            batcher.flush()
        eids = batcher.eids  # the element ids the node MERGEs returned
        purge_text = catalog.load("write", "purge_circuit_edges")
        complete_text = catalog.load("write", "circuit_complete")
        previous: list[CircuitRows] = []
        for tag, group in enumerate(_groups(todo, group_rows or 4 * batch_size), start=1):
            label = group[0].circuit["cell_type"] + (f" +{len(group) - 1}" if len(group) > 1 else "")
            # written before the group's relationships, which MATCH the Circuit nodes
            batcher.write_now("circuit", [b.circuit for b in group], f"circuits: {label}")
            for b in group:
                if b.circuit_id in stored:  # stored but not complete with this content: drop what it has
                    while True:
                        res = runner.run(purge_text, {"circuit": b.circuit_id, "limit": purge_batch})
                        if not res or int(res[0]["n"]) == 0:
                            break
            batcher.tag = tag
            for name in MEMBER_STATEMENTS + EDGE_STATEMENTS:
                rows = [r for b in group for r in (b.members.get(name) or b.edges.get(name) or [])]
                batcher.write(name, rows, f"{label}: {name}", eids=eids)
            # the previous group is complete once its batches are; this group's keep the writers busy
            batcher.drain(tag - 1)
            _mark_complete(runner, complete_text, previous, summary)
            previous = group
        batcher.flush()
        _mark_complete(runner, complete_text, previous, summary)
    finally:
        batcher.close()

    summary.rows = batcher.rows
    rel_statements = set(MEMBER_STATEMENTS) | set(EDGE_STATEMENTS)
    summary.relationships_written = sum(n for k, n in batcher.rows.items() if k in rel_statements)
    summary.seconds = time.perf_counter() - t0
    summary.totals = graph_totals(runner)
    return summary


def default_workers(runner: GraphRunner) -> int:
    """Concurrent write transactions :func:`export_circuits` uses by default: 2 on a Neo4j server
    (its transactions run on separate cores; relationship locks are taken per node, and the driver
    retries a transaction that deadlocks), 1 on the embedded ArcadeDB and anything else."""
    return 2 if getattr(runner, "backend", None) == "neo4j" else 1


def _mark_complete(runner: GraphRunner, complete_text: CypherStatement, group: list[CircuitRows],
                   summary: ExportSummary) -> None:
    """Mark ``group``'s circuits complete (every batch of theirs has been written)."""
    if not group:
        return
    runner.run(complete_text, {"rows": [{"id": b.circuit_id, "n_edges": b.n_edges(), "n_nodes": b.n_members()}
                                        for b in group]})
    for b in group:
        summary.circuits_written.append(b.circuit_id)
        summary.skipped_nodes += b.skipped_nodes
        summary.skipped_edges += b.skipped_edges


def graph_totals(runner: GraphRunner) -> dict[str, dict[str, int]]:
    """Nodes per label and relationships per type currently in the graph."""
    out: dict[str, dict[str, int]] = {"nodes": {}, "relationships": {}}
    for r in runner.run(catalog.load("library", "graph_counts"), {}):
        out["nodes" if r["kind"] == "node" else "relationships"][r["name"]] = int(r["n"])
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def export_dir(
    runner: GraphRunner,
    circuits_dir: str | Path,
    *,
    batch_size: int = 5000,
    on_progress: ProgressFn | None = None,
) -> ExportSummary:
    """Export every circuit file under ``circuits_dir`` (plus its optional feature_stats.json)."""
    paths, other = find_circuit_files(circuits_dir)
    if not paths:
        raise InputError(f"no circuit files (*.json with metadata.circuitdb) under {circuits_dir}; "
                         "run the attribution step first or pass its output folder")
    circuits = load_circuits(paths)
    summary = export_circuits(runner, circuits, batch_size=batch_size,
                              feature_stats=load_feature_stats(circuits_dir), on_progress=on_progress)
    summary.files_ignored = [str(p) for p in other]
    return summary
