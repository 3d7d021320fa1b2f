"""Transcoder feature activations per cell, as AnnData (cells x features).

``obs`` are the cells (with their labels), ``var`` the features of every layer
(``layer``, ``feature``), and ``X`` (sparse CSR) the max or mean of each feature
over the cell's gene tokens. Optionally ``uns["gene_mass"]`` holds, per (layer,
feature, gene), the activation mass summed over that gene's token span across the
cells, which is what "top genes of a feature" is ranked by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import adapter_for
from circuitdb.transcoder.common import PromptOptions, Split, iter_cell_prompts, pad_batch, pad_id_of
from circuitdb.transcoder.evaluate import TranscoderSet, load_transcoders
from circuitdb.transcoder.hooks import capture_mlp

Reduce = Literal["max", "mean"]


def options_from_set(transcoders: TranscoderSet, **overrides: Any) -> PromptOptions:
    """The prompt options the transcoders were harvested with (from ``transcoders.json``), with overrides."""
    so = dict(transcoders.manifest.get("sentence_options") or {})
    known = set(PromptOptions.__dataclass_fields__)
    so = {k: v for k, v in so.items() if k in known}
    so.update({k: v for k, v in overrides.items() if v is not None})
    return PromptOptions(**so)


@torch.no_grad()
def feature_activations(
    model: Any,
    transcoders: TranscoderSet | str | Path,
    adata: Any,
    opts: PromptOptions | None = None,
    *,
    tokenizer: Any = None,
    reduce: Reduce = "max",
    split: Split = "all",
    gene_mass: bool = False,
    batch_size: int = 8,
    max_cells: int | None = None,
    callback: Callable[[int], None] | None = None,
) -> Any:
    """Feature activations of every cell as an AnnData.

    Parameters
    ----------
    model
        The model the transcoders belong to: a :class:`circuitdb.loaders.model.LoadedModel`
        (its tokenizer is used) or a Hugging Face model (then pass ``tokenizer``).
    transcoders
        A loaded :class:`~circuitdb.transcoder.evaluate.TranscoderSet`, or its directory.
    adata
        The cells.
    opts
        Prompt options (sentence length, label column, held-out split); default: those the
        transcoders were harvested with.
    tokenizer
        The tokenizer, when ``model`` is a bare Hugging Face model.
    reduce
        ``max`` or ``mean`` of each feature over the cell's gene tokens.
    split
        ``all`` cells, only the ``train`` ones, or only the ``heldout`` ones.
    gene_mass
        Also store ``uns["gene_mass"]``: a DataFrame (layer, feature, gene, mass, n_cells)
        with the activation summed over each gene's token span, over all cells.
    batch_size
        Prompts per forward pass.
    max_cells
        At most this many cells.
    callback
        Called with the number of cells finished after each batch.

    Returns
    -------
    anndata.AnnData
        ``X`` cells x features (CSR float32); ``var`` columns ``layer`` and ``feature``;
        ``obs`` columns ``cell_index`` (obs position in ``adata``), the label column and
        ``heldout``; ``uns["transcoders"]`` the set's hash and params.

    Examples
    --------
    >>> fa = feature_activations(load_model(model_dir), tc_dir, adata)  # doctest: +SKIP
    >>> sc.pl.matrixplot(fa, fa.var_names[:20], groupby="bulk_labels")  # doctest: +SKIP
    """
    import anndata

    if hasattr(model, "tokenizer") and hasattr(model, "model"):
        tokenizer = tokenizer or model.tokenizer
        model = model.model
    if tokenizer is None:
        raise InputError("feature_activations needs the tokenizer: pass a LoadedModel or tokenizer=")
    if not isinstance(transcoders, TranscoderSet):
        transcoders = load_transcoders(transcoders, model=model)
    opts = opts or options_from_set(transcoders)
    if reduce not in ("max", "mean"):
        raise InputError(f"reduce must be max or mean, not {reduce!r}")
    adapter = adapter_for(model)
    layers = transcoders.layers
    device = next(model.parameters()).device
    offsets = {}
    n_feat = 0
    for i in layers:
        offsets[i] = n_feat
        n_feat += transcoders.transcoders[i].cfg.d_features
    pad = pad_id_of(tokenizer)
    blocks: list[sp.csr_matrix] = []
    obs_rows: list[dict[str, Any]] = []
    mass: dict[tuple[int, int, str], list[float]] = {}
    cells = iter_cell_prompts(adata, tokenizer, opts, split=split, with_answer=False, max_cells=max_cells)

    def run(batch: list[Any]) -> None:
        ids, mask = pad_batch(batch, pad)
        with capture_mlp(adapter, layers, outputs=False) as store:
            model(input_ids=ids.to(device), attention_mask=mask.to(device))
        per_layer = []
        for i in layers:
            tc = transcoders.transcoders[i]
            acts = tc.encode(store[i]["in"].to(tc.W_enc.dtype)).float().cpu()  # (b, t, F)
            per_layer.append(acts)
        for b, p in enumerate(batch):
            gpos = torch.tensor([t for t, r in enumerate(p.gene_rank) if r >= 0], dtype=torch.long)
            row = []
            for li, i in enumerate(layers):
                a = per_layer[li][b, gpos]  # (genes' tokens, F)
                row.append(a.max(0).values if reduce == "max" else a.mean(0))
                if gene_mass:
                    for rank, (s, e) in enumerate(p.gene_spans):
                        m = per_layer[li][b, s:e].sum(0)
                        nz = torch.nonzero(m > 0).flatten().tolist()
                        for f in nz:
                            key = (i, f, p.genes[rank])
                            acc = mass.setdefault(key, [0.0, 0])
                            acc[0] += float(m[f])
                            acc[1] += 1
            blocks.append(sp.csr_matrix(torch.cat(row).numpy()[None, :]))
            obs_rows.append({"cell_id": p.cell_id, "cell_index": p.index, "label": p.label, "heldout": p.index % opts.holdout_every == 0})
        if callback is not None:
            callback(len(batch))

    batch: list[Any] = []
    for cp in cells:
        batch.append(cp)
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not obs_rows:
        raise InputError("no cells with expressed genes to compute activations for")
    X = sp.vstack(blocks).tocsr().astype(np.float32)
    obs = pd.DataFrame(obs_rows).set_index("cell_id")
    obs.index = obs.index.astype(str)
    label_col = opts.label_key or "label"
    obs = obs.rename(columns={"label": label_col})
    if obs[label_col].isna().all():
        obs = obs.drop(columns=[label_col])
    else:
        obs[label_col] = obs[label_col].astype("category")
    var_layer = np.concatenate([np.full(transcoders.transcoders[i].cfg.d_features, i) for i in layers])
    var_feat = np.concatenate([np.arange(transcoders.transcoders[i].cfg.d_features) for i in layers])
    var = pd.DataFrame({"layer": var_layer, "feature": var_feat}, index=[f"L{l}/{f}" for l, f in zip(var_layer, var_feat)])
    out = anndata.AnnData(X=X, obs=obs, var=var)
    out.uns["transcoders"] = {
        "params": {"reduce": reduce, "split": split, "top_k": opts.top_k, "holdout_every": opts.holdout_every},
        "transcoder_set_hash": transcoders.set_hash,
        "model_hash": str(transcoders.manifest.get("model_hash", "")),
    }
    if gene_mass:
        out.uns["gene_mass"] = gene_mass_frame(mass)
    return out


def gene_mass_frame(mass: dict[tuple[int, int, str], list[float]]) -> pd.DataFrame:
    """``(layer, feature, gene) -> [mass, n_cells]`` as a DataFrame sorted by layer, feature, -mass."""
    if not mass:
        return pd.DataFrame({"layer": pd.Series(dtype=int), "feature": pd.Series(dtype=int), "gene": pd.Series(dtype=str),
                             "mass": pd.Series(dtype=float), "n_cells": pd.Series(dtype=int)})
    df = pd.DataFrame([(k[0], k[1], k[2], v[0], int(v[1])) for k, v in mass.items()], columns=["layer", "feature", "gene", "mass", "n_cells"])
    return df.sort_values(["layer", "feature", "mass"], ascending=[True, True, False], ignore_index=True)


def top_genes(gene_mass: pd.DataFrame, layer: int, feature: int, n: int = 10) -> pd.DataFrame:
    """The ``n`` genes with the largest activation mass for one feature."""
    sel = gene_mass[(gene_mass["layer"] == layer) & (gene_mass["feature"] == feature)]
    return sel.nlargest(n, "mass").reset_index(drop=True)
