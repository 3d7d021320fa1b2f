"""Circuits for every cell type of a dataset: attribute, prune, aggregate, test faithfulness.

Which cells (``holdout_every`` = 5, as everywhere in circuitdb: obs positions
0, 5, 10, ... are held out):

* **attributed** (the circuit): the first ``cells_per_type`` *training* cells of each
  type, in obs order;
* **evaluated** (faithfulness): the first ``cells_per_type`` *held-out* cells of the type;
  a type without held-out cells falls back to its attributed cells, and its rows say
  ``eval_cells = "attributed"``.

Sharding (:func:`dist_context`): with ``WORLD_SIZE > 1`` in the environment (``torchrun``,
or RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set by hand) a gloo process group is
started; cells are dealt round-robin over ranks in a fixed order, every rank
summarises its cells (:func:`circuitdb.attribution.aggregate.summarize_cell`), rank 0
gathers them, restores the fixed order and aggregates, so the circuits are the same as
with one process. Faithfulness is then dealt out by cell type and gathered the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from circuitdb.attribution.aggregate import AggregateOptions, CellSummary, aggregate, summarize_cell
from circuitdb.attribution.circuit import Circuit, Provenance
from circuitdb.attribution.faithfulness import FaithfulnessRow, RankBy, Runner, active_feature_pool, evaluate_faithfulness, top_features
from circuitdb.attribution.graph import AttributionGraph
from circuitdb.attribution.prune import PruneMethod, prune

FAITHFULNESS_FILE = "faithfulness.json"
FEATURE_STATS_FILE = "feature_stats.json"
CIRCUIT_PREFIX = "circuit-"


class CellLike(Protocol):
    """What the pipeline needs of a cell (:class:`circuitdb.loaders.sentences.CellSentence`)."""

    cell_id: str
    index: int
    label: str | None


@dataclass(frozen=True)
class CircuitsConfig:
    """Options of :func:`build_circuits` and :func:`run_faithfulness` (defaults as the CLI)."""

    cells_per_type: int = 32
    method: PruneMethod = "influence"
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    branches: int = 5
    max_paths: int = 50
    max_length: int = 8
    aggregate: AggregateOptions = field(default_factory=AggregateOptions)
    sizes: tuple[int, ...] = (10, 25, 50)
    n_random: int = 20
    holdout_every: int = 5
    seed: int = 0
    rank_by: RankBy = "influence"

    def __post_init__(self) -> None:
        if self.cells_per_type < 1:
            raise ValueError(f"cells_per_type must be >= 1, got {self.cells_per_type}")
        if self.holdout_every < 2:
            raise ValueError(f"holdout_every must be >= 2, got {self.holdout_every}")

    def thresholds(self) -> dict[str, float]:
        """What goes into a circuit's provenance."""
        t = {"node_threshold": self.node_threshold, "edge_threshold": self.edge_threshold} if self.method == "influence" else {
            "branches": float(self.branches), "max_paths": float(self.max_paths), "max_length": float(self.max_length)}
        a = self.aggregate
        t.update(keep_fraction=a.keep_fraction, min_features=float(a.min_features), min_frequency=a.min_frequency,
                 max_features=float(a.max_features or 0), max_genes=float(a.max_genes or 0), head_min_share=a.head_min_share,
                 cells_per_type=float(self.cells_per_type), holdout_every=float(self.holdout_every))
        return t


@dataclass
class CellSplit:
    """The cells of one type: ``attributed`` build the circuit, ``evaluated`` test it."""

    cell_type: str
    attributed: list[Any]
    evaluated: list[Any]
    eval_cells: str  # "heldout" or "attributed"


def split_cells(cells: Sequence[Any], cells_per_type: int, holdout_every: int = 5) -> dict[str, CellSplit]:
    """Group labelled cells by type (sorted by name) and pick attributed / evaluated cells."""
    by_type: dict[str, tuple[list[Any], list[Any]]] = {}
    for c in sorted(cells, key=lambda c: c.index):
        if c.label is None:
            continue
        train, held = by_type.setdefault(str(c.label), ([], []))
        (held if c.index % holdout_every == 0 else train).append(c)
    out: dict[str, CellSplit] = {}
    for t in sorted(by_type):
        train, held = by_type[t]
        attributed = train[:cells_per_type] or held[:cells_per_type]
        evaluated = held[:cells_per_type]
        out[t] = CellSplit(t, attributed, evaluated or attributed, "heldout" if evaluated else "attributed")
    return out


def circuit_filename(cell_type: str) -> str:
    """``circuit-{slug}-{hash8}.json``: safe for any cell-type name, unique per name."""
    slug = re.sub(r"[^a-z0-9]+", "-", cell_type.lower()).strip("-")[:40] or "type"
    return f"{CIRCUIT_PREFIX}{slug}-{hashlib.sha1(cell_type.encode('utf-8')).hexdigest()[:8]}.json"


