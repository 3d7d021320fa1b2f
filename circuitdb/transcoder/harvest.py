"""Harvest MLP inputs and outputs of the training cells into streamed shards.

Layout of ``OUT``::

    manifest.json            settings, model hash, layers, shapes, dtype, rows, shard list
    shard_00000.safetensors  per layer ``layer_{i}.in`` (rows, d_in) and ``layer_{i}.out`` (rows, d_out);
                             per row ``cell`` (obs index), ``position`` (token index), ``gene_rank``
                             (-1 off genes) and ``segment`` (0 prompt text, 1 gene token, 2 answer);
                             per layer sums for normalisation and mean ablation (``stats.*``)
    shard_00000.json         the shard's sidecar: rows, cells, content hash (written after the tensors)

A shard is a fixed block of ``cells_per_shard`` training cells, so memory is bounded by
``cells_per_shard x tokens x layers x (d_in + d_out)`` whatever the dataset size.
A shard is finished once its sidecar exists; a rerun skips finished shards (resume),
and refuses a directory harvested with other settings. Under ``torchrun`` each rank
takes shards ``rank, rank + world, ...`` and rank 0 writes the manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import adapter_for
from circuitdb.transcoder.common import (
    CellPrompt,
    PromptOptions,
    iter_cell_prompts,
    pad_batch,
    pad_id_of,
    save_tensors_atomic,
    sha256_json,
    write_json_atomic,
)
from circuitdb.transcoder.hooks import capture_mlp

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
Positions = Literal["all", "genes"]
StoreDtype = Literal["float32", "float16", "bfloat16"]
SEG_PROMPT, SEG_GENE, SEG_ANSWER = 0, 1, 2


@dataclass(frozen=True)
class HarvestConfig:
    """What to harvest.

    Parameters
    ----------
    layers
        ``"all"``, ``"0,2"``, ``"1-3"`` or a list of layer indices.
    positions
        ``all`` tokens (prompt, genes and answer) or only ``genes`` (tokens of gene symbols).
    with_answer
        Append the answer ``" {cell_type}."`` (training cells are labelled), so the
        transcoders also see the positions whose loss evaluation measures.
    cells_per_shard
        Training cells per shard: the unit of streaming, resume and data parallelism.
    batch_size
        Prompts per forward pass.
    dtype
        Storage dtype of the activations.
    max_cells
        Harvest at most this many training cells (``None``: all).
    """

    layers: str | tuple[int, ...] = "all"
    positions: Positions = "all"
    with_answer: bool = True
    cells_per_shard: int = 64
    batch_size: int = 8
    dtype: StoreDtype = "float32"
    max_cells: int | None = None

    def __post_init__(self) -> None:
        if self.positions not in ("all", "genes"):
            raise InputError(f"--positions must be all or genes, not {self.positions!r}")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise InputError(f"dtype must be float32, float16 or bfloat16, not {self.dtype!r}")
        if self.cells_per_shard < 1 or self.batch_size < 1:
            raise InputError("cells per shard and batch size must be at least 1")
        if self.max_cells is not None and self.max_cells < 1:
            raise InputError(f"--max-cells must be at least 1, got {self.max_cells}")


@dataclass
class HarvestResult:
    out: Path
    manifest: dict[str, Any]
    shards_written: int
    shards_skipped: int
    tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def dist_env() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment (``(0, 1)`` outside it)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an activations directory (one-line error if absent or corrupt)."""
    p = Path(directory) / MANIFEST
    if not p.is_file():
        raise InputError(f"{directory} is not an activations directory (no {MANIFEST}); create one with 'circuitdb harvest'")
    try:
        return dict(json.loads(p.read_text()))
    except ValueError:
        raise InputError(f"{p} is corrupt; delete {directory} and rerun 'circuitdb harvest'") from None


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}"


def _settings(model_hash: str, model_name: str, layers: list[int], hooks: dict[str, list[str]], cfg: HarvestConfig, opts: PromptOptions, n_layers: int) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "model": model_name,
        "model_hash": model_hash,
        "n_model_layers": n_layers,
        "layers": layers,
        "hook_in": hooks["in"],
        "hook_out": hooks["out"],
        "positions": cfg.positions,
        "with_answer": cfg.with_answer,
        "dtype": cfg.dtype,
        "cells_per_shard": cfg.cells_per_shard,
        "max_cells": cfg.max_cells,
        "sentence_options": asdict(opts),
    }


