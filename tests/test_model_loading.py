"""Model loading (directories, hub ids offline-first, bad model directories) and architecture adapters,
on tiny random GPT-NeoX and Gemma-2 models built from configs, plus the exact C2S-Pythia-410m config."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import adapter_for
from circuitdb.loaders.configs import (
    c2s_pythia_410m_config,
    c2s_scale_gemma2_2b_config,
    random_model,
    tiny_config,
)
from circuitdb.loaders.model import load_model, weights_hash
from circuitdb.loaders.prompts import build_prompt, gene_token_spans

GENES = ["CD3E", "CD3D", "MS4A1", "CD79A", "LYZ", "S100A8", "S100A9", "FCGR3A", "NKG7", "GNLY", "HLA-DRA", "CST3",
         "FTL", "PPBP", "IL7R", "CCR7", "CD14", "CD8A", "MALAT1", "RPL13"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    corpus = [build_prompt(GENES[i:] + GENES[:i]).text for i in range(len(GENES))]
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def save_model(tmp_path, arch, tokenizer, name=None, **cfg):
    d = tmp_path / (name or arch)
    model = random_model(tiny_config(arch, vocab_size=len(tokenizer), **cfg))
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d, model


@pytest.fixture(params=["gpt_neox", "gemma2"])
def arch(request):
    return request.param


def test_load_directory(tmp_path, tokenizer, arch):
    d, ref = save_model(tmp_path, arch, tokenizer)
    lm = load_model(d)
    assert not lm.model.training and lm.adapter.arch == arch and lm.path == d and lm.name == str(d)
    assert lm.tokenizer.is_fast and len(lm.tokenizer) == len(tokenizer)
    assert lm.hash.startswith("sha256:") and lm.hash == load_model(d).hash == weights_hash(d)
    assert next(lm.model.parameters()).dtype == torch.float32
    prompt = build_prompt(GENES[:8])
    ids, spans = gene_token_spans(lm.tokenizer, prompt)
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.allclose(lm.model(x).logits, ref(x).logits, atol=1e-5)
    if arch == "gemma2":
        assert lm.model.config._attn_implementation == "eager"


def test_bfloat16(tmp_path, tokenizer):
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    lm = load_model(d, dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert lm.hash == load_model(d).hash  # the hash is of the files, not of the loaded dtype


def test_hash_changes_with_weights(tmp_path, tokenizer):
    d, model = save_model(tmp_path, "gpt_neox", tokenizer)
    h0 = weights_hash(d)
    with torch.no_grad():
        model.gpt_neox.layers[1].mlp.dense_4h_to_h.weight[0, 0] += 1.0
    model.save_pretrained(d)
    h1 = weights_hash(d)
    assert h1 != h0
    assert weights_hash(d, full=True) not in (h0, h1)  # a different (full) digest
    assert weights_hash(d, full=True) == weights_hash(d, full=True)


def test_legacy_pythia_config_keys(tmp_path, tokenizer):
    """Real C2S-Pythia config.json files use rotary_pct / rotary_emb_base (transformers v4 names)."""
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    cfg = json.loads((d / "config.json").read_text())
    rope = cfg.pop("rope_parameters")
    cfg.update(rotary_pct=rope["partial_rotary_factor"], rotary_emb_base=rope["rope_theta"])
    (d / "config.json").write_text(json.dumps(cfg))
    lm = load_model(d)
    assert lm.adapter.rotary_dim == 4 and lm.adapter.parallel_residual and not lm.adapter.tied_embeddings


# --- adapters, checked against forward hooks -----------------------------------------

def _capture(model, adapter, x):
    """Hook every layer: residual input, attention output, MLP input and output, layer output."""
    rec: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    try:
        for parts in adapter.layers():
            i = parts.index

            def pre(mod, args, kwargs, i=i):
                rec[("resid_pre", i)] = (args[0] if args else kwargs["hidden_states"]).detach()

            def post(mod, args, kwargs, out, i=i):
                rec[("resid_post", i)] = (out[0] if isinstance(out, tuple) else out).detach()

            def attn(mod, args, out, i=i):
                rec[("attn_out", i)] = out[0].detach()

            def mlp(mod, args, out, i=i):
                rec[("mlp_in", i)] = args[0].detach()
                rec[("mlp_out", i)] = out.detach()

            handles += [parts.block.register_forward_pre_hook(pre, with_kwargs=True),
                        parts.block.register_forward_hook(post, with_kwargs=True),
                        parts.attn.register_forward_hook(attn), parts.mlp.register_forward_hook(mlp)]
        with torch.no_grad():
            logits = model(x).logits
    finally:
        for h in handles:
            h.remove()
    return rec, logits


@pytest.mark.parametrize("arch, cfg", [("gpt_neox", {}), ("gpt_neox", {"use_parallel_residual": False}), ("gemma2", {})])
def test_adapter_matches_hooks(arch, cfg):
    model = random_model(tiny_config(arch, vocab_size=300, **cfg))
    ad = adapter_for(model)
    assert ad.parallel_residual == (arch == "gpt_neox" and cfg.get("use_parallel_residual", True))
    x = torch.randint(0, 300, (2, 24))  # longer than Gemma's sliding window of 8
    rec, logits = _capture(model, ad, x)
    named = dict(model.named_modules())
    with torch.no_grad():
        for parts in ad.layers():
            i = parts.index
            assert named[parts.mlp_name] is parts.mlp and named[parts.attn_name] is parts.attn
            assert named[parts.block_name] is parts.block
            assert parts.attn_out_name in named and parts.mlp_out_name in named
            assert parts.mlp_in_norm in parts.norms
            expected_in = ad.mlp_input(i, rec[("resid_pre", i)], rec[("attn_out", i)])
            torch.testing.assert_close(rec[("mlp_in", i)], expected_in, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(parts.mlp(rec[("mlp_in", i)]), rec[("mlp_out", i)], atol=1e-5, rtol=1e-5)
            expected_out = ad.block_output(i, rec[("resid_pre", i)], rec[("attn_out", i)], rec[("mlp_out", i)])
            torch.testing.assert_close(rec[("resid_post", i)], expected_out, atol=1e-5, rtol=1e-5)
            if i + 1 < ad.n_layers:
                torch.testing.assert_close(rec[("resid_pre", i + 1)], rec[("resid_post", i)])
        torch.testing.assert_close(ad.logits(rec[("resid_post", ad.n_layers - 1)]), logits, atol=1e-5, rtol=1e-5)
        emb = ad.embed(x) * torch.tensor(ad.embed_scale, dtype=torch.float32)
        torch.testing.assert_close(rec[("resid_pre", 0)], emb, atol=1e-5, rtol=1e-5)
        rows = ad.embed.weight[x] * ad.embedding_row_scale
        torch.testing.assert_close(rec[("resid_pre", 0)], rows, atol=1e-4, rtol=1e-4)
    if arch == "gpt_neox" and ad.parallel_residual:
        # the parallel residual means the MLP does NOT see resid_pre + attn_out
        wrong = parts.norms["post_attention_layernorm"](rec[("resid_pre", 1)] + rec[("attn_out", 1)])
        assert not torch.allclose(wrong, rec[("mlp_in", 1)], atol=1e-3)


def test_adapter_facts():
    neox = adapter_for(random_model(tiny_config("gpt_neox")))
    assert (neox.n_layers, neox.d_model, neox.d_mlp, neox.n_heads, neox.head_dim, neox.rotary_dim) == (2, 64, 256, 4, 16, 4)
    assert neox.unembed.weight.data_ptr() != neox.embed.weight.data_ptr() and not neox.tied_embeddings
    assert neox.final_logit_softcap is None and neox.embed_scale == 1.0
    gemma = adapter_for(random_model(tiny_config("gemma2")))
    assert (gemma.n_heads, gemma.n_kv_heads, gemma.head_dim, gemma.d_mlp) == (4, 2, 16, 128)
    assert (gemma.attn_logit_softcap, gemma.final_logit_softcap) == (50.0, 30.0)
    assert gemma.tied_embeddings and gemma.unembed.weight.data_ptr() == gemma.embed.weight.data_ptr()
    assert gemma.extra["layer_types"] == ["sliding_attention", "full_attention"]
    assert gemma.layer(1).mlp_out_norm == "post_feedforward_layernorm" and neox.layer(1).mlp_out_norm is None


def test_resolve_layers():
    ad = adapter_for(random_model(tiny_config("gpt_neox", num_hidden_layers=6)))
    assert ad.resolve_layers("all") == ad.resolve_layers(None) == list(range(6))
    assert ad.resolve_layers("4,0,2,2") == [0, 2, 4]
    assert ad.resolve_layers("1-3, 5") == [1, 2, 3, 5]
    assert ad.resolve_layers([3, 1]) == [1, 3]
    for bad in ("x", "3-1", "-1", "1-", "", "0,,1"):
        with pytest.raises(InputError, match="layer list"):
            ad.resolve_layers(bad)
    with pytest.raises(InputError, match="out of range.*0..5"):
        ad.resolve_layers("2,6")
    with pytest.raises(InputError, match="out of range"):
        ad.layer(6)


def test_unsupported_architecture(tmp_path, tokenizer):
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer)))
    with pytest.raises(InputError, match="unsupported architecture 'gpt2'"):
        adapter_for(gpt2)
    gpt2.save_pretrained(tmp_path / "g")
    tokenizer.save_pretrained(tmp_path / "g")
    with pytest.raises(InputError, match="'gpt2' model.*gpt_neox.*gemma2"):
        load_model(tmp_path / "g")


# --- bad model directories ------------------------------------------------------------------

def test_directory_without_weights(tmp_path, tokenizer):
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    (d / "model.safetensors").unlink()
    with pytest.raises(InputError) as err:
        load_model(d)
    msg = str(err.value)
    assert str(d) in msg and "no model weights" in msg and "model.safetensors" in msg and "\n" not in msg


def test_directory_without_config_or_tokenizer(tmp_path, tokenizer):
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    shutil.copytree(d, tmp_path / "notok")
    (d / "config.json").unlink()
    with pytest.raises(InputError, match="no config.json"):
        load_model(d)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "notok" / f).unlink(missing_ok=True)
    with pytest.raises(InputError, match="no tokenizer"):
        load_model(tmp_path / "notok")


def test_tokenizer_larger_than_embedding(tmp_path, tokenizer):
    d = tmp_path / "m"
    random_model(tiny_config("gpt_neox", vocab_size=100)).save_pretrained(d)
    tokenizer.save_pretrained(d)  # 320 tokens > 100 embedding rows
    with pytest.raises(InputError, match="320 tokens but the model embeds only 100"):
        load_model(d)


def test_weights_that_do_not_fit_config(tmp_path, tokenizer):
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="don't fit its config.json"):
        load_model(d)
    cfg["num_hidden_layers"], cfg["intermediate_size"] = 2, 128
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="wrong shape"):
        load_model(d)


def test_truncated_weights(tmp_path, tokenizer):
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot load the weights|truncated"):
        load_model(d)
    (d / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(InputError):
        load_model(d)


def test_sharded_weights(tmp_path, tokenizer):
    d = tmp_path / "sharded"
    model = random_model(tiny_config("gpt_neox", vocab_size=len(tokenizer)))
    model.save_pretrained(d, max_shard_size="100KB")
    tokenizer.save_pretrained(d)
    shards = sorted(d.glob("model-*.safetensors"))
    assert len(shards) > 1 and (d / "model.safetensors.index.json").exists()
    assert load_model(d).adapter.n_layers == 2
    shards[-1].unlink()
    with pytest.raises(InputError, match="lacks weight shard"):
        load_model(d)


def test_bad_paths_and_options(tmp_path, tokenizer):
    with pytest.raises(InputError, match="no such model directory"):
        load_model(tmp_path / "nope")
    with pytest.raises(InputError, match="no such model directory"):
        load_model("./not/here")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        load_model(f)
    d, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    with pytest.raises(InputError, match="--dtype"):
        load_model(d, dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            load_model(d, device="cuda")
    with pytest.raises(InputError, match="--device"):
        load_model(d, device="tpu9")


# --- hub ids: cache first, offline error, unreachable hub ------------------------------------

@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: fails fast
    return cache


def test_hub_id_from_cache(tmp_path, tokenizer, hf_cache, monkeypatch):
    src, _ = save_model(tmp_path, "gpt_neox", tokenizer)
    repo = hf_cache / "models--vandijklab--tiny-c2s"
    commit = "0" * 40
    shutil.copytree(src, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = load_model("vandijklab/tiny-c2s")
    assert lm.name == "vandijklab/tiny-c2s" and lm.hash == weights_hash(src)


def test_hub_id_offline_not_cached(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="can't be downloaded here; pass a local model directory"):
        load_model("vandijklab/C2S-Pythia-410m-cell-type-prediction")


def test_hub_id_unreachable(hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="can't be fetched here, pass a local model directory"):
        load_model("vandijklab/C2S-Pythia-410m-cell-type-prediction")
    assert time.perf_counter() - t0 < 30


# --- the real C2S configs -----------------------------------------------------------------------

def test_named_configs_have_published_shapes():
    p = c2s_pythia_410m_config()
    assert (p.vocab_size, p.hidden_size, p.num_hidden_layers, p.num_attention_heads, p.intermediate_size) == (50304, 1024, 24, 16, 4096)
    assert p.rope_parameters["partial_rotary_factor"] == 0.25 and p.rope_parameters["rope_theta"] == 10000
    assert p.max_position_embeddings == 2048 and p.use_parallel_residual and not p.tie_word_embeddings
    assert p.layer_norm_eps == 1e-5 and p.hidden_act == "gelu"
    g = c2s_scale_gemma2_2b_config()
    assert (g.vocab_size, g.hidden_size, g.num_hidden_layers, g.num_attention_heads, g.num_key_value_heads, g.head_dim,
            g.intermediate_size) == (256000, 2304, 26, 8, 4, 256, 9216)
    assert (g.attn_logit_softcapping, g.final_logit_softcapping, g.query_pre_attn_scalar, g.sliding_window) == (50.0, 30.0, 256, 4096)
    assert g.tie_word_embeddings and g.hidden_activation == "gelu_pytorch_tanh"
    with pytest.raises(InputError):
        tiny_config("llama")  # type: ignore[arg-type]


@pytest.mark.slow
def test_exact_c2s_pythia_410m_config_loads_and_runs(tmp_path, tokenizer):
    """A random model with exactly C2S-Pythia-410m's config, saved (bfloat16, ~0.8 GB) and loaded through load_model."""
    cfg = c2s_pythia_410m_config()
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    assert 400e6 < n_params < 410e6  # Pythia-410m: 405M parameters
    d = tmp_path / "c2s-pythia-410m"
    model.save_pretrained(d)
    del model
    tokenizer.save_pretrained(d)  # 320 tokens fit the 50304-row embedding
    lm = load_model(d, dtype="bfloat16")
    ad = lm.adapter
    assert (ad.arch, ad.n_layers, ad.d_model, ad.d_mlp, ad.n_heads, ad.head_dim, ad.rotary_dim) == ("gpt_neox", 24, 1024, 4096, 16, 64, 16)
    assert ad.parallel_residual and not ad.tied_embeddings
    prompt = build_prompt(GENES)
    ids, spans = gene_token_spans(lm.tokenizer, prompt)
    seen = {}

    def hook(mod, args, out):
        seen["out"] = out.shape

    h = ad.layer(23).mlp.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = lm.model(torch.tensor([ids])).logits
    finally:
        h.remove()
    assert logits.shape == (1, len(ids), 50304) and torch.isfinite(logits.float()).all()
    assert seen["out"] == (1, len(ids), 1024) and len(spans) == len(GENES)
