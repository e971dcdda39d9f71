"""Checks of what an initialisation does to a network's signal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["LayerSignal", "activation_stats", "band_violations"]


@dataclass(frozen=True)
class LayerSignal:
    """Standard deviations of a layer's input and output, divided by the network input's."""

    input: float
    output: float

    @property
    def gain(self) -> float:
        return self.output / self.input if self.input > 0 else float("inf")


def activation_stats(
    model: nn.Module, example_input: torch.Tensor, *, skip: set[str] | None = None
) -> dict[str, LayerSignal]:
    """Signal of each parameterised leaf module over one forward pass without gradients.

    Runs in the model's current mode (use ``train()`` for batch statistics) and returns
    ``{module name: LayerSignal}`` for its first call; a non-finite output gives ``nan``.
    Modules in ``skip`` (e.g. the head) and their children are left out.
    """
    skip = skip or set()
    stats: dict[str, LayerSignal] = {}
    in_std = float(example_input.float().std())
    handles = []

    def std(t: Any) -> float | None:
        t = t[0] if isinstance(t, (tuple, list)) and t else t
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() < 2:
            return None
        return float(t.float().std()) / in_std if bool(torch.isfinite(t).all()) else float("nan")

    def hook(name: str):
        def fn(_m: nn.Module, args: Any, out: Any) -> None:
            i, o = std(args), std(out)
            if name not in stats and i is not None and o is not None:
                stats[name] = LayerSignal(i, o)

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
    return stats


def band_violations(
    ours: dict[str, LayerSignal],
    default: dict[str, LayerSignal] | None = None,
    band: tuple[float, float] = (0.05, 20.0),
    max_gain: float = 4.0,
) -> dict[str, str]:
    """Layers whose output leaves ``band`` (relative to the network input) because of their
    own initialisation: ``{name: reason}``.

    A layer outside the band is *not* blamed when PyTorch's default initialisation puts it
    outside the band too (structural: post-softmax projections, zero-initialised layer scales),
    or when its input is already outside the band and the layer itself changes the signal by
    less than ``max_gain`` (the signal was shrunk upstream by a parameter-free op such as the
    global pooling in front of a squeeze-and-excitation block).
    """
    lo, hi = band
    bad: dict[str, str] = {}
    for name, s in ours.items():
        if s.output != s.output:  # nan
            bad[name] = "non-finite output"
            continue
        if lo <= s.output <= hi:
            continue
        ref = (default or {}).get(name)
        if ref is not None and not lo <= ref.output <= hi:
            continue
        if not lo <= s.input <= hi and 1 / max_gain <= s.gain <= max_gain:
            continue
        bad[name] = f"output std {s.output:.3g} x input (layer gain {s.gain:.3g})"
    return bad
