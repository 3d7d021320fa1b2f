"""Load a C2S causal LM and its tokenizer, offline-first, with an architecture adapter and a weights hash.

``load_model`` takes a local directory (``config.json`` + weights + tokenizer) or
a Hugging Face hub id. Hub ids are looked up in the local cache first; the
network is tried only when ``HF_HUB_OFFLINE`` is not set, and any failure to get
weights is one :class:`~circuitdb.errors.InputError` telling to pass a local
directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from circuitdb.errors import InputError
from circuitdb.loaders.adapters import ArchAdapter, adapter_for

#: Weight files, in the order transformers prefers them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
DTYPES = ("float32", "bfloat16", "float16", "auto")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    """A model ready for tracing.

    Attributes
    ----------
    model
        The ``AutoModelForCausalLM``, in eval mode.
    tokenizer
        Its fast tokenizer.
    adapter
        Where each layer's MLP, attention and norms live.
    name
        What was asked for (directory or hub id).
    hash
        ``sha256:...`` over the config and the weights (see :func:`weights_hash`): a stable id for provenance.
    path
        The directory the files were read from.
    """

    model: Any
    tokenizer: Any
    adapter: ArchAdapter
    name: str
    hash: str
    path: Path

    @property
    def config(self) -> Any:
        return self.model.config


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise InputError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def check_device(device: str) -> Any:
    """``torch.device(device)``, or an :class:`InputError` naming the fix when it is unknown or absent here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown --device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but no CUDA GPU is available here; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device} asked for, but MPS is not available here; use --device cpu")
    return dev


def _weight_files(d: Path) -> list[Path]:
    """The weight files of a model directory (shards resolved), or an InputError naming what is missing."""
    for name in WEIGHT_FILES:
        p = d / name
        if not p.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                index = json.loads(p.read_text())
                shards = sorted(set(index["weight_map"].values()))
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{p} is not a valid shard index (no weight_map); re-save the model with save_pretrained") from None
            missing = [s for s in shards if not (d / s).is_file()]
            if missing:
                raise InputError(f"{d} lacks weight shard(s) {', '.join(missing[:3])} listed in {name}; copy every shard into the directory")
            return [d / s for s in shards]
        return [p]
    present = ", ".join(sorted(x.name for x in d.iterdir())[:8]) or "nothing"
    raise InputError(
        f"{d} has no model weights (none of {', '.join(WEIGHT_FILES)}; it holds {present}); "
        "pass a directory written by model.save_pretrained()"
    )


def _check_dir(d: Path) -> list[Path]:
    if not d.is_dir():
        raise InputError(f"{d} is not a directory; pass a model directory (config.json, weights, tokenizer) or a hub id")
    if not (d / "config.json").is_file():
        raise InputError(f"{d} has no config.json; pass a directory written by model.save_pretrained()")
    files = _weight_files(d)
    if not any((d / t).is_file() for t in TOKENIZER_FILES):
        raise InputError(
            f"{d} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save it beside the weights with tokenizer.save_pretrained()"
        )
    return files


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(f"{path} is truncated (no safetensors header); re-save or re-copy the weights")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise InputError(f"{path} has an implausible safetensors header; the file is corrupt, re-save or re-copy it")
        data = fh.read(n)
        if len(data) < n:
            raise InputError(f"{path} is truncated (incomplete safetensors header); re-save or re-copy the weights")
        return head + data


def weights_hash(path: str | os.PathLike[str], *, full: bool = False, samples: int = 16, sample_bytes: int = 65536) -> str:
    """A content hash of a model directory's config and weights, fast enough for multi-GB files.

    Hashes ``config.json``, then per weight file its name, size, safetensors
    header (every tensor's name, dtype, shape and offsets) and ``samples``
    evenly spaced blocks of ``sample_bytes`` (first and last included). With
    ``full=True`` every byte is hashed instead.

    Returns
    -------
    str
        ``"sha256:<hex>"``.
    """
    d = Path(path)
    files = _weight_files(d)
    h = hashlib.sha256()
    cfg = d / "config.json"
    if cfg.is_file():
        try:
            canon = json.dumps({k: v for k, v in json.loads(cfg.read_text()).items() if k not in ("transformers_version", "_name_or_path")},
                               sort_keys=True)
        except ValueError:
            raise InputError(f"{cfg} is not valid JSON; re-save the model with save_pretrained") from None
        h.update(canon.encode())
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with f.open("rb") as fh:
            if full:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
                continue
            if f.suffix == ".safetensors":
                h.update(_safetensors_header(f))
            positions = sorted({int(i * max(0, size - sample_bytes) / max(1, samples - 1)) for i in range(samples)})
            for pos in positions:
                fh.seek(pos)
                h.update(fh.read(sample_bytes))
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _short(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:200]


