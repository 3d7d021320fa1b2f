import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

from circuitdb.interpret.collect import collect_feature_stats
from circuitdb.loaders.prompts import build_prompt
from circuitdb.loaders.sentences import CellSentence
from circuitdb.transcoder.model import Transcoder, TranscoderConfig

GENES = ["CD3E", "CD14", "MS4A1", "LYZ", "NKG7", "GNLY", "CD79A", "FCGR3A"]


def _tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [build_prompt(GENES[i:] + GENES[:i]).text for i in range(len(GENES))]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_collect_matches_manual_per_gene_max():
    torch.manual_seed(0)
    tok = _tokenizer()
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, rotary_pct=0.25, use_parallel_residual=True)).eval()
    tcs = {l: Transcoder(TranscoderConfig(d_in=32, d_features=64, activation="relu")) for l in (0, 1)}
    for t in tcs.values():
        torch.nn.init.normal_(t.b_enc, 0.5)
    cells = [CellSentence(f"c{i}", i, "A" if i % 2 else "B", tuple(GENES[i % 3 : i % 3 + 4])) for i in range(4)]
    stats = collect_feature_stats(model, tok, tcs, cells, features={0: np.array([1, 5]), 1: np.array([2])})
    assert list(stats.features["feature_id"]) == ["L0/1", "L0/5", "L1/2"]
    assert stats.mass.shape == (3, len(stats.genes))
    # occurrences: each gene counted once per cell that has it
    expected_count = {g: sum(g in c.genes for c in cells) for g in stats.genes}
    assert dict(zip(stats.genes, stats.gene_count.tolist())) == expected_count
    # manual check of layer 1 feature 2 on cell 0 for its first gene
    from circuitdb.loaders.prompts import gene_token_spans

    ids, spans = gene_token_spans(tok, build_prompt(cells[0].genes))
    cap = {}
    h = model.gpt_neox.layers[1].mlp.register_forward_hook(lambda m, a, o: cap.setdefault("x", a[0]))
    with torch.no_grad():
        model(torch.tensor([ids]))
    h.remove()
    acts = tcs[1].encode(cap["x"][0])[:, 2]
    per_gene = [acts[s.start : s.end].max().item() for s in spans]
    assert stats.cell_values[0, 2] == np.float32(max(per_gene))
    assert stats.labels.tolist() == ["B", "A", "B", "A"]
