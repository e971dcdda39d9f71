"""Grad-CAM class activation maps for the benchmark's CAM figure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["grad_cam", "pick_cam_layer"]


def pick_cam_layer(model: nn.Module, example: torch.Tensor, min_size: int = 8) -> str:
    """Name of the deepest ``Conv2d`` whose output is at least ``min_size`` px on a side
    (the deepest convolution overall if none is); its activations make the CAM."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    names = list(shapes)
    big = [n for n in names if min(shapes[n][-2:]) >= min_size]
    return (big or names)[-1]


def grad_cam(
    model: nn.Module, layer: str, x: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Grad-CAM maps ``(N, h, w)`` in [0, 1] at ``layer``'s resolution for class ``target``
    (default: the predicted class). The model is run in eval mode and left as it was."""
    module = dict(model.named_modules())[layer]
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        store["act"] = out

    handle = module.register_forward_hook(hook)
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # keeps a graph even if the layer is frozen
            logits = model(x)
            cls = logits.argmax(1) if target is None else target
            logits.gather(1, cls[:, None]).sum().backward()
        act, grad = store["act"], store["act"].grad
    finally:
        handle.remove()
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1)).detach()
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (cam - lo) / (hi - lo).clamp_min(1e-12)
