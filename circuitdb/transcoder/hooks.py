"""Forward hooks on each layer's MLP module: capture its input/output, or replace its output.

Hooks sit on the MLP module itself (``adapter.layer(i).mlp``), so under GPT-NeoX's
parallel residual the captured input is the MLP's own ``ln2(x)``, and for Gemma-2
the output is the MLP's, *before* ``post_feedforward_layernorm`` (that norm stays in
the model; see :mod:`circuitdb.loaders.adapters`). Every context manager removes its
hooks in ``finally``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from circuitdb.loaders.adapters import ArchAdapter


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


@contextmanager
def capture_mlp(adapter: ArchAdapter, layers: list[int], *, outputs: bool = True) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Record ``{layer: {"in": x, "out": y}}`` of the last forward pass (detached)."""
    store: dict[int, dict[str, torch.Tensor]] = {i: {} for i in layers}
    handles = []

    def make(i: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            store[i]["in"] = _first(args).detach()
            if outputs:
                store[i]["out"] = _first(output).detach()

        return hook

    try:
        for i in layers:
            handles.append(adapter.layer(i).mlp.register_forward_hook(make(i)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replace_mlp(adapter: ArchAdapter, replacements: dict[int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Replace each listed layer's MLP output by ``fn(mlp_input, mlp_output)``."""
    handles = []

    def make(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            y = _first(output)
            new = fn(_first(args), y).to(y.dtype)
            if isinstance(output, tuple):
                return (new, *output[1:])
            return new

        return hook

    try:
        for i, fn in replacements.items():
            handles.append(adapter.layer(i).mlp.register_forward_hook(make(fn)))
        yield
    finally:
        for h in handles:
            h.remove()
