"""Run the circuits pipeline on synthetic cells; used by test_circuits_pipeline (1 or 2 processes).

usage: python tests/shard_worker.py OUT_DIR   (RANK / WORLD_SIZE / MASTER_* in the environment)
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass

import torch

from circuitdb.attribution.aggregate import AggregateOptions, make_provenance
from circuitdb.attribution.faithfulness import Scores
from circuitdb.attribution.pipeline import CircuitsConfig, build_circuits, dist_context, run_faithfulness, split_cells, write_outputs
from circuitdb.attribution.synthetic import random_graph

GENES = ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY", "CD14", "FCGR3A", "PPBP"]
TYPES = ["CD19+ B", "CD4+/CD25 T Reg", "Dendritic"]


@dataclass
class FakeCell:
    cell_id: str
    index: int
    label: str
    genes: tuple[str, ...]


def cells() -> list[FakeCell]:
    out = []
    for i in range(30):
        rot = i % len(GENES)
        out.append(FakeCell(f"c{i:03d}", i, TYPES[i % 3], tuple(GENES[rot:] + GENES[:rot])[:6]))
    return out


CALLS: list[str] = []


def attribute_fn(cell: FakeCell, cell_type: str):
    CALLS.append(cell.cell_id)
    return random_graph(zlib.crc32(cell.cell_id.encode()), cell.genes, label=cell_type, n_layers=2, cell_id=cell.cell_id)


def provenance_fn(cell_type: str, ids: list[str]):
    return make_provenance(cell_type=cell_type, cells=ids, method="influence", thresholds={"node_threshold": 0.8},
                           model="synthetic", model_hash="0" * 16, transcoders="synthetic", transcoder_hash="1" * 16,
                           dataset="fake", dataset_id="fake", created="2026-01-01T00:00:00+00:00", version="test")


def make_runner(cell_type: str, eval_cells: list[FakeCell]):
    n = len(eval_cells)

    def run(feats):
        drop = sum((6.0 if i == 0 else 1.0) for _, idx in (feats or {}).items() for i in idx)
        logit = torch.full((n,), 10.0 - drop)
        return Scores(logit, logit > 5)

    return run


def main(out_dir: str) -> None:
    cfg = CircuitsConfig(cells_per_type=4, aggregate=AggregateOptions(min_features=5), sizes=(2, 4), n_random=5)
    splits = split_cells(cells(), cfg.cells_per_type)
    with dist_context() as ctx:
        res = build_circuits(splits, attribute_fn, provenance_fn, cfg, ctx)
        rows = run_faithfulness(res.circuits, res.pools, splits, make_runner, cfg, ctx)
        if ctx.rank == 0:
            write_outputs(out_dir, res.circuits, rows, res.feature_stats)
        print(f"rank {ctx.rank} world {ctx.world} attributed {len(CALLS)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