# -- distribution ----------------------------------------------------------------------
@dataclass
class DistContext:
    """This process's place: ``rank`` of ``world`` (1 and 0 without torch.distributed)."""

    rank: int = 0
    world: int = 1

    def shard(self, n: int) -> list[int]:
        return list(range(self.rank, n, self.world))

    def gather(self, items: list[Any]) -> list[Any] | None:
        """All ranks' lists concatenated on rank 0 (``None`` elsewhere)."""
        if self.world == 1:
            return list(items)
        import torch.distributed as dist

        out: list[Any] = [None] * self.world if self.rank == 0 else None  # type: ignore[assignment]
        dist.gather_object(items, out, dst=0)
        if self.rank != 0:
            return None
        return [x for part in out for x in part]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


@contextmanager
def dist_context() -> Iterator[DistContext]:
    """Join a gloo process group when ``WORLD_SIZE > 1`` is set; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        yield DistContext()
        return
    import torch.distributed as dist

    started = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size())
    finally:
        if started:
            dist.barrier()
            dist.destroy_process_group()


# -- the pipeline --------------------------------------------------------------------------
AttributeFn = Callable[[Any, str], AttributionGraph]
ProvenanceFn = Callable[[str, list[str]], Provenance]
RunnerFactory = Callable[[str, list[Any]], Runner]


def summarize_one(graph: AttributionGraph, cell_type: str, cell_id: str, cfg: CircuitsConfig) -> CellSummary:
    """Prune one cell's graph as configured and collapse it."""
    res = prune(graph, cfg.method, node_threshold=cfg.node_threshold, edge_threshold=cfg.edge_threshold,
                branches=cfg.branches, max_paths=cfg.max_paths, max_length=cfg.max_length)
    return summarize_cell(graph, res, cell_type, cell_id)


class CircuitsResult(NamedTuple):
    """What :func:`build_circuits` returns (on every rank).

    circuits: one per cell type; pools: each type's active features (union over its
    attributed cells), for random ablations; feature_stats: see :func:`feature_stats`.
    """

    circuits: dict[str, Circuit]
    pools: dict[str, list[tuple[int, int]]]
    feature_stats: dict[str, dict[str, Any]]


def feature_stats(summaries: Sequence[CellSummary], circuits: dict[str, Circuit], top_n: int = 10) -> dict[str, dict[str, Any]]:
    """``{feat:L:I: {density, top_genes}}`` for every feature in some circuit.

    ``density``: fraction of all attributed cells (every type) in which the feature is
    active at some position. ``top_genes``: the genes with the largest summed positive
    gene -> feature edge weight over all circuits (at most ``top_n``, ties by symbol).
    """
    n = max(len(summaries), 1)
    active: dict[tuple[int, int], int] = {}
    for s in summaries:
        for f in s.active_features:
            active[f] = active.get(f, 0) + 1
    gene_w: dict[str, dict[str, float]] = {}
    in_circuit: dict[str, tuple[int, int]] = {}
    for c in circuits.values():
        kinds = {x.id: x for x in c.nodes}
        for x in c.nodes:
            if x.kind == "feature" and x.layer is not None and x.index is not None:
                in_circuit[x.id] = (int(x.layer), int(x.index))
        for e in c.edges:
            src, tgt = kinds.get(e.source), kinds.get(e.target)
            if src is not None and tgt is not None and src.kind == "gene" and tgt.kind == "feature":
                g = gene_w.setdefault(e.target, {})
                g[src.gene or e.source] = g.get(src.gene or e.source, 0.0) + e.weight
    out: dict[str, dict[str, Any]] = {}
    for fid in sorted(in_circuit):
        ranked = sorted(((w, g) for g, w in gene_w.get(fid, {}).items() if w > 0), key=lambda t: (-t[0], t[1]))
        out[fid] = {"density": active.get(in_circuit[fid], 0) / n, "top_genes": [g for _, g in ranked[:top_n]]}
    return out


