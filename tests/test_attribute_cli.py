"""``circuitdb attribute`` on a tiny saved model, transcoders and AnnData; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attr_fixtures import random_transcoders, tiny_neox, write_cli_inputs
from circuitdb.attribution.graph import AttributionGraph
from circuitdb.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):  # noqa: ANN001, ANN201
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("attr_cli")
    write_cli_inputs(root, top_k=6, n_features=16, k=3)
    for layer, tc in random_transcoders(tiny_neox(d=16), dtype=torch.float32).items():
        tc.save(root / "tc_other" / f"layer_{layer}")
    yield root
    torch.set_num_threads(n)


def _run(args: list[str], capsys) -> tuple[int, str]:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(["--hide-progress", *args])
    return int(exc.value.code or 0), capsys.readouterr().err


def _args(root: Path, *extra: str, tc: str = "tc", cell: str = "cell1") -> list[str]:
    return ["attribute", "--model", str(root / "model"), "--transcoders", str(root / tc), str(root / "data.h5ad"),
            "--cell", cell, "--out", str(root / "out" / f"{cell}.pt"), "--head-split-nodes", "2", *extra]


def test_attribute_cli_writes_a_graph(setup, capsys) -> None:  # noqa: ANN001
    code, err = _run(_args(setup, "--contrast", "Dendritic", "--float64", "--max-feature-nodes", "20"), capsys)
    assert code == 0, err
    g = AttributionGraph.load(setup / "out" / "cell1.pt")
    rows = [i for i, nd in enumerate(g.nodes) if nd.kind in ("feature", "target")]
    assert len(rows) == 21 and g.adjacency.dtype == torch.float64 and g.values is not None
    assert torch.allclose(g.adjacency[rows].sum(1), g.values[rows], rtol=1e-6, atol=1e-9)
    assert g.metadata["cell_id"] == "cell1" and g.metadata["label"] == "CD56+ NK"
    assert g.metadata["target"]["label"] == "CD56+ NK" and g.metadata["target"]["contrast"] == "Dendritic"
    assert sum(nd.kind == "gene" for nd in g.nodes) == 6  # top_k from the model card
    assert not (setup / "out" / "cell1.pt.tmp").exists()


@pytest.mark.parametrize("extra,cell,tc,message", [
    ((), "cell99", "tc", "cell 'cell99' is not in the data"),
    (("--contrast", "Neuron"), "cell1", "tc", "not among the model's answers"),
    ((), "cell1", "tc_other", "another model"),
])
def test_attribute_cli_bad_input(setup, capsys, extra, cell, tc, message) -> None:  # noqa: ANN001
    code, err = _run(_args(setup, *extra, tc=tc, cell=cell), capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("device,message", [
    ("gpu0", "unknown --device 'gpu0'"),
    ("mps" if torch.cuda.is_available() else "cuda", "available here; use --device cpu"),
])
def test_attribute_cli_bad_device(setup, capsys, device, message) -> None:  # noqa: ANN001
    """A device this machine lacks is a one-line error before any data is read, and nothing is written."""
    out = setup / "out" / f"device-{device}.pt"
    code, err = _run(_args(setup, "--device", device, "--out", str(out)), capsys)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_attribute_cli_prompt_too_long(setup, capsys, tmp_path) -> None:  # noqa: ANN001
    import shutil

    short = tmp_path / "model"
    shutil.copytree(setup / "model", short)
    cfg = json.loads((short / "config.json").read_text())
    cfg["max_position_embeddings"] = 24
    (short / "config.json").write_text(json.dumps(cfg))
    args = _args(setup)
    args[2] = str(short)
    code, err = _run(args, capsys)
    assert code == 2 and "context is 24" in err
