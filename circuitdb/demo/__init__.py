"""The project's own C2S-style demo model: BPE tokenizer, GPT-NeoX trainer, shipped weights.

The shipped model lies in :mod:`circuitdb.demo_data` (``model/``); :func:`model_dir`
returns its path. ``circuitdb demo-model train --out DIR`` reproduces it.
"""

from __future__ import annotations

from pathlib import Path


def model_dir() -> Path:
    """Directory of the shipped demo model (weights, tokenizer, ``circuitdb.json``, README)."""
    from importlib.resources import files

    return Path(str(files("circuitdb.demo_data").joinpath("model")))


__all__ = ["model_dir"]
