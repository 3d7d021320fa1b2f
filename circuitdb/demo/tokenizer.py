"""A small byte-level BPE tokenizer for cell sentences, trained on the training cells only.

Pythia's tokenizer (GPT-NeoX BPE, 50k tokens) splits most gene symbols into several
tokens; a ~1000-token byte-level BPE trained on cell sentences does the same at
demo scale. The pre-tokenizer is GPT-2's regex (as in Pythia), so letters, digits
and punctuation inside a symbol (``HLA-DRB1``) never merge across their boundary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

#: The one special token; like Pythia's, it marks the end of a text and doubles as pad.
EOS_TOKEN = "<|endoftext|>"


def train_bpe(texts: Iterable[str], *, vocab_size: int = 1000, min_frequency: int = 2) -> Any:
    """Train a byte-level BPE on ``texts`` and return a fast HF tokenizer.

    Parameters
    ----------
    texts
        The corpus: cell sentences and rendered prompts (+ answers) of the training cells.
    vocab_size
        Vocabulary size including the 256 byte tokens and the special token.
    min_frequency
        A pair must occur this often to be merged.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        No special tokens are added on encode (as Pythia's tokenizer); ``eos``,
        ``bos``, ``unk`` and ``pad`` are ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


@dataclass(frozen=True)
class TokensPerGene:
    """How many tokens each gene symbol takes (as ``" SYMBOL"`` inside a sentence)."""

    mean: float
    median: float
    max: int
    histogram: dict[int, int]
    frac_multi: float
    n_genes: int


def tokens_per_gene(tokenizer: Any, genes: Sequence[str]) -> TokensPerGene:
    """Token counts of the distinct ``genes`` as they appear mid-sentence (with a leading space)."""
    distinct = sorted(set(genes))
    counts = [len(tokenizer(" " + g, add_special_tokens=False)["input_ids"]) for g in distinct]
    hist = Counter(counts)
    n = len(counts)
    srt = sorted(counts)
    return TokensPerGene(
        mean=sum(counts) / n if n else 0.0,
        median=float(srt[n // 2]) if n else 0.0,
        max=max(counts) if n else 0,
        histogram={k: hist[k] for k in sorted(hist)},
        frac_multi=sum(c > 1 for c in counts) / n if n else 0.0,
        n_genes=n,
    )


def save_tokenizer(tokenizer: Any, out: Path) -> None:
    """Write ``tokenizer.json`` + HF config files so ``AutoTokenizer.from_pretrained(out)`` works."""
    tokenizer.save_pretrained(str(out))
