"""Interpretation of a transcoder set over a dataset, end to end (the engine behind ``circuitdb interpret``).

Steps: load the transcoders, run the model once over the chosen cells collecting statistics
of every feature (:func:`~circuitdb.interpret.collect.collect_feature_stats`), sample features
among those active at least once (stratified by layer, seeded), build the gene-set libraries
(dataset markers, GRN regulons, GMT files) and interpret (:func:`~circuitdb.interpret.features.interpret_features`).

Feature ids are those of the graph export: ``{transcoder_hash[:16]}:{layer}:{index}``, with the
transcoder hash of :func:`transcoder_hash` (the recipe the attribution step records in
circuit provenance), so labels land on the same Feature nodes as circuits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from circuitdb.errors import InputError
from circuitdb.interpret.enrichment import GeneSetLibrary
from circuitdb.interpret.features import FeatureStats
from circuitdb.transcoder.model import Transcoder

CellChoice = Literal["all", "heldout"]
SET_MANIFEST = "transcoders.json"


def load_transcoder_dir(directory: str | Path, layers: Sequence[int] | None = None) -> dict[int, Transcoder]:
    """Transcoders of a set directory: ``{dir}/layer_{i}/`` (+ ``transcoders.json``), or any ``cfg.json`` below it.

    Raises
    ------
    InputError
        Not a directory, no transcoder in it, two for one layer, or a requested layer missing.
    """
    from circuitdb.transcoder.model import CONFIG_NAME

    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"transcoder directory {d} does not exist; pass the OUT of 'circuitdb train-transcoders'")
    dirs: list[Path] = []
    manifest = d / SET_MANIFEST
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text()).get("transcoders", [])
            dirs = [d / str(e.get("dir", f"layer_{e['layer']}")) for e in entries]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{manifest} is corrupt; retrain with 'circuitdb train-transcoders'") from None
    if not dirs:
        dirs = sorted(p.parent for p in d.rglob(CONFIG_NAME))
    out: dict[int, Transcoder] = {}
    for p in dirs:
        tc = Transcoder.load(p).eval()
        layer = int(tc.cfg.layer)
        if layer in out:
            raise InputError(f"two transcoders for layer {layer} under {d}; keep one checkpoint per layer")
        out[layer] = tc
    if not out:
        raise InputError(f"no transcoders ({CONFIG_NAME}) under {d}; train them with 'circuitdb train-transcoders'")
    if layers is not None:
        missing = [l for l in layers if l not in out]
        if missing:
            raise InputError(f"{d} has no transcoder for layer(s) {missing} (it has {sorted(out)}); pick from those")
        out = {l: out[l] for l in layers}
    return out


def transcoder_hash(transcoders: Mapping[int, Transcoder]) -> str:
    """The transcoder-set hash used in Feature ids (attribution's ``transcoders_fingerprint``)."""
    from circuitdb.attribution.attribute import transcoders_fingerprint

    return str(transcoders_fingerprint(transcoders))


def feature_ids(stats: FeatureStats, tc_hash: str) -> list[str]:
    """Graph Feature ids ``{hash16}:{layer}:{index}`` of the rows of ``stats``."""
    from circuitdb.graph.rows import feature_node_id

    return [feature_node_id(tc_hash, int(l), int(i)) for l, i in zip(stats.features["layer"], stats.features["index"])]


def sample_features(active: Mapping[int, np.ndarray], n: int | None, seed: int = 0) -> dict[int, np.ndarray]:
    """Sample ``n`` features stratified by layer among the active ones (``None``: all of them).

    Each layer gets an equal share (capped at its number of active features); what a small
    layer cannot take goes to the others. Indices come back sorted, per layer.
    """
    layers = sorted(active)
    avail = {l: np.asarray(active[l], dtype=np.int64) for l in layers}
    total = sum(len(v) for v in avail.values())
    if n is None or n >= total:
        return {l: np.sort(v) for l, v in avail.items() if len(v)}
    if n < 1:
        raise InputError(f"--n-features must be at least 1, got {n}")
    quota = dict.fromkeys(layers, 0)
    left = n
    open_layers = [l for l in layers if len(avail[l])]
    while left > 0 and open_layers:
        share, extra = divmod(left, len(open_layers))
        nxt = []
        for j, l in enumerate(open_layers):
            want = share + (1 if j < extra else 0)
            take = min(want, len(avail[l]) - quota[l])
            quota[l] += take
            left -= take
            if quota[l] < len(avail[l]):
                nxt.append(l)
        if nxt == open_layers and share == 0 and extra == 0:
            break
        open_layers = nxt
    rng = np.random.default_rng(seed)
    return {l: np.sort(rng.choice(avail[l], size=quota[l], replace=False)) for l in layers if quota[l]}


def choose_cells(cells: Sequence[Any], which: CellChoice, holdout_every: int = 5) -> list[Any]:
    """All cells, or the held-out ones (obs positions 0, 5, 10, ...: ``index % holdout_every == 0``)."""
    if which == "all":
        return list(cells)
    if which != "heldout":
        raise InputError(f"--cells must be all or heldout, got {which!r}")
    return [c for c in cells if int(c.index) % holdout_every == 0]


@dataclass
class Libraries:
    """The gene-set libraries of a run and where they came from."""

    libraries: list[GeneSetLibrary]
    sources: dict[str, str]


def build_libraries(
    adata: Any,
    label_key: str,
    *,
    regulons: Mapping[str, Sequence[str]] | None = None,
    grn_name: str | None = None,
    gmt_files: Sequence[str | Path] = (),
    n_markers: int = 50,
    min_regulon: int = 5,
) -> Libraries:
    """Dataset markers (scanpy ``rank_genes_groups`` per label) + GRN regulons + GMT files."""
    from circuitdb.interpret.enrichment import marker_sets, read_gmt, regulon_sets

    libs = [marker_sets(adata, label_key, n_genes=n_markers)]
    sources = {"markers": f"rank_genes_groups(wilcoxon) on {label_key!r}"}
    if regulons is not None:
        libs.append(regulon_sets(regulons, min_size=min_regulon, name="regulons"))
        sources["regulons"] = f"GRN {grn_name}" if grn_name else "GRN"
    names = {lib.name for lib in libs}
    for path in gmt_files:
        lib = read_gmt(path)
        name, k = lib.name, 2
        while name in names:
            name, k = f"{lib.name}_{k}", k + 1
        libs.append(GeneSetLibrary(name, lib.sets))
        names.add(name)
        sources[name] = str(path)
    return Libraries(libs, sources)


def active_features(stats: FeatureStats) -> dict[int, np.ndarray]:
    """layer -> indices of the features that fired (> 0) on at least one cell."""
    fired = (stats.cell_values > 0).any(axis=0)
    out: dict[int, np.ndarray] = {}
    for layer, idx in stats.features.loc[fired, ["layer", "index"]].groupby("layer")["index"]:
        out[int(layer)] = idx.to_numpy(dtype=np.int64)
    return out


def subset_stats(stats: FeatureStats, chosen: Mapping[int, np.ndarray]) -> FeatureStats:
    """The rows of ``stats`` for the chosen (layer -> indices) features, in (layer, index) order."""
    key = {(int(l), int(i)) for l, idx in chosen.items() for i in idx}
    rows = np.array([k for k, (l, i) in enumerate(zip(stats.features["layer"], stats.features["index"])) if (int(l), int(i)) in key],
                    dtype=np.int64)
    return stats.subset(rows)


ProgressFn = Callable[[int], None]


def random_direction_transcoders(transcoders: Mapping[int, Transcoder], seed: int = 0) -> dict[int, Transcoder]:
    """A control set: every encoder direction replaced by a random Gaussian one of the same norm.

    Biases, thresholds and the activation (relu/topk/jumprelu) are kept, so the controls fire on
    the same inputs with a comparable sparsity; what they lack is a learned direction. Since the
    model's residual stream encodes gene identity, random directions may still look
    gene-specific: their interpretable fraction is a baseline of the representation, not the FDR.
    """
    import copy

    import torch

    gen = torch.Generator().manual_seed(int(seed))
    out: dict[int, Transcoder] = {}
    for layer in sorted(transcoders):
        tc = copy.deepcopy(transcoders[layer])
        with torch.no_grad():
            w = tc.W_enc
            r = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.dtype)
            r = r / r.norm(dim=0, keepdim=True).clamp_min(1e-12) * w.norm(dim=0, keepdim=True)
            w.copy_(r)
        out[layer] = tc
    return out
