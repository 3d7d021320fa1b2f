"""``circuitdb attribute``: the attribution graph of one cell."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from circuitdb.cli.console import detail, info, progress
from circuitdb.errors import InputError
from circuitdb.loaders.io import read_anndata
from circuitdb.transcoder.common import model_card


def _no_grad(fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` without autograd, restoring the grad mode after (commands also run in-process)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def _load_model(model_dir: Path, use_f64: bool, device: str = "cpu") -> tuple[Any, Any]:
    """Model + fast tokenizer through the shared loader (float64 models are loaded as float32 then cast)."""
    from circuitdb.loaders.model import load_model

    loaded = load_model(model_dir, device=device)
    model = loaded.model.double() if use_f64 else loaded.model
    return model.eval(), loaded.tokenizer


def _find_cell(adata: Any, cell_id: str, opts: Any) -> Any:
    from circuitdb.loaders.sentences import iter_cell_sentences

    names = [str(x) for x in adata.obs_names]
    if cell_id not in names:
        near = ", ".join(names[:3])
        raise InputError(f"cell {cell_id!r} is not in the data ({len(names)} cells, e.g. {near}); pass an obs name with --cell")
    for cell in iter_cell_sentences(adata, opts):
        if cell.cell_id == cell_id:
            return cell
    raise InputError(f"cell {cell_id!r} is not in the data; pass an obs name with --cell")  # pragma: no cover


@click.command("attribute")
@click.argument("data")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Model directory (HF format).")
@click.option("--transcoders", "tc_dir", required=True, type=click.Path(path_type=Path), help="Transcoder directory (one per layer).")
@click.option("--cell", "cell_id", required=True, help="The cell's obs name in DATA.")
@click.option("--contrast", default=None, metavar="TYPE", help="Explain logit(answer) - logit(TYPE).")
@click.option("--answer", default=None, metavar="TYPE", help="Cell type to explain (default: the cell's label).")
@click.option("--label-key", default=None, help="obs column with cell types (default: the model card's, else bulk_labels).")
@click.option("--top-k", type=int, default=None, help="Genes per cell sentence (default: the model card's, else 200).")
@click.option("--max-feature-nodes", type=int, default=2000, show_default=True, help="Feature budget (0: every active feature).")
@click.option("--batch-size", type=int, default=0, show_default=True, help="Rows per batched backward pass (0: automatic).")
@click.option("--head-split-nodes", type=int, default=32, show_default=True, help="Nodes whose incoming edges are split per head.")
@click.option("--float64", "use_f64", is_flag=True, help="Attribute in float64 (exact sums).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or cuda:N: where the model, transcoders and batched passes run (the graph is written from the CPU).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Output .pt (a .json beside it when the exporter is available).")
@_no_grad
def attribute_cmd(data: str, model_dir: Path, tc_dir: Path, cell_id: str, contrast: str | None, answer: str | None,
                  label_key: str | None, top_k: int | None, max_feature_nodes: int, batch_size: int, head_split_nodes: int,
                  use_f64: bool, device: str, out: Path) -> None:
    """Attribution graph of one cell of DATA: genes -> transcoder features -> cell-type answer.

    Writes OUT (.pt, an AttributionGraph) and, when the graph exporter is installed,
    OUT with .json (circuit-tracer/Neuronpedia graph JSON of the pruned graph).
    """
    import torch

    from circuitdb.attribution.attribute import attribute
    from circuitdb.attribution.replacement import ReplacementModel, load_transcoders
    from circuitdb.loaders.prompts import DEFAULT_ORGANISM, PromptTemplate
    from circuitdb.loaders.sentences import SentenceOptions

    from circuitdb.loaders.model import check_device

    if max_feature_nodes < 0 or batch_size < 0 or head_split_nodes < 0:
        raise InputError("--max-feature-nodes, --batch-size and --head-split-nodes must be >= 0")
    dev = check_device(device)  # before any data is read: a missing GPU is a one-line error
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device}: attribution runs on cpu or cuda; use --device cpu")
    meta = model_card(model_dir) if model_dir.is_dir() else {}
    label_key = label_key or meta.get("label_key") or "bulk_labels"
    top_k = top_k or int(meta.get("top_k", 0) or 0) or 200
    organism = str(meta.get("organism", DEFAULT_ORGANISM))
    dtype = torch.float64 if use_f64 else torch.float32
    adata = read_anndata(data, backed=False)
    if label_key not in adata.obs.columns:
        raise InputError(f"--label-key {label_key!r} is not an obs column of {data}; pick one of {list(adata.obs.columns)[:10]}")
    candidates = [str(c) for c in (meta.get("cell_types") or sorted(adata.obs[label_key].astype(str).unique()))]
    cell = _find_cell(adata, cell_id, SentenceOptions(top_k=top_k, label_key=label_key))
    answer = answer or cell.label
    if answer not in candidates:
        raise InputError(f"cell type {answer!r} is not among the model's answers {candidates}; pass --answer with one of them")
    if contrast is not None and contrast not in candidates:
        raise InputError(f"--contrast {contrast!r} is not among the model's answers {candidates}; pick one of them")
    model, tokenizer = _load_model(model_dir, use_f64, device)
    rm = ReplacementModel(model, load_transcoders(tc_dir, dtype=dtype, device=dev))
    detail(f"cell {cell_id}: {cell.n_genes} genes, label {cell.label!r}; {len(candidates)} candidate types")
    with progress() as bar:
        tasks: dict[str, Any] = {}

        def cb(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        graph = attribute(cell, rm, tokenizer=tokenizer, answer=answer, candidates=candidates, contrast=contrast,
                          template=PromptTemplate(), organism=organism, max_feature_nodes=max_feature_nodes or None,
                          batch_size=batch_size or None, dtype=dtype, head_split_nodes=head_split_nodes, callback=cb)
    out = out if out.suffix == ".pt" else out.with_suffix(out.suffix + ".pt") if out.suffix else out.with_suffix(".pt")
    graph.save(out)
    m = graph.metadata
    info(f"{m['n_feature_nodes']} features ({m['n_active_features']} active), {m['n_tokens']} tokens, target "
         f"{m['target']['label']!r} = {m['target']['value']:.3f} in {m['seconds']:.1f}s -> {out}")
    from circuitdb.attribution.export import write_neuronpedia

    js = write_neuronpedia(graph, out.with_suffix(".json"), slug=f"{cell_id}")
    info(f"graph JSON -> {js}")
