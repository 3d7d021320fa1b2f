"""score_candidates (shared-prefix cache) against a naive full forward; answer_divergence."""

import pytest
import torch

from circuitdb.demo.tokenizer import train_bpe
from circuitdb.errors import InputError
from circuitdb.loaders.scoring import answer_divergence, score_candidates

CORPUS = [
    "CD3D CD3E IL7R LTB The cell type is: CD4+ T. CD8+ T. CD14+ Monocyte. Dendritic. NK cell.",
    "LYZ S100A8 S100A9 FCN1 cell type CD14+ Monocyte. CD19+ B. B cell.",
] * 20


@pytest.fixture(scope="module")
def tok():
    return train_bpe(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False,
                        max_position_embeddings=256)
    return GPTNeoXForCausalLM(cfg).eval()


def naive(model, tok, prompt, answer):
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(lp[len(p) - 1 + i, t]) for i, t in enumerate(a))


def test_score_candidates_matches_naive_forward(model, tok):
    prompts = ["CD3D CD3E The cell type is:", "LYZ S100A8 S100A9 FCN1 LYZ cell type is:", "IL7R is:"]
    cands = [" CD4+ T.", " CD8+ T.", " CD14+ Monocyte.", " Dendritic.", " B cell."]
    # batch_size 2 mixes prompt lengths (left padding) and a final partial batch
    got = score_candidates(model, tok, prompts, cands, batch_size=2)
    assert got.shape == (3, 5)
    want = torch.tensor([[naive(model, tok, p, c) for c in cands] for p in prompts])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_score_candidates_single_token_answers(model, tok):
    cands = [" CD", " B"]
    got = score_candidates(model, tok, ["LYZ is:"], cands)
    want = torch.tensor([[naive(model, tok, "LYZ is:", c) for c in cands]])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_answer_divergence_shared_prefix(tok):
    types = ["CD4+ T", "CD8+ T", "CD14+ Monocyte"]
    prefix, first = answer_divergence(tok, types)
    ids = {c: tok(f" {c}.", add_special_tokens=False)["input_ids"] for c in types}
    # every candidate's answer starts with the shared prefix, and the next token is the one reported
    for c in types:
        assert ids[c][: len(prefix)] == prefix
        assert first[c] == ids[c][len(prefix)]
    assert tok.decode(prefix) == " CD"
    assert len(set(first.values())) > 1


def test_answer_divergence_same_first_token_later_divergence(tok):
    # " CD4+ T." and " CD4+ B." share " CD", "4", "+": the divergence is deeper
    prefix, first = answer_divergence(tok, ["CD4+ T", "CD4+ B"])
    assert first["CD4+ T"] != first["CD4+ B"]
    assert tok.decode(prefix).startswith(" CD4+")


def test_answer_divergence_on_shipped_cell_types():
    from transformers import AutoTokenizer

    from circuitdb.demo import model_dir

    t = AutoTokenizer.from_pretrained(model_dir())
    prefix, first = answer_divergence(t, ["CD4+/CD25 T Reg", "CD4+/CD45RO+ Memory", "CD4+/CD45RA+/CD25- Naive T"])
    assert t.decode(prefix) == " CD4+/CD"
    assert first["CD4+/CD45RO+ Memory"] == first["CD4+/CD45RA+/CD25- Naive T"] != first["CD4+/CD25 T Reg"]


def test_answer_divergence_identical_tokenization_is_an_error(tok):
    with pytest.raises(InputError, match="tokenize identically"):
        answer_divergence(tok, ["B cell", "B cell"])


def test_answer_divergence_prefix_candidate_is_an_error(tok):
    from circuitdb.loaders.prompts import PromptTemplate

    with pytest.raises(InputError, match="prefix"):
        answer_divergence(tok, ["B", "B cell"], template=PromptTemplate(answer=" {cell_type}"))
