"""Shared plumbing of the transcoder stage: loading, the held-out split, prompts, hashing, atomic writes.

Held-out cells are those at obs positions ``0, every, 2*every, ...``; harvest and
training use the others, evaluation only these.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import torch

from circuitdb.errors import InputError
from circuitdb.loaders.prompts import DEFAULT_ORGANISM, PromptTemplate, build_prompt, gene_token_spans
from circuitdb.loaders.sentences import DEFAULT_TOP_K, SentenceOptions, iter_cell_sentences

Split = Literal["train", "heldout", "all"]
MODEL_CARD = "circuitdb.json"


def is_heldout(index: int, holdout_every: int) -> bool:
    """Whether the cell at obs position ``index`` is held out (every ``holdout_every``-th, from 0)."""
    return index % holdout_every == 0


def in_split(index: int, split: Split, holdout_every: int) -> bool:
    if split == "all":
        return True
    return is_heldout(index, holdout_every) == (split == "heldout")


# -- loading -------------------------------------------------------------------------
def load_model(model_dir: str | os.PathLike[str], *, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local directory, in eval mode (:func:`circuitdb.loaders.model.load_model`)."""
    from circuitdb.loaders.model import load_model as _load

    _quiet_transformers()
    path = Path(model_dir)
    if not path.is_dir():
        raise InputError(f"no model directory {path}; pass --model a directory with config.json and weights")
    loaded = _load(str(path), dtype=str(dtype).removeprefix("torch.")) if dtype is not None else _load(str(path))
    loaded.model.eval()
    return loaded.model, loaded.tokenizer


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def read_data(path: str | os.PathLike[str]) -> Any:
    """Read an AnnData (``.h5ad`` / ``.zarr``) through :func:`circuitdb.loaders.io.read_anndata`."""
    from circuitdb.loaders.io import read_anndata

    return read_anndata(path)


def model_card(model_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The ``circuitdb.json`` model card of a model directory, or ``{}``."""
    if model_dir is None:
        return {}
    p = Path(model_dir) / MODEL_CARD
    if not p.is_file():
        return {}
    try:
        return dict(json.loads(p.read_text()))
    except (ValueError, OSError) as exc:
        raise InputError(f"{p} is not valid JSON ({exc}); restore it or remove it") from None


def default_top_k(model_dir: str | os.PathLike[str] | None) -> int:
    """The model's own sentence length (its card's ``top_k``), else C2S's 200."""
    return int(model_card(model_dir).get("top_k", DEFAULT_TOP_K))