def _collect_rows(
    batch: list[CellPrompt], store: dict[int, dict[str, torch.Tensor]], layers: list[int], positions: Positions, dtype: torch.dtype
) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
    """Select the harvested positions of each prompt; returns per-layer (in, out) rows and row metadata."""
    sel_b: list[int] = []
    sel_t: list[int] = []
    cell: list[int] = []
    rank: list[int] = []
    seg: list[int] = []
    for b, p in enumerate(batch):
        for t, r in enumerate(p.gene_rank):
            if positions == "genes" and r < 0:
                continue
            sel_b.append(b)
            sel_t.append(t)
            cell.append(p.index)
            rank.append(r)
            seg.append(SEG_GENE if r >= 0 else (SEG_ANSWER if t >= p.answer_start else SEG_PROMPT))
    bi, ti = torch.tensor(sel_b, dtype=torch.long), torch.tensor(sel_t, dtype=torch.long)
    rows = {i: (store[i]["in"][bi, ti].to(dtype), store[i]["out"][bi, ti].to(dtype)) for i in layers}
    meta = {
        "cell": torch.tensor(cell, dtype=torch.int64),
        "position": ti.to(torch.int32),
        "gene_rank": torch.tensor(rank, dtype=torch.int32),
        "segment": torch.tensor(seg, dtype=torch.int8),
    }
    return rows, meta


def _write_shard(out: Path, index: int, parts: list[tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]], layers: list[int], cells: list[CellPrompt]) -> dict[str, Any]:
    tensors: dict[str, torch.Tensor] = {}
    for key in ("cell", "position", "gene_rank", "segment"):
        tensors[key] = torch.cat([m[key] for _, m in parts])
    for i in layers:
        x = torch.cat([r[i][0] for r, _ in parts])
        y = torch.cat([r[i][1] for r, _ in parts])
        tensors[f"layer_{i}.in"] = x
        tensors[f"layer_{i}.out"] = y
        xd, yd = x.double(), y.double()
        tensors[f"stats.layer_{i}.in_sum"] = xd.sum(0)
        tensors[f"stats.layer_{i}.out_sum"] = yd.sum(0)
        tensors[f"stats.layer_{i}.in_sq"] = xd.pow(2).sum().reshape(1)
        tensors[f"stats.layer_{i}.out_sq"] = yd.pow(2).sum().reshape(1)
    name = _shard_name(index)
    save_tensors_atomic(out / f"{name}.safetensors", tensors)
    side = {
        "index": index,
        "file": f"{name}.safetensors",
        "rows": int(tensors["cell"].numel()),
        "gene_rows": int((tensors["segment"] == SEG_GENE).sum()),
        "n_cells": len(cells),
        "first_cell": cells[0].index,
        "last_cell": cells[-1].index,
        "cells_hash": sha256_json([c.content_hash() for c in cells]),
    }
    write_json_atomic(out / f"{name}.json", side)
    return side


def _finished(out: Path, index: int) -> dict[str, Any] | None:
    side = out / f"{_shard_name(index)}.json"
    if not side.is_file() or not (out / f"{_shard_name(index)}.safetensors").is_file():
        return None
    try:
        return dict(json.loads(side.read_text()))
    except ValueError:
        return None


