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
        if self.prompt.count("{genes}") != 1:
            raise InputError("prompt template must contain {genes} exactly once, where the cell sentence goes")
        if "{cell_type}" not in self.answer:
            raise InputError("answer template lacks {cell_type}; e.g. ' {cell_type}.'")
        try:
            self.prompt.format(n=1, organism="x", genes="x")
            self.answer.format(cell_type="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(
                f"bad prompt/answer template ({type(exc).__name__}: {exc}); only {{n}}, {{organism}}, {{genes}} "
                "and {cell_type} may appear in braces (write {{ and }} for literal braces)"
            ) from None

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
    for g in genes:
        if not g or any(ch.isspace() for ch in g):
            raise InputError(f"gene symbol {g!r} is empty or contains whitespace; cell sentences join symbols with single spaces")
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
    Special tokens (empty offsets) and tokens of the template text belong to no
    gene. Spans never overlap: a token that straddles two genes (possible with
    tokenizers that merge across spaces) belongs to the earlier gene.

    Parameters
    ----------
    tokenizer
        A Hugging Face fast tokenizer.
    prompt
        From :func:`build_prompt`.
    add_special_tokens
        Passed to the tokenizer (e.g. Gemma's ``<bos>``).

    Returns
    -------
    (input_ids, spans)
        ``spans[i]`` belongs to ``prompt.genes[i]`` and covers tokens ``[start, end)``.

    Raises
    ------
    InputError
        A slow tokenizer, or a gene that gets no token of its own.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("the gene <-> token map needs a fast tokenizer (tokenizers backend); load it with use_fast=True")
    enc = tokenizer(prompt.text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [(int(o[0]), int(o[1])) for o in enc["offset_mapping"]]
    spans: list[GeneSpan] = []
    t = 0
    n_tok = len(offsets)
    for rank, (gene, (c0, c1)) in enumerate(zip(prompt.genes, prompt.gene_char_spans)):
        # skip tokens that end before the gene starts, and empty (special) tokens
        while t < n_tok and (offsets[t][1] <= c0 or offsets[t][0] == offsets[t][1]):
            t += 1
        start = t
        while t < n_tok and offsets[t][0] < c1:
            t += 1
        end = t
        while end > start and offsets[end - 1][0] == offsets[end - 1][1]:
            end -= 1  # never end a gene on an empty token
        if end == start:
            raise InputError(
                f"gene {gene!r} (rank {rank}) maps to no token of its own; the tokenizer merges it into a neighbour "
                "or lost its offset mapping: use a tokenizer that splits on spaces"
            )
        spans.append(GeneSpan(gene=gene, rank=rank, start=start, end=end))
    return ids, spans


def token_gene_index(spans: Sequence[GeneSpan], n_tokens: int) -> list[int]:
    """For each of ``n_tokens`` positions, the rank of the gene it belongs to, or ``-1``."""
    out = [-1] * n_tokens
    for s in spans:
        for p in range(s.start, s.end):
            out[p] = s.rank
    return out