def model_fingerprint(model: torch.nn.Module) -> str:
    """A 16-hex hash of a model's config and weights (independent of where it was loaded from)."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        keys = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "vocab_size")
        h.update(json.dumps({k: getattr(cfg, k, None) for k in keys}, sort_keys=True).encode())
    for name, p in model.state_dict().items():
        h.update(name.encode())
        t = p.detach().to("cpu", torch.float32).contiguous()
        # a strided sample plus exact sums: cheap even for 400M parameters, and changes with any retraining
        flat = t.view(-1)
        h.update(flat[:: max(1, flat.numel() // 4096)].numpy().tobytes())
        h.update(repr(float(flat.double().sum())).encode())
    return h.hexdigest()[:16]


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# -- atomic writes -------------------------------------------------------------------
def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def save_tensors_atomic(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def torch_save_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)


# -- prompts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptOptions:
    """How cells become token sequences (shared by harvest, evaluation and activations).

    Parameters
    ----------
    top_k
        Genes per cell sentence (default: the model card's ``top_k``, else 200).
    label_key
        ``obs`` column of cell types (needed for answers and evaluation).
    organism
        Organism named in the prompt.
    layer
        Expression source for sentences: ``raw``, ``X`` or a layer name.
    symbol_key
        ``var`` column with gene symbols, or ``None`` for ``var_names``.
    seed
        Tie-break seed of the sentence ranking.
    holdout_every
        Every ``holdout_every``-th cell (from 0) is held out.
    prompt_template, answer_template
        Override the C2S prompt / answer (``None``: :class:`~circuitdb.loaders.prompts.PromptTemplate` defaults).
    """

    top_k: int = DEFAULT_TOP_K
    label_key: str | None = None
    organism: str = DEFAULT_ORGANISM
    layer: str = "raw"
    symbol_key: str | None = None
    seed: int = 0
    holdout_every: int = 5
    prompt_template: str | None = None
    answer_template: str | None = None

    def template(self) -> PromptTemplate:
        """The prompt template (the C2S default unless the model card gives its own)."""
        t = PromptTemplate()
        return PromptTemplate(prompt=self.prompt_template or t.prompt, answer=self.answer_template or t.answer)

    def __post_init__(self) -> None:
        if self.holdout_every < 2:
            raise InputError(f"--holdout-every must be at least 2, got {self.holdout_every}")
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")

    def sentence_options(self) -> SentenceOptions:
        return SentenceOptions(top_k=self.top_k, layer=self.layer, symbol_key=self.symbol_key, label_key=self.label_key, seed=self.seed)


@dataclass(frozen=True)
class CellPrompt:
    """One cell's token ids: the prompt, then (when labelled) the answer.

    ``gene_rank[t]`` is the rank of the gene that token ``t`` belongs to, or -1;
    ``answer_start`` is where the answer tokens begin (``len(input_ids)`` when none).
    """

    cell_id: str
    index: int
    label: str | None
    genes: tuple[str, ...]
    input_ids: tuple[int, ...]
    gene_rank: tuple[int, ...]
    answer_start: int
    prompt_text: str = ""

    @property
    def gene_spans(self) -> list[tuple[int, int]]:
        """``[start, end)`` token span of each gene, by rank."""
        spans: dict[int, list[int]] = {}
        for t, r in enumerate(self.gene_rank):
            if r >= 0:
                spans.setdefault(r, []).append(t)
        return [(min(spans[r]), max(spans[r]) + 1) for r in sorted(spans)]

    def content_hash(self) -> str:
        return sha256_json([self.cell_id, self.label, self.genes])


def cell_prompt(tokenizer: Any, sentence: Any, opts: PromptOptions, *, with_answer: bool = True, template: PromptTemplate | None = None) -> CellPrompt:
    """Tokenise one :class:`~circuitdb.loaders.sentences.CellSentence` into a :class:`CellPrompt`.

    The prompt and the answer are tokenised separately and concatenated (as the demo
    model was trained and as candidate scoring does), with no special tokens.
    """
    template = template or opts.template()
    prompt = build_prompt(sentence.genes, organism=opts.organism, template=template)
    ids, spans = gene_token_spans(tokenizer, prompt, add_special_tokens=False)
    rank = [-1] * len(ids)
    for s in spans:
        for t in range(s.start, s.end):
            rank[t] = s.rank
    answer_start = len(ids)
    if with_answer and sentence.label is not None:
        ans = list(tokenizer(template.answer_text(sentence.label), add_special_tokens=False)["input_ids"])
        ids = list(ids) + ans
        rank = rank + [-1] * len(ans)
    return CellPrompt(sentence.cell_id, sentence.index, sentence.label, tuple(sentence.genes), tuple(ids), tuple(rank), answer_start, prompt.text)


def iter_cell_prompts(
    adata: Any,
    tokenizer: Any,
    opts: PromptOptions,
    *,
    split: Split = "train",
    with_answer: bool = True,
    template: PromptTemplate | None = None,
    max_cells: int | None = None,
) -> Iterator[CellPrompt]:
    """Yield the cells of ``split`` (obs order) as :class:`CellPrompt`; skips cells with no expressed genes."""
    n = 0
    for s in iter_cell_sentences(adata, opts.sentence_options()):
        if not in_split(s.index, split, opts.holdout_every) or not s.genes:
            continue
        yield cell_prompt(tokenizer, s, opts, with_answer=with_answer, template=template)
        n += 1
        if max_cells is not None and n >= max_cells:
            return


def pad_batch(prompts: list[CellPrompt], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)`` for a batch of prompts."""
    n = max(len(p.input_ids) for p in prompts)
    ids = torch.full((len(prompts), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), n), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p.input_ids)] = torch.tensor(p.input_ids)
        mask[i, : len(p.input_ids)] = 1
    return ids, mask


def pad_id_of(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, attr, None)
        if v is not None:
            return int(v)
    return 0


def check_labels(adata: Any, label_key: str | None) -> None:
    if label_key is None:
        raise InputError("no --label-key given; name the obs column with cell types")
    if label_key not in adata.obs.columns:
        raise InputError(f"no obs column {label_key!r}; columns: {', '.join(map(str, adata.obs.columns))}")
