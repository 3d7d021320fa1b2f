"""The per-cell-type pipeline: cell split, file names, outputs, and 2-process sharding."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from circuitdb.attribution.circuit import Circuit
from circuitdb.attribution.pipeline import circuit_filename, split_cells

sys.path.insert(0, str(Path(__file__).parent))
import shard_worker  # noqa: E402

WORKER = Path(__file__).parent / "shard_worker.py"


def test_split_cells_uses_training_cells_for_circuits_and_heldout_for_faithfulness():
    splits = split_cells(shard_worker.cells(), cells_per_type=4)
    assert sorted(splits) == sorted(shard_worker.TYPES)
    for s in splits.values():
        assert len(s.attributed) == 4 and all(c.index % 5 for c in s.attributed)
        assert s.evaluated and all(c.index % 5 == 0 for c in s.evaluated) and s.eval_cells == "heldout"
        assert [c.index for c in s.attributed] == sorted(c.index for c in s.attributed)
    # a type without held-out cells is evaluated on its attributed cells
    lone = [shard_worker.FakeCell("x", 7, "Lonely", ("A",))]
    s = split_cells(lone, 4)["Lonely"]
    assert s.eval_cells == "attributed" and s.evaluated == s.attributed


@pytest.mark.parametrize("name", ["CD4+/CD25 T Reg", "../../etc/passwd", "Dendritic", "", "Zellen: ÄÖÜ", "`}) DETACH DELETE n //"])
def test_circuit_filename_is_safe(name):
    f = circuit_filename(name)
    assert re.fullmatch(r"circuit-[a-z0-9-]+-[0-9a-f]{8}\.json", f)
    assert circuit_filename(name + " ") != f


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(out: Path) -> dict[str, object]:
    files = {}
    for p in sorted(out.iterdir()):
        files[p.name] = json.loads(p.read_text()) if p.suffix == ".json" else p.read_text()
    return files


def test_single_process_outputs(tmp_path):
    shard_worker.main(str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "faithfulness.json" in names and "faithfulness.md" in names and len(names) == 6
    stats = json.loads((tmp_path / "feature_stats.json").read_text())
    assert stats["feat:1:0"]["density"] == 1.0  # the planted feature is active in every cell
    assert all(0 < v["density"] <= 1 and set(v["top_genes"]) <= set(shard_worker.GENES) for v in stats.values())
    # the planted layer-0 feature is fed (weight 8) by each cell's first gene
    assert stats["feat:0:0"]["top_genes"][0] in {c.genes[0] for c in shard_worker.cells()}
    md = (tmp_path / "faithfulness.md").read_text().splitlines()
    assert md[0].startswith("| cell type | ranked by | n |") and len(md) == 2 + 6 and "| CD19+ B | influence | 2 |" in md[2]
    rows = json.loads((tmp_path / "faithfulness.json").read_text())
    assert len(rows) == 3 * 2
    for r in rows:
        assert {"cell_type", "n", "circuit_logit_drop", "random_logit_drop_mean", "ratio", "circuit_acc_drop",
                "random_acc_drop_mean"} <= set(r)
        assert r["beats_random"], r  # planted features (index 0) rank first and hurt most
    c = Circuit.load(tmp_path / circuit_filename("CD19+ B"))
    assert c.provenance.cell_type == "CD19+ B" and len(c.provenance.cells) == 4
    assert any(n.id == "feat:1:0" for n in c.nodes)


@pytest.mark.slow
def test_two_processes_give_the_same_circuits(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    shard_worker.main(str(one))
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(two)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    for rank, p in enumerate(procs):
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
        assert f"rank {rank} world 2 attributed 6" in out  # 12 cells dealt over 2 ranks
    assert _read(one) == _read(two)
