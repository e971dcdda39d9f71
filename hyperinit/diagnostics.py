"""Checks of what an initialisation does to a network's signal."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["activation_stats"]


def activation_stats(
    model: nn.Module, example_input: torch.Tensor, *, skip: set[str] | None = None
) -> dict[str, float]:
    """Standard deviation of each parameterised leaf module's output, divided by the input's.

    Runs one forward pass without gradients (in the model's current mode) and returns
    ``{module name: ratio}``; a non-finite output gives ``nan``. Modules in ``skip`` (e.g. the
    head) are left out.
    """
    skip = skip or set()
    ratios: dict[str, float] = {}
    in_std = float(example_input.float().std())
    handles = []

    def hook(name: str):
        def fn(_m: nn.Module, _args: Any, out: Any) -> None:
            t = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 1:
                s = float(t.float().std())
                ratios[name] = s / in_std if torch.isfinite(t).all() else float("nan")

        return fn

    for name, module in model.named_modules():
        if name in skip or any(name.startswith(s + ".") for s in skip):
            continue
        has_own = any(True for _ in module.parameters(recurse=False))
        if has_own and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return ratios
