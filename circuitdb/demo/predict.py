"""Cell-type prediction by ranking candidate answers (C2S classification, no free generation)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from circuitdb.errors import InputError

META_FILE = "circuitdb.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def tokenizer_fingerprint(model_dir: Path) -> str:
    """SHA-256 of ``tokenizer.json``: ties a model directory's tokenizer to its weights."""
    return hashlib.sha256((Path(model_dir) / "tokenizer.json").read_bytes()).hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model directory: model, fast tokenizer and the circuitdb metadata (may be empty)."""

    model: Any
    tokenizer: Any
    meta: dict[str, Any]
    path: Path


def read_meta(model_dir: Path) -> dict[str, Any]:
    """``circuitdb.json`` of a model directory, or ``{}`` if it has none."""
    p = Path(model_dir) / META_FILE
    if not p.is_file():
        return {}
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError) as exc:
        raise InputError(f"{p} is not valid JSON ({exc}); restore it from the model release or retrain") from None


def load_model_dir(model_dir: Path | str, *, dtype: str = "float32") -> ModelBundle:
    """Load a causal LM + its fast tokenizer from a local directory, checking they belong together.

    Loading goes through :func:`circuitdb.loaders.model.load_model`; on top of its checks,
    a ``circuitdb.json`` ``tokenizer_sha256`` must match ``tokenizer.json``.

    Raises
    ------
    InputError
        Directory missing, no weights, no tokenizer, or a tokenizer that does not match
        the model (vocabulary larger than the embedding, or a fingerprint in
        ``circuitdb.json`` that differs from ``tokenizer.json``).
    """
    from circuitdb.loaders.model import load_model

    d = Path(model_dir)
    if not d.is_dir():
        raise InputError(f"model directory {d} does not exist; pass --model DIR (e.g. \"$(circuitdb demo-model path)\")")
    if not any((d / w).is_file() for w in WEIGHT_FILES):
        raise InputError(f"{d} has no model weights (model.safetensors); point --model at a saved model directory")
    meta = read_meta(d)
    want = meta.get("tokenizer_sha256")
    if want and (d / "tokenizer.json").is_file() and tokenizer_fingerprint(d) != want:
        raise InputError(f"the tokenizer in {d} does not match the model (tokenizer.json fingerprint differs from circuitdb.json); restore the model's own tokenizer")
    loaded = load_model(d, dtype=dtype)
    return ModelBundle(model=loaded.model, tokenizer=loaded.tokenizer, meta=meta, path=d)


@dataclass
class Predictions:
    """Per-cell predictions (``table``: cell_id, true, predicted, margin) and the summary."""

    table: pd.DataFrame
    cell_types: list[str]
    top_k: int
    holdout_every: int
    n_skipped: int
    scores: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """``{accuracy, heldout_accuracy, per_class_recall, n_cells, ...}`` over labelled, scored cells."""
        t = self.table
        scored = t["predicted"] != ""
        labelled = scored & (t["true"] != "")
        pos = np.arange(len(t))
        held = labelled & (pos % self.holdout_every == 0)
        acc = float((t.loc[labelled, "true"] == t.loc[labelled, "predicted"]).mean()) if labelled.any() else None
        hacc = float((t.loc[held, "true"] == t.loc[held, "predicted"]).mean()) if held.any() else None
        recall: dict[str, float] = {}
        for ct in sorted(set(t.loc[labelled, "true"])):
            m = labelled & (t["true"] == ct)
            recall[ct] = float((t.loc[m, "predicted"] == ct).mean())
        return {
            "accuracy": acc,
            "heldout_accuracy": hacc,
            "per_class_recall": recall,
            "n_cells": int(len(t)),
            "n_scored": int(scored.sum()),
            "n_heldout": int(held.sum()),
            "n_skipped_no_genes": self.n_skipped,
            "top_k": self.top_k,
            "holdout_every": self.holdout_every,
        }


def predict_cells(
    bundle: ModelBundle,
    data: Any,
    *,
    label_key: str | None,
    top_k: int | None = None,
    layer: str = "raw",
    symbol_key: str | None = None,
    organism: str | None = None,
    cell_types: Sequence[str] | None = None,
    batch_size: int = 32,
    callback: Callable[[int], None] | None = None,
) -> Predictions:
    """Predict each cell's type by summed answer log-probability over the candidate cell types.

    Parameters
    ----------
    bundle
        From :func:`load_model_dir`.
    data
        Cells to predict: an ``.h5ad``/``.zarr`` path (streamed), an AnnData or a
        :class:`~circuitdb.loaders.io.CellStore`.
    label_key
        ``obs`` column with true labels, or ``None``.
    top_k, organism
        Default to the model's own (``circuitdb.json``), else 200 / Homo sapiens.
    cell_types
        Candidates; default the model's ``cell_types``, else the labels present in the data.
    batch_size
        Prompts per forward pass.
    callback
        Called with the number of cells finished after each batch.
    """
    import torch

    from circuitdb.loaders.prompts import DEFAULT_ORGANISM, PromptTemplate, build_prompt
    from circuitdb.loaders.scoring import score_candidates
    from circuitdb.loaders.sentences import DEFAULT_TOP_K, SentenceOptions, SentenceSummary, iter_cell_sentences

    meta = bundle.meta
    top_k = int(top_k or meta.get("top_k") or DEFAULT_TOP_K)
    organism = organism or meta.get("organism") or DEFAULT_ORGANISM
    holdout_every = int(meta.get("holdout_every", 5))
    template = PromptTemplate(
        prompt=meta.get("prompt_template", PromptTemplate().prompt),
        answer=meta.get("answer_template", PromptTemplate().answer),
    )
    opts = SentenceOptions(top_k=top_k, layer=layer, symbol_key=symbol_key, label_key=label_key, organism=organism, skip_empty=False)
    summary = SentenceSummary()
    cells = list(iter_cell_sentences(data, opts, summary=summary))
    organism = opts.organism
    if cell_types is None:
        cell_types = meta.get("cell_types")
    if not cell_types:
        cell_types = sorted({c.label for c in cells if c.label is not None})
    if not cell_types:
        raise InputError("no candidate cell types: the model has no circuitdb.json cell_types and no --label-key was given; pass --label-key")
    cell_types = list(cell_types)
    scored = [c for c in cells if c.genes]
    prompts = [build_prompt(c.genes, organism=organism, template=template).text for c in scored]
    answers = [template.answer_text(t) for t in cell_types]
    n_skipped = len(cells) - len(scored)
    if callback is not None and n_skipped:
        callback(n_skipped)
    with torch.inference_mode():
        scores = score_candidates(bundle.model, bundle.tokenizer, prompts, answers, batch_size=batch_size, callback=callback).numpy()
    full = np.full((len(cells), len(cell_types)), np.nan, dtype=np.float32)
    idx = np.array([c.index for c in scored], dtype=np.int64)
    if len(idx):
        full[idx] = scores
    predicted, margin = [], []
    for row in full:
        if np.isnan(row).all():
            predicted.append("")
            margin.append(float("nan"))
            continue
        order = np.argsort(-row, kind="stable")
        predicted.append(cell_types[order[0]])
        margin.append(float(row[order[0]] - row[order[1]]) if len(order) > 1 else float("inf"))
    table = pd.DataFrame(
        {
            "cell_id": [c.cell_id for c in cells],
            "true": ["" if c.label is None else c.label for c in cells],
            "predicted": predicted,
            "margin": margin,
        }
    )
    return Predictions(table=table, cell_types=cell_types, top_k=top_k, holdout_every=holdout_every, n_skipped=n_skipped, scores=full)


def labelled_anndata(adata: Any, preds: Predictions, key: str, *, params: dict[str, Any] | None = None) -> Any:
    """``adata`` (in memory) with the predictions in ``obs[key]`` and the margins in ``obs[f"{key}_margin"]``.

    ``obs[key]`` is categorical over the model's candidate types; cells that were not
    scored (no expressed genes) are missing. ``uns[key]["params"]`` records how (model, top-k, ...),
    scanpy-style (cell-type names hold "/", so they are never used as ``uns`` keys).

    Raises
    ------
    InputError
        The predictions do not belong to ``adata`` (other cells or another order).
    """
    ids = preds.table["cell_id"].astype(str).tolist()
    if ids != [str(c) for c in adata.obs_names]:
        raise InputError("the predictions are for other cells than the AnnData (cell ids differ); predict on the same file")
    pred = preds.table["predicted"].replace("", np.nan)
    adata.obs[key] = pd.Categorical(pred.to_numpy(dtype=object), categories=list(preds.cell_types))
    adata.obs[f"{key}_margin"] = preds.table["margin"].to_numpy(dtype=np.float64)
    adata.uns[key] = {
        "params": {**{k: str(v) for k, v in (params or {}).items()}, "top_k": int(preds.top_k),
                   "method": "summed answer-token log-probability over the candidate types"},
    }
    return adata