def assemble_manifest(out: Path, settings: dict[str, Any], n_shards: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from the finished shards' sidecars (atomic)."""
    shards = [s for i in range(n_shards) if (s := _finished(out, i)) is not None]
    complete = len(shards) == n_shards
    manifest = {
        **settings,
        **extra,
        "n_shards": n_shards,
        "complete": complete,
        "rows": sum(s["rows"] for s in shards),
        "cells_used": sum(s["n_cells"] for s in shards),
        "shards": shards,
        "data_hash": sha256_json([s["cells_hash"] for s in shards]) if complete else None,
        "acts_hash": sha256_json({"settings": settings, "shards": [(s["cells_hash"], s["rows"]) for s in shards]}) if complete else None,
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def harvest(
    model: torch.nn.Module,
    tokenizer: Any,
    adata: Any,
    out: str | os.PathLike[str],
    cfg: HarvestConfig,
    opts: PromptOptions,
    *,
    model_name: str = "",
    model_hash: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> HarvestResult:
    """Run ``model`` over the training cells of ``adata`` and stream MLP in/out shards to ``out``.

    Parameters
    ----------
    model, tokenizer
        A loaded causal LM (GPT-NeoX or Gemma-2) and its fast tokenizer.
    adata
        The cells; held-out cells (every ``opts.holdout_every``-th) are skipped.
    out
        Output directory (created; an interrupted harvest there resumes).
    cfg, opts
        What to harvest, and how cells become prompts.
    model_name, model_hash
        Recorded in the manifest (the hash defaults to :func:`model_fingerprint`).
    rank, world_size
        Data-parallel split over shards (default: torchrun's ``RANK``/``WORLD_SIZE``).
    callback
        ``callback(cells_done, tokens_done)`` after each batch.

    Returns
    -------
    HarvestResult
        The manifest (as written by rank 0) and how many shards were written/skipped.
    """
    import time

    from circuitdb.transcoder.common import model_fingerprint

    t0 = time.perf_counter()
    env_rank, env_world = dist_env()
    rank = env_rank if rank is None else rank
    world = env_world if world_size is None else world_size
    adapter = adapter_for(model)
    layers = adapter.resolve_layers(list(cfg.layers) if isinstance(cfg.layers, tuple) else cfg.layers)
    if opts.label_key is None and cfg.with_answer:
        raise InputError("harvesting with answers needs --label-key (the obs column with cell types)")
    model_hash = model_hash or model_fingerprint(model)
    hooks = {"in": [adapter.layer(i).mlp_name for i in layers], "out": [adapter.layer(i).mlp_name for i in layers]}
    settings = _settings(model_hash, model_name, layers, hooks, cfg, opts, adapter.n_layers)
    n_obs = int(adata.n_obs)
    n_train = n_obs - (n_obs + opts.holdout_every - 1) // opts.holdout_every
    if cfg.max_cells is not None:
        n_train = min(n_train, cfg.max_cells)
    if n_train < 1:
        raise InputError(f"no training cells: {n_obs} cells with every {opts.holdout_every}th held out; pass more cells")
    n_shards = (n_train + cfg.cells_per_shard - 1) // cfg.cells_per_shard
    out = Path(out)

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if (out / MANIFEST).is_file():
            old = read_manifest(out)
            old_settings = {k: old.get(k) for k in settings}
            if old_settings != json.loads(json.dumps(settings)):
                diff = [k for k in settings if old_settings.get(k) != json.loads(json.dumps(settings[k]))]
                raise InputError(f"{out} holds a harvest with other settings ({', '.join(diff)}); pass a new --out or delete it")
        elif any(out.iterdir()):
            raise InputError(f"{out} is not empty and has no {MANIFEST}; pass an empty or new --out directory")
        dims = {"d_in": adapter.d_model, "d_out": adapter.d_model}
        assemble_manifest(out, settings, n_shards, dims)
    _barrier(world)

    dtype = getattr(torch, cfg.dtype)
    pad = pad_id_of(tokenizer)
    device = next(model.parameters()).device
    written = skipped = tokens = cells_done = 0
    shard_cells: list[CellPrompt] = []
    shard_idx = 0

    def flush(index: int, cells: list[CellPrompt]) -> None:
        nonlocal written, skipped, tokens, cells_done
        done = _finished(out, index)
        if done is not None:
            if done["cells_hash"] != sha256_json([c.content_hash() for c in cells]):
                raise InputError(f"{out} was harvested from other cells (shard {index} differs); pass a new --out or delete it")
            skipped += 1
            return
        parts = []
        with torch.no_grad(), capture_mlp(adapter, layers) as store:
            for b0 in range(0, len(cells), cfg.batch_size):
                batch = cells[b0 : b0 + cfg.batch_size]
                ids, mask = pad_batch(batch, pad)
                model(input_ids=ids.to(device), attention_mask=mask.to(device))
                cpu_store = {i: {k: v.to("cpu") for k, v in store[i].items()} for i in layers}
                parts.append(_collect_rows(batch, cpu_store, layers, cfg.positions, dtype))
                n_tok = int(mask.sum())
                tokens += n_tok
                cells_done += len(batch)
                if callback is not None:
                    callback(len(batch), n_tok)
        _write_shard(out, index, parts, layers, cells)
        written += 1
        if world == 1:
            assemble_manifest(out, settings, n_shards, {"d_in": adapter.d_model, "d_out": adapter.d_model})

    for cp in iter_cell_prompts(adata, tokenizer, opts, split="train", with_answer=cfg.with_answer, max_cells=n_train):
        shard_cells.append(cp)
        if len(shard_cells) == cfg.cells_per_shard:
            if shard_idx % world == rank:
                flush(shard_idx, shard_cells)
            shard_cells = []
            shard_idx += 1
    if shard_cells:
        if shard_idx % world == rank:
            flush(shard_idx, shard_cells)
        shard_idx += 1
    if shard_idx != n_shards:
        # cells with no expressed genes are skipped: the plan shrinks accordingly
        n_shards = shard_idx
    _barrier(world)
    manifest = assemble_manifest(out, settings, n_shards, {"d_in": adapter.d_model, "d_out": adapter.d_model}) if rank == 0 else {}
    _barrier(world)
    return HarvestResult(out, manifest, written, skipped, tokens, time.perf_counter() - t0)


def _barrier(world: int) -> None:
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def init_distributed() -> tuple[int, int]:
    """Join torchrun's process group (gloo) when ``WORLD_SIZE > 1``; returns ``(rank, world)``."""
    rank, world = dist_env()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return rank, world


def check_manifest(manifest: dict[str, Any], directory: str | os.PathLike[str]) -> None:
    """Refuse an unfinished harvest."""
    if not manifest.get("complete"):
        raise InputError(f"the harvest in {directory} is unfinished; rerun the same 'circuitdb harvest' command to resume it")
