"""`circuitdb circuits` end to end on a tiny random model, random transcoders and a small AnnData."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from attr_fixtures import CELL_TYPES, GENES, random_transcoders, tiny_neox, tiny_tokenizer  # noqa: E402

from circuitdb.attribution.circuit import Circuit  # noqa: E402
from circuitdb.attribution.pipeline import circuit_filename  # noqa: E402
from circuitdb.cli import cli, main  # noqa: E402

TYPES = CELL_TYPES[:3]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import anndata as ad

    root = tmp_path_factory.mktemp("circ")
    tok = tiny_tokenizer()
    model = tiny_neox(dtype=torch.float32)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "model" / "circuitdb.json").write_text(json.dumps({"cell_types": CELL_TYPES, "label_key": "cell_type", "top_k": 8}))
    for layer, tc in random_transcoders(model, dtype=torch.float32).items():
        tc.save(root / "tc" / f"layer{layer}")
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 1.0, size=(24, len(GENES))).astype(np.float32) * (rng.random((24, len(GENES))) > 0.3)
    a = ad.AnnData(x)
    a.var_names = GENES
    a.obs_names = [f"cell{i}" for i in range(24)]
    a.obs["cell_type"] = [TYPES[i % 3] for i in range(24)]
    a.raw = a
    a.write_h5ad(root / "data.h5ad")
    return root


@pytest.mark.slow
def test_circuits_cli_writes_circuits_and_faithfulness(setup):
    out = setup / "out"
    res = CliRunner().invoke(cli, ["--hide-progress", "circuits", str(setup / "data.h5ad"), "--model", str(setup / "model"),
                                   "--transcoders", str(setup / "tc"), "--cells-per-type", "1", "--max-feature-nodes", "24", "--sizes", "2,4",
                                   "--n-random", "3", "--min-features", "4", "--rank-by", "influence", "--rank-by", "effect", "--dataset-name", "tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([circuit_filename(t) for t in TYPES] + ["faithfulness.json", "faithfulness.md", "feature_stats.json"])
    rows = json.loads((out / "faithfulness.json").read_text())
    assert [(r["rank_by"], r["cell_type"], r["n"]) for r in rows] == [
        (rb, t, n) for rb in ("influence", "effect") for t in sorted(TYPES) for n in (2, 4)]
    assert all(r["eval_cells"] == "heldout" and r["n_cells"] >= 1 for r in rows)
    for t in TYPES:
        c = Circuit.load(out / circuit_filename(t))
        p = c.provenance
        assert p.cell_type == t and p.dataset == "tiny" and p.method == "influence"
        assert len(p.cells) == 1 and all(int(cid[4:]) % 5 for cid in p.cells)  # training cells only
        assert p.model_hash and p.transcoder_hash and p.thresholds["node_threshold"] == 0.8
        assert p.architecture == "gpt_neox" and p.n_layers == 2 and p.dataset_n_cells == 24
        assert any(n.kind == "feature" for n in c.nodes) and c.nodes[0].kind == "target"
        assert any(e.target == f"target:{t}" for e in c.edges)


def test_circuits_cli_bad_label_key(setup, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["circuits", str(setup / "data.h5ad"), "--model", str(setup / "model"), "--transcoders", str(setup / "tc"),
              "--label-key", "nope", "--out", str(setup / "bad")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    assert not (setup / "bad").exists()
