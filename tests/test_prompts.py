"""The C2S prompt and the gene <-> token-span map, on real fast tokenizers built offline."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from circuitdb.errors import InputError
from circuitdb.loaders.prompts import (
    DEFAULT_PROMPT,
    GeneSpan,
    PromptTemplate,
    build_prompt,
    gene_token_spans,
    token_gene_index,
)
from circuitdb.loaders.sentences import SentenceOptions, cell_sentences


@pytest.fixture(scope="module")
def pbmc_sentences():
    a = sc.datasets.pbmc68k_reduced()
    sents, _ = cell_sentences(a, SentenceOptions(label_key="bulk_labels", top_k=60))
    return sents


def _corpus(sents):
    yield DEFAULT_PROMPT
    for s in sents[::3]:
        yield build_prompt(s.genes).text + f" {s.label}."


def neox_like(sents, vocab_size=400):
    """A ByteLevel BPE like GPT-NeoX/Pythia's, small enough that genes span several tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(sents), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def gemma_like(sents, vocab_size=400):
    """SentencePiece-style BPE like Gemma's: trained on whitespace-split pieces, then used as HF ships
    Gemma: spaces become '▁' in a normaliser, no pre-tokeniser, byte fallback, a <bos> in front."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  show_progress=False)
    tok.train_from_iterator(_corpus(sents), trainer)
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", pad_token="<pad>")


def unigram_like(sents, vocab_size=300):
    """A Unigram model with a Metaspace pre-tokeniser (SentencePiece's other flavour, T5/Llama-1 style)."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>"], unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(_corpus(sents), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


@pytest.fixture(scope="module", params=["neox", "gemma", "unigram"])
def tokenizer(request, pbmc_sentences):
    return {"neox": neox_like, "gemma": gemma_like, "unigram": unigram_like}[request.param](pbmc_sentences)


def check_spans(tok, prompt, ids, spans):
    assert [s.gene for s in spans] == list(prompt.genes)
    assert [s.rank for s in spans] == list(range(len(prompt.genes)))
    enc = tok(prompt.text, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    assert ids == enc["input_ids"]
    prev_end = 0
    for s, (c0, c1) in zip(spans, prompt.gene_char_spans):
        assert s.end > s.start >= prev_end  # non-empty, in order, no overlap
        prev_end = s.end
        decoded = tok.decode(ids[s.start:s.end]).replace("▁", " ")
        assert decoded.strip() == s.gene, (decoded, s.gene)
        # every token of the span touches the gene's characters ...
        for p in range(s.start, s.end):
            o0, o1 = offsets[p]
            assert o0 < c1 and o1 > c0 - 1
        # ... and together they cover all of them
        assert offsets[s.start][0] <= c0 and offsets[s.end - 1][1] >= c1
    # tokens outside every span carry no gene character
    owner = token_gene_index(spans, len(ids))
    gene_chars = np.zeros(len(prompt.text) + 1, dtype=bool)
    for c0, c1 in prompt.gene_char_spans:
        gene_chars[c0:c1] = True
    for p, (o0, o1) in enumerate(offsets):
        if owner[p] == -1:
            assert not gene_chars[o0:o1].any(), (p, prompt.text[o0:o1])


def test_spans_on_real_cells(tokenizer, pbmc_sentences):
    multi = 0
    total = 0
    for s in pbmc_sentences[1::7]:
        prompt = build_prompt(s.genes)
        ids, spans = gene_token_spans(tokenizer, prompt)
        check_spans(tokenizer, prompt, ids, spans)
        multi += sum(sp.end - sp.start > 1 for sp in spans)
        total += len(spans)
    assert multi > total * 0.3, "the small vocab should split many genes into several tokens"


def test_neox_decoding_gives_genes_back(pbmc_sentences):
    tok = neox_like(pbmc_sentences)
    s = pbmc_sentences[5]
    prompt = build_prompt(s.genes, organism="Homo sapiens")
    ids, spans = gene_token_spans(tok, prompt)
    assert [tok.decode(ids[sp.start:sp.end]).strip() for sp in spans] == list(s.genes)
    # the template's own tokens (" cell", "Cell sentence:") are before the first gene
    assert spans[0].start > 10 and token_gene_index(spans, len(ids))[: spans[0].start] == [-1] * spans[0].start


def test_gemma_bos_is_not_a_gene(pbmc_sentences):
    tok = gemma_like(pbmc_sentences)
    prompt = build_prompt(pbmc_sentences[0].genes)
    ids, spans = gene_token_spans(tok, prompt)
    assert ids[0] == tok.bos_token_id
    ids2, spans2 = gene_token_spans(tok, prompt, add_special_tokens=False)
    assert ids2 == ids[1:]
    assert [(s.start - 1, s.end - 1) for s in spans] == [(s.start, s.end) for s in spans2]


def test_straddling_token_goes_to_earlier_gene():
    """A tokenizer that merges across the space ('A B' as one token) must not give two genes one token."""
    vocab = {"<unk>": 0, "x": 1, "AB": 2, "B▁C": 3, "C": 4, "D": 5, "▁": 6, "A": 7, "B": 8, ".": 9, ":": 10}
    merges = [("A", "B"), ("B", "▁"), ("B▁", "C")]
    tok = Tokenizer(models.BPE(vocab={**vocab, "B▁": 11}, merges=merges, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    t = PromptTemplate(prompt="x:{genes}.")
    prompt = build_prompt(["AB", "C", "D"], template=t)
    ids, spans = gene_token_spans(fast, prompt)
    check_spans(fast, prompt, ids, spans)
    prompt = build_prompt(["B", "C"], template=t)  # "B▁C" is one token: C has none of its own
    with pytest.raises(InputError, match="'C'.*no token of its own"):
        gene_token_spans(fast, prompt)


def test_roundtrip_through_save_and_autotokenizer(tmp_path, pbmc_sentences):
    tok = neox_like(pbmc_sentences)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    prompt = build_prompt(pbmc_sentences[2].genes)
    assert gene_token_spans(again, prompt) == gene_token_spans(tok, prompt)


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(InputError, match="fast tokenizer"):
        gene_token_spans(Slow(), build_prompt(["CD3E"]))


# --- the prompt itself ------------------------------------------------------------

def test_default_prompt_text_and_char_spans():
    p = build_prompt(["CD3E", "MS4A1", "LYZ"], organism="Homo sapiens")
    assert p.text == (
        "The following is a list of 3 gene names ordered by descending expression level in a Homo sapiens cell. "
        "Your task is to give the cell type which this cell belongs to based on its gene expression.\n"
        "Cell sentence: CD3E MS4A1 LYZ.\nThe cell type corresponding to these genes is:"
    )
    assert [p.text[a:b] for a, b in p.gene_char_spans] == ["CD3E", "MS4A1", "LYZ"]
    assert PromptTemplate().answer_text("CD14+ Monocyte") == " CD14+ Monocyte."


def test_custom_template():
    t = PromptTemplate(prompt="{organism} cell, {n} genes: {genes} ->", answer=" [{cell_type}]")
    p = build_prompt(["A", "BB"], organism="Mus musculus", template=t)
    assert p.text == "Mus musculus cell, 2 genes: A BB ->"
    assert [p.text[a:b] for a, b in p.gene_char_spans] == ["A", "BB"]
    assert t.answer_text("B cell") == " [B cell]"


@pytest.mark.parametrize("kwargs, needle", [
    ({"prompt": "no genes here"}, "{genes}"),
    ({"prompt": "{genes} and {genes}"}, "exactly once"),
    ({"prompt": "{genes} {tissue}"}, "bad prompt/answer template"),
    ({"answer": " {label}."}, "{cell_type}"),
])
def test_bad_templates(kwargs, needle):
    with pytest.raises(InputError, match=needle.replace("{", r"\{").replace("}", r"\}")):
        PromptTemplate(**kwargs)


@pytest.mark.parametrize("genes", [["CD3E", ""], ["CD3E", "HLA DRA"]])
def test_bad_genes(genes):
    with pytest.raises(InputError, match="whitespace"):
        build_prompt(genes)


def test_token_gene_index():
    spans = [GeneSpan("A", 0, 1, 3), GeneSpan("B", 1, 3, 4)]
    assert token_gene_index(spans, 6) == [-1, 0, 0, 1, -1, -1]
