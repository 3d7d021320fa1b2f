"""``circuitdb interpret`` end to end on a tiny random NeoX model + random transcoders + pbmc68k cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from backend_helpers import cli_env, isolated_env
import torch


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circuitdb", "--hide-progress", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _env_for(settings: Any) -> dict[str, str]:
    """A subprocess environment using the session's embedded server."""
    return cli_env(settings, OMP_NUM_THREADS="1")


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny NeoX model dir, a 2-layer transcoder set dir and a 120-cell pbmc68k h5ad."""
    import scanpy as sc
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from circuitdb.loaders.prompts import build_prompt
    from circuitdb.transcoder.model import Transcoder, TranscoderConfig

    root = tmp_path_factory.mktemp("tiny")
    ad = sc.datasets.pbmc68k_reduced()[:120].copy()
    data = root / "pbmc.h5ad"
    ad.write_h5ad(data)
    genes = list(ad.raw.var_names)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [build_prompt(genes[i:i + 60]).text for i in range(0, len(genes), 60)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, rotary_pct=0.25, use_parallel_residual=True,
                                             max_position_embeddings=4096)).eval()
    mdir = root / "model"
    model.save_pretrained(mdir)
    fast.save_pretrained(mdir)
    (mdir / "circuitdb.json").write_text(json.dumps({"top_k": 30, "label_key": "bulk_labels"}))
    tdir = root / "tc"
    for layer in (0, 1):
        tc = Transcoder(TranscoderConfig(d_in=32, d_features=128, activation="relu", layer=layer))
        torch.nn.init.normal_(tc.b_enc, -0.2, 0.3)
        tc.save(tdir / f"layer_{layer}")
    gmt = root / "sets.gmt"
    gmt.write_text("B_CELL\tb cells\tCD79A\tCD79B\tMS4A1\tCD74\tHLA-DRA\n")
    return {"data": data, "model": mdir, "tc": tdir, "gmt": gmt, "root": root}


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    return lines[0]


def test_bad_gmt_exit_2_nothing_written(tiny: dict[str, Path], tmp_path: Path) -> None:
    env = _isolated_env(tmp_path)
    empty = tmp_path / "empty.gmt"
    empty.write_text("\n# nothing\n")
    bad = tmp_path / "bad.gmt"
    bad.write_text("ONLY_A_NAME\n")
    base = [str(tiny["data"]), "--model", str(tiny["model"]), "--transcoders", str(tiny["tc"]), "--label-key", "bulk_labels",
            "--out", str(tmp_path / "out")]
    assert "is empty" in _one_line_error(_run(["interpret", *base, "--gene-sets", str(empty)], env))
    assert "is not GMT" in _one_line_error(_run(["interpret", *base, "--gene-sets", str(bad)], env))
    assert "not an obs column" in _one_line_error(_run(["interpret", *base[:-3], "nope", "--no-graph"], env))
    assert not (tmp_path / "out").exists() and not (tmp_path / "db").exists()


@pytest.mark.embedded
@pytest.mark.slow
def test_interpret_writes_tables_and_graph(tiny: dict[str, Path], tmp_path: Path, embedded_settings: Any) -> None:
    from circuitdb.graph.backend import open_backend
    from circuitdb.graph.writer import graph_totals

    with open_backend(embedded_settings) as g:
        g.run("admin/delete_all")
    env = _env_for(embedded_settings)
    grn = tmp_path / "grn.csv"
    pd.DataFrame({"source": ["PAX5"] * 6, "target": ["CD79A", "CD79B", "MS4A1", "CD74", "HLA-DRA", "CD19"],
                  "weight": [1.0] * 6}).to_csv(grn, index=False)
    args = ["interpret", str(tiny["data"]), "--model", str(tiny["model"]), "--transcoders", str(tiny["tc"]),
            "--label-key", "bulk_labels", "--gene-sets", str(tiny["gmt"]), "--grn", str(grn), "--n-features", "40",
            "--max-cells", "60", "--seed", "3", "--out", str(tmp_path / "out"), "--json"]
    proc = _run(args, env)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["n_features"] == 40 and sum(s["features_per_layer"].values()) == 40
    assert set(s["features_per_layer"]) == {"0", "1"} and abs(s["features_per_layer"]["0"] - s["features_per_layer"]["1"]) <= 0
    assert 0.0 <= s["interpretable_fraction"] <= 1.0 and 0.0 <= s["control_fraction"] <= 1.0
    assert s["libraries"] == ["markers", "regulons", "sets"] and s["n_cells"] == 60
    table = pd.read_parquet(tmp_path / "out" / "interpretation.parquet")
    assert len(table) == 40 and table["feature_id"].str.match(r"^[0-9a-f]{16}:[01]:\d+$").all()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n_features"] == 40
    with open_backend(embedded_settings) as g:
        first = graph_totals(g)
        labels = g.run("library/feature_enrichments", {"feature": table["feature_id"].iloc[0]})
    assert first["nodes"]["Feature"] == 40 and labels[0]["label"] == table["label"].iloc[0]
    assert first["relationships"].get("ENRICHED_FOR", 0) == s["graph"]["enriched_for"]
    again = _run(args, env)
    assert again.returncode == 0 and json.loads(again.stdout)["interpretable_fraction"] == s["interpretable_fraction"]
    with open_backend(embedded_settings) as g:
        assert graph_totals(g) == first
    # same seed, same sample; another seed, another sample
    other = _run([*args[:-5], "--seed", "4", "--no-graph", "--out", str(tmp_path / "out2")], env)
    assert other.returncode == 0, other.stderr
    t2 = pd.read_parquet(tmp_path / "out2" / "interpretation.parquet")
    assert len(t2) == 40 and list(t2["feature_id"]) != list(table["feature_id"])
