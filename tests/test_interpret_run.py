"""Sampling, cell choice, transcoder-set loading, the random-direction control and graph rows (no model, no DB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from circuitdb.errors import InputError
from circuitdb.interpret.enrichment import Criteria
from circuitdb.interpret.features import Interpretation
from circuitdb.interpret.run import (
    choose_cells, load_transcoder_dir, random_direction_transcoders, sample_features, transcoder_hash,
)
from circuitdb.interpret.store import interpretation_rows
from circuitdb.loaders.sentences import CellSentence
from circuitdb.transcoder.model import Transcoder, TranscoderConfig


def test_sampling_is_stratified_seeded_and_within_active() -> None:
    active = {0: np.arange(0, 500), 1: np.arange(10, 40), 2: np.arange(100, 600, 2)}
    s = sample_features(active, 200, seed=1)
    assert {l: len(v) for l, v in s.items()} == {0: 86, 1: 30, 2: 84}  # layer 1 gives what it has; the rest shared (remainders to lower layers)
    for l, v in s.items():
        assert set(v) <= set(active[l]) and len(set(v)) == len(v) and list(v) == sorted(v)
    assert all(np.array_equal(a, b) for a, b in zip(s.values(), sample_features(active, 200, seed=1).values()))
    assert not np.array_equal(s[0], sample_features(active, 200, seed=2)[0])
    everything = sample_features(active, None)
    assert sum(len(v) for v in everything.values()) == 780
    assert sum(len(v) for v in sample_features(active, 5000).values()) == 780
    with pytest.raises(InputError):
        sample_features(active, 0)


def test_choose_cells_heldout_every_fifth() -> None:
    cells = [CellSentence(f"c{i}", i, "A", ("G",)) for i in range(12)]
    assert [c.index for c in choose_cells(cells, "heldout")] == [0, 5, 10]
    assert len(choose_cells(cells, "all")) == 12


def _save_set(root: Path, layers: tuple[int, ...] = (0, 1)) -> dict[int, Transcoder]:
    out = {}
    for l in layers:
        torch.manual_seed(l)
        tc = Transcoder(TranscoderConfig(d_in=8, d_features=16, activation="relu", layer=l))
        tc.save(root / f"layer_{l}")
        out[l] = tc
    return out


def test_load_transcoder_dir_and_hash(tmp_path: Path) -> None:
    saved = _save_set(tmp_path)
    got = load_transcoder_dir(tmp_path)
    assert sorted(got) == [0, 1] and torch.equal(got[1].W_enc, saved[1].W_enc)
    assert list(load_transcoder_dir(tmp_path, [1])) == [1]
    h = transcoder_hash(got)
    assert len(h) == 16 and h == transcoder_hash(load_transcoder_dir(tmp_path)) and h != transcoder_hash({0: got[0]})
    with pytest.raises(InputError, match="no transcoder for layer"):
        load_transcoder_dir(tmp_path, [3])
    with pytest.raises(InputError, match="does not exist"):
        load_transcoder_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no transcoders"):
        load_transcoder_dir(tmp_path / "empty")


def test_random_directions_keep_norms_and_biases(tmp_path: Path) -> None:
    tcs = _save_set(tmp_path)
    for tc in tcs.values():
        torch.nn.init.normal_(tc.b_enc)
    rnd = random_direction_transcoders(tcs, seed=0)
    for l in tcs:
        a, b = tcs[l].W_enc, rnd[l].W_enc
        assert torch.allclose(a.norm(dim=0), b.norm(dim=0), atol=1e-5) and not torch.allclose(a, b)
        assert torch.equal(tcs[l].b_enc, rnd[l].b_enc)
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0).abs()
        assert float(cos.mean()) < 0.6
    assert torch.equal(random_direction_transcoders(tcs, seed=0)[0].W_enc, rnd[0].W_enc)


def test_graph_rows_only_significant_enrichments() -> None:
    table = pd.DataFrame([
        {"feature_id": "h:0:1", "layer": 0, "index": 1, "density": 0.5, "top_genes": ["CD79A", "MS4A1"], "label": "marker:B",
         "gene_level_interpretable": True, "best_term": "markers:B", "best_q": 0.001, "best_label": "B", "best_auroc": 0.9},
        {"feature_id": "h:1:2", "layer": 1, "index": 2, "density": 0.1, "top_genes": [], "label": "uninterpreted",
         "gene_level_interpretable": False, "best_term": None, "best_q": None, "best_label": None, "best_auroc": None},
    ])
    enr = pd.DataFrame([
        {"feature": "h:0:1", "library": "markers", "term": "B", "overlap": 4, "query_size": 20, "set_size": 30,
         "genes": "A;B;C;D", "universe": 500, "odds": 9.0, "p": 1e-5, "q": 1e-3},
        {"feature": "h:0:1", "library": "markers", "term": "T", "overlap": 3, "query_size": 20, "set_size": 30,
         "genes": "A;B;C", "universe": 500, "odds": 2.0, "p": 1e-3, "q": 0.01},  # odds below 3: not an edge
        {"feature": "h:1:2", "library": "sets", "term": "X", "overlap": 5, "query_size": 20, "set_size": 30,
         "genes": "A;B;C;D;E", "universe": 500, "odds": 20.0, "p": 0.2, "q": 0.3},  # q too high
    ])
    interp = Interpretation(table=table, enrichment=enr, criteria=Criteria(), n_features=2, interpretable_fraction=0.5)
    feats, sets, edges = interpretation_rows(interp, "h" * 64)
    assert [f["id"] for f in feats] == ["h:0:1", "h:1:2"] and feats[0]["transcoder_set"] == "tc:" + "h" * 16
    assert feats[1]["best_term"] is None and feats[0]["label"] == "marker:B" and feats[0]["top_genes"] == ["CD79A", "MS4A1"]
    assert sets == [{"id": "markers:B", "library": "markers", "name": "B", "size": 30}]
    assert [(e["feature"], e["gene_set"], e["overlap"], e["genes"]) for e in edges] == [("h:0:1", "markers:B", 4, ["A", "B", "C", "D"])]
