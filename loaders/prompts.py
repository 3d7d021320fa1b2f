"""The C2S cell-type prompt, and the gene <-> token-span map.

Every later stage turns token positions back into genes through
:func:`gene_token_spans`, so a gene split into several BPE tokens is one gene.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from circuitdb.errors import InputError

#: C2S cell-type prediction prompt (cell2sentence "cell type prediction" task).
DEFAULT_PROMPT = (
    "The following is a list of {n} gene names ordered by descending expression level "
    "in a {organism} cell. Your task is to give the cell type which this cell belongs to "
    "based on its gene expression.\nCell sentence: {genes}.\n"
    "The cell type corresponding to these genes is:"
)
#: The answer appended after the prompt; the loss/score is over its tokens.
DEFAULT_ANSWER = " {cell_type}."
DEFAULT_ORGANISM = "Homo sapiens"


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt with ``{n}``, ``{organism}`` and ``{genes}``; an answer with ``{cell_type}``."""

    prompt: str = DEFAULT_PROMPT
    answer: str = DEFAULT_ANSWER

    def __post_init__(self) -> None:
        for key in ("{genes}",):
            if key not in self.prompt:
                raise InputError(f"prompt template lacks {key}; add it where the cell sentence goes")
        if "{cell_type}" not in self.answer:
            raise InputError("answer template lacks {cell_type}; e.g. ' {cell_type}.'")

    def answer_text(self, cell_type: str) -> str:
        return self.answer.format(cell_type=cell_type)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and the character span of each gene in it."""

    text: str
    genes: tuple[str, ...]
    gene_char_spans: tuple[tuple[int, int], ...] = field(repr=False)


def build_prompt(
    genes: Sequence[str],
    *,
    organism: str = DEFAULT_ORGANISM,
    template: PromptTemplate | None = None,
) -> Prompt:
    """Render the C2S prompt for one cell's ranked genes, recording each gene's characters."""
    template = template or PromptTemplate()
    marker = "\x00GENES\x00"
    skeleton = template.prompt.format(n=len(genes), organism=organism, genes=marker)
    head, _, tail = skeleton.partition(marker)
    spans: list[tuple[int, int]] = []
    pos = len(head)
    for i, g in enumerate(genes):
        if i:
            pos += 1  # the separating space
        spans.append((pos, pos + len(g)))
        pos += len(g)
    text = head + " ".join(genes) + tail
    return Prompt(text=text, genes=tuple(genes), gene_char_spans=tuple(spans))


@dataclass(frozen=True)
class GeneSpan:
    """Gene ``gene`` (its rank ``rank`` in the sentence) covers tokens ``[start, end)``."""

    gene: str
    rank: int
    start: int
    end: int


def gene_token_spans(tokenizer: Any, prompt: Prompt, *, add_special_tokens: bool = True) -> tuple[list[int], list[GeneSpan]]:
    """Tokenise ``prompt`` and map each gene to the tokens that overlap its characters.

    Works for any Hugging Face *fast* tokenizer (it needs offset mappings).
    Returns ``(input_ids, spans)``; ``spans[i]`` belongs to ``prompt.genes[i]``.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("the gene <-> token map needs a fast tokenizer (tokenizers backend); load it with use_fast=True")
    enc = tokenizer(prompt.text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    spans: list[GeneSpan] = []
    t = 0
    n_tok = len(offsets)
    for rank, (gene, (c0, c1)) in enumerate(zip(prompt.genes, prompt.gene_char_spans)):
        # tokens are in character order; advance to the first token ending after c0
        while t < n_tok and (offsets[t][1] <= c0 or offsets[t][0] == offsets[t][1]):
            t += 1
        start = t
        end = start
        while end < n_tok and offsets[end][0] < c1:
            end += 1
        if end == start:
            raise InputError(f"gene {gene!r} maps to no token; is the tokenizer's offset mapping intact?")
        spans.append(GeneSpan(gene=gene, rank=rank, start=start, end=end))
        t = end - 1 if end > start and offsets[end - 1][1] > c1 else end
    return ids, spans