def build_circuits(
    splits: dict[str, CellSplit],
    attribute_fn: AttributeFn,
    provenance_fn: ProvenanceFn,
    cfg: CircuitsConfig,
    ctx: DistContext | None = None,
    *,
    callback: Callable[[int], None] | None = None,
) -> CircuitsResult:
    """Attribute this rank's share of cells, gather, aggregate per type.

    Parameters
    ----------
    splits
        From :func:`split_cells`.
    attribute_fn
        ``attribute_fn(cell, cell_type) -> AttributionGraph``.
    provenance_fn
        ``provenance_fn(cell_type, cell_ids) -> Provenance``.
    cfg
        Pruning, aggregation and selection options.
    ctx
        Distribution context (default: one process).
    callback
        Called with 1 after each of this rank's cells.

    Returns
    -------
    CircuitsResult
        On every rank.
    """
    ctx = ctx or DistContext()
    work = [(t, c) for t in sorted(splits) for c in splits[t].attributed]
    mine: list[tuple[int, CellSummary]] = []
    for i in ctx.shard(len(work)):
        t, cell = work[i]
        graph = attribute_fn(cell, t)
        mine.append((i, summarize_one(graph, t, str(cell.cell_id), cfg)))
        del graph
        if callback is not None:
            callback(1)
    gathered = ctx.gather(mine)
    result: CircuitsResult | None = None
    if gathered is not None:
        gathered.sort(key=lambda x: x[0])
        per_type: dict[str, list[CellSummary]] = {}
        for _, s in gathered:
            per_type.setdefault(s.cell_type, []).append(s)
        circuits: dict[str, Circuit] = {}
        pools: dict[str, list[tuple[int, int]]] = {}
        for t in sorted(per_type):
            sums = per_type[t]
            circuits[t] = aggregate(sums, provenance_fn(t, [s.cell_id for s in sums]), cfg.aggregate)
            pools[t] = active_feature_pool([s.active_features for s in sums])
        result = CircuitsResult(circuits, pools, feature_stats([s for _, s in gathered], circuits))
    return ctx.broadcast(result)


def run_faithfulness(
    circuits: dict[str, Circuit],
    pools: dict[str, list[tuple[int, int]]],
    splits: dict[str, CellSplit],
    make_runner: RunnerFactory,
    cfg: CircuitsConfig,
    ctx: DistContext | None = None,
    *,
    callback: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Circuit vs random ablations for every type (dealt out over ranks by type).

    Returns the rows (dicts, sorted by cell type then n) on every rank.
    """
    ctx = ctx or DistContext()
    types = sorted(circuits)
    mine: list[tuple[int, list[FaithfulnessRow]]] = []
    for i in ctx.shard(len(types)):
        t = types[i]
        cells = splits[t].evaluated
        rows = evaluate_faithfulness(make_runner(t, cells), top_features(circuits[t], by=cfg.rank_by), pools[t], cell_type=t,
                                     sizes=cfg.sizes, n_random=cfg.n_random, seed=cfg.seed, callback=callback)
        mine.append((i, rows))
    gathered = ctx.gather(mine)
    out: list[dict[str, Any]] | None = None
    if gathered is not None:
        gathered.sort(key=lambda x: x[0])
        out = []
        for i, rows in gathered:
            for r in rows:
                d = r.to_dict()
                d["eval_cells"] = splits[types[i]].eval_cells
                d["rank_by"] = cfg.rank_by
                d["circuit_file"] = circuit_filename(types[i])
                out.append(d)
    return ctx.broadcast(out)


def faithfulness_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The faithfulness rows as a Markdown table (logit drops are means over the evaluated cells)."""
    lines = [
        "| cell type | ranked by | n | cells | circuit logit drop | random logit drop (mean ± sd) | ratio | circuit acc drop | random acc drop | random ≥ circuit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = ("∞" if r["circuit_logit_drop"] > 0 else "n/a") if r["ratio"] is None else f"{r['ratio']:.2f}"
        cells = f"{r['n_cells']}" + ("" if r.get("eval_cells", "heldout") == "heldout" else " (attributed)")
        n = str(r["n"]) if r["n_ablated"] == r["n"] else f"{r['n']} ({r['n_ablated']})"
        lines.append(
            f"| {r['cell_type']} | {r.get('rank_by', 'influence')} | {n} | {cells} | "
            f"{r['circuit_logit_drop']:.3f} | {r['random_logit_drop_mean']:.3f} ± {r['random_logit_drop_std']:.3f} | {ratio} | "
            f"{r['circuit_acc_drop']:+.2f} | {r['random_acc_drop_mean']:+.2f} | {r['frac_random_ge']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _write_json(path: Path, data: Any) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def write_outputs(out_dir: str | Path, circuits: dict[str, Circuit], rows: list[dict[str, Any]] | None,
                  stats: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Write (each atomically) one ``circuit-*.json`` per type, ``feature_stats.json``,
    ``faithfulness.json`` and ``faithfulness.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [circuits[t].save(out / circuit_filename(t)) for t in sorted(circuits)]
    if stats is not None:
        paths.append(_write_json(out / FEATURE_STATS_FILE, stats))
    if rows is not None:
        paths.append(_write_json(out / FAITHFULNESS_FILE, rows))
        md = out / "faithfulness.md"
        tmp = out / "faithfulness.md.tmp"
        tmp.write_text(faithfulness_markdown(rows))
        tmp.replace(md)
        paths.append(md)
    return paths