def _resolve(name_or_dir: str | os.PathLike[str], revision: str | None) -> Path:
    """A local directory for ``name_or_dir``: itself, or a hub id's snapshot (cache first)."""
    p = Path(name_or_dir).expanduser()
    if p.exists():
        return p
    text = str(name_or_dir)
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise InputError(f"no such model directory: {p}; pass a directory written by save_pretrained() or a hub id like org/name")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt"]
    try:
        return Path(snapshot_download(text, revision=revision, local_files_only=True, allow_patterns=patterns))
    except Exception:  # noqa: BLE001 - not in the cache
        pass
    if _offline():
        raise InputError(
            f"model {text!r} is neither a directory here nor in the local Hugging Face cache, and HF_HUB_OFFLINE is set, "
            "so its weights can't be downloaded here; pass a local model directory instead"
        )
    try:
        return Path(snapshot_download(text, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - any download failure
        raise InputError(
            f"model {text!r} is not a directory here and cannot be downloaded ({type(exc).__name__}); "
            "its weights can't be fetched here, pass a local model directory instead"
        ) from None


def load_model(
    name_or_dir: str | os.PathLike[str],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    revision: str | None = None,
    attn_implementation: str | None = None,
    full_hash: bool = False,
) -> LoadedModel:
    """Load a C2S causal LM, its tokenizer and its architecture adapter.

    Parameters
    ----------
    name_or_dir
        A directory with ``config.json``, weights (safetensors or bin, possibly
        sharded) and tokenizer files; or a hub id (``org/name``), read from the
        local cache first and downloaded only when ``HF_HUB_OFFLINE`` is unset.
    dtype
        ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"auto"`` (as saved).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    revision
        Hub revision (ignored for directories).
    attn_implementation
        Passed to transformers; Gemma-2 defaults to ``"eager"`` (exact softcapping).
    full_hash
        Hash every byte of the weights rather than a sample.

    Returns
    -------
    LoadedModel

    Raises
    ------
    InputError
        Missing directory/config/weights/tokenizer, weights that don't fit the
        config, a tokenizer larger than the embedding, an unsupported
        architecture, or a hub id that can't be fetched here.
    """
    torch_dtype = _torch_dtype(dtype)
    dev = check_device(device)
    d = _resolve(name_or_dir, revision)
    _check_dir(d)

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(d, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {d / 'config.json'}: {_short(exc)}; is it a Hugging Face config?") from None
    mtype = getattr(config, "model_type", None)
    if mtype not in ("gpt_neox", "gemma2"):
        raise InputError(f"{d} holds a {mtype!r} model; circuitdb supports gpt_neox (C2S-Pythia) and gemma2 (C2S-Scale)")
    if attn_implementation is None and mtype == "gemma2":
        attn_implementation = "eager"
    # mismatched shapes are reported through the loading info below, with a clearer message
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True, "ignore_mismatched_sizes": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(d, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot load the tokenizer in {d}: {_short(exc)}; save a matching one with tokenizer.save_pretrained()") from None
        try:
            model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot load the weights in {d}: {_short(exc)}; are the files complete and saved for this config?") from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith(("inv_freq", "masked_bias", ".bias_mask")))
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        bad = missing or [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in mismatched]
        what = "missing" if missing else "of the wrong shape"
        raise InputError(
            f"the weights in {d} don't fit its config.json: {len(bad)} tensor(s) {what} (e.g. {bad[0]}); "
            "save the weights and config together with save_pretrained()"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"the tokenizer in {d} is not a fast tokenizer; save a tokenizer.json (tokenizers backend) with it")
    n_embed = model.get_input_embeddings().weight.shape[0]
    n_tok = len(tokenizer)
    if n_tok > n_embed:
        raise InputError(
            f"the tokenizer in {d} has {n_tok} tokens but the model embeds only {n_embed}; "
            "it is not this model's tokenizer, save the one it was trained with"
        )
    model = model.to(dev).eval()
    return LoadedModel(
        model=model, tokenizer=tokenizer, adapter=adapter_for(model), name=str(name_or_dir),
        hash=weights_hash(d, full=full_hash), path=d,
    )
