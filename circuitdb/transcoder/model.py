"""The sparse transcoder: ``x_in -> sparse features -> x_out`` replacing one MLP.

Safetensors keys follow circuit-tracer so checkpoints move between tools:
``W_enc`` (d_in, d_features), ``b_enc`` (d_features), ``W_dec`` (d_features, d_out),
``b_dec`` (d_out), optional ``W_skip`` (d_in, d_out) and, for JumpReLU, ``threshold``
(d_features). The JSON config beside it is :class:`TranscoderConfig`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import nn

from circuitdb.errors import InputError

Activation = Literal["relu", "topk", "jumprelu"]
CONFIG_NAME = "cfg.json"
WEIGHTS_NAME = "transcoder.safetensors"


@dataclass
class TranscoderConfig:
    """Everything needed to rebuild a transcoder and know where it belongs.

    Parameters
    ----------
    d_in, d_out
        Width of the MLP input and output (``d_out`` defaults to ``d_in``).
    d_features
        Number of features.
    activation
        ``relu`` (with an L1 penalty, Dunefsky et al.), ``topk`` (sparsify) or ``jumprelu``.
    k
        Features kept per row for ``topk``.
    l1_coeff
        L1 penalty for ``relu`` / sparsity penalty for ``jumprelu``.
    skip
        Add a linear skip connection ``W_skip``.
    model, layer, hook_in, hook_out
        The model id/hash, layer index and module names whose input/output this replaces.
    data_hash
        Hash of the activation manifest it was trained on.
    """

    d_in: int
    d_features: int
    d_out: int | None = None
    activation: Activation = "topk"
    k: int | None = 32
    l1_coeff: float | None = None
    skip: bool = False
    model: str = ""
    layer: int = 0
    hook_in: str = ""
    hook_out: str = ""
    data_hash: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_out is None:
            self.d_out = self.d_in
        if self.activation not in ("relu", "topk", "jumprelu"):
            raise ValueError(f"activation must be relu, topk or jumprelu, not {self.activation!r}")
        if self.activation == "topk" and (self.k is None or not 0 < self.k <= self.d_features):
            raise ValueError(f"topk needs 0 < k <= d_features, got k={self.k}")
        if self.d_in < 1 or self.d_features < 1:
            raise ValueError("d_in and d_features must be positive")


class TranscoderOutput(NamedTuple):
    """Forward output.

    out: reconstructed MLP output (..., d_out)
    acts: sparse feature activations (..., d_features)
    pre_acts: encoder pre-activations (..., d_features)
    """

    out: torch.Tensor
    acts: torch.Tensor
    pre_acts: torch.Tensor


class Transcoder(nn.Module):
    """One layer's transcoder with ``encode`` / ``decode``."""

    def __init__(self, cfg: TranscoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d_out = int(cfg.d_out or cfg.d_in)
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_features))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_features))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_features, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_in, d_out)) if cfg.skip else None
        self.threshold = nn.Parameter(torch.zeros(cfg.d_features)) if cfg.activation == "jumprelu" else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        d_out = self.W_dec.shape[1]
        w = torch.randn(self.cfg.d_features, d_out, generator=generator)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec.copy_(w)
        self.W_enc.copy_(w.T[: self.cfg.d_in] if self.cfg.d_in == d_out else torch.randn(self.cfg.d_in, self.cfg.d_features, generator=generator) / self.cfg.d_in**0.5)
        self.b_enc.zero_()
        self.b_dec.zero_()
        if self.threshold is not None:
            self.threshold.fill_(1e-3)

    # -- maths -----------------------------------------------------------------
    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.activation
        if kind == "relu":
            return torch.relu(pre)
        if kind == "jumprelu":
            assert self.threshold is not None
            return pre * (pre > self.threshold)
        k = int(self.cfg.k or 1)
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, torch.relu(vals))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse feature activations of MLP inputs ``x``."""
        return self.activation(self.pre_activation(x))

    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """MLP output from features (plus the skip path when ``x`` is given and skip is on)."""
        out = acts @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            if x is None:
                raise ValueError("this transcoder has a skip connection: decode(acts, x) needs x")
            out = out + x @ self.W_skip
        return out

    def forward(self, x: torch.Tensor) -> TranscoderOutput:
        pre = self.pre_activation(x)
        acts = self.activation(pre)
        return TranscoderOutput(self.decode(acts, x), acts, pre)

    # -- io --------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.W_skip is not None:
            t["W_skip"] = self.W_skip
        if self.threshold is not None:
            t["threshold"] = self.threshold
        return {k: v.detach().contiguous().cpu() for k, v in t.items()}

    def save(self, directory: str | Path) -> Path:
        """Write ``cfg.json`` and ``transcoder.safetensors`` into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (WEIGHTS_NAME + ".tmp")
        save_file(self.state_tensors(), str(tmp))
        tmp.replace(directory / WEIGHTS_NAME)
        (directory / CONFIG_NAME).write_text(json.dumps(asdict(self.cfg), indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "Transcoder":
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file() or not w_path.is_file():
            raise InputError(f"{directory} is not a transcoder checkpoint (needs {CONFIG_NAME} and {WEIGHTS_NAME}); train one with 'circuitdb train-transcoders'")
        try:
            cfg = TranscoderConfig(**json.loads(cfg_path.read_text()))
            tensors = load_file(str(w_path))
        except (ValueError, TypeError, OSError) as exc:
            raise InputError(f"corrupt transcoder checkpoint in {directory}: {exc}") from None
        tc = cls(cfg)
        with torch.no_grad():
            for name, value in tensors.items():
                getattr(tc, name).copy_(value)
        return tc.to(device=device, dtype=dtype) if dtype is not None else tc.to(device)
